"""Constraint search, the laws side: budgets filter the elaborated population and picks are
spread from the largest feasible network."""

from hostside.laws.constraint import feasible_rows, spread_picks


def _row(i, params, latency):
    return {"config": {"x": i}, "params": params, "macs": params * 10, "activation_bytes": 1000,
            "weight_bytes": {"fp32": 4 * params}, "latency_ms": latency}


def test_budgets_filter_and_picks_spread_from_the_top():
    rows = [_row(i, p, l) for i, (p, l) in enumerate([(100, 0.1), (900, 0.2), (1500, 0.3), (2000, 0.9),
                                                       (5000, 0.4), (1800, 0.25), (1900, 0.26)])]
    feasible = feasible_rows(rows, {"params": 2000, "latency_ms": 0.5})
    assert [r["config"]["x"] for r in feasible] == [0, 1, 2, 5, 6]
    picks = spread_picks(rows, {"params": 2000, "latency_ms": 0.5}, spread_decades=1.0)
    assert picks[0] == {"x": 6}  # the largest feasible network first
    assert {"x": 0} not in picks  # 100 params is more than a decade below the largest
    assert picks[1] == {"x": 1}  # then the one farthest from it
    assert len(picks) == 4
    assert spread_picks(rows, {"params": 50}) == []
