"""The screening pool: the proxy's best, spread over lineages."""

from hostside.search.screening import lineage_roots, pick_diverse


def _row(candidate_id, parents=(), arch="a", lr=0.003):
    return {"id": candidate_id, "parents": list(parents), "arch_hash": f"{arch}{candidate_id}", "lr": lr}


def test_lineage_roots_follow_first_parents_to_a_sample():
    rows = [_row(1), _row(2), _row(3, [1]), _row(4, [3, 2]), _row(5, [99]), _row(6, [6])]
    assert lineage_roots(rows) == {1: 1, 2: 2, 3: 1, 4: 1, 5: 5, 6: 6}  # unknown parent / self-loop end the walk


def test_pool_caps_each_lineage_then_fills_with_the_best_of_the_rest():
    roots = {1: 1, 2: 1, 3: 1, 4: 1, 5: 5, 6: 6}
    ranked = [_row(i) for i in (1, 2, 3, 4, 5, 6)]  # best first; 1-4 one lineage
    same = lambda r: r["arch_hash"]  # noqa: E731
    assert [r["id"] for r in pick_diverse(ranked, roots, 4, 2, same)] == [1, 2, 5, 6]
    assert [r["id"] for r in pick_diverse(ranked, roots, 5, 2, same)] == [1, 2, 3, 5, 6]  # rank order kept
    assert [r["id"] for r in pick_diverse(ranked, roots, 9, 2, same)] == [1, 2, 3, 4, 5, 6]


def test_pool_takes_one_row_per_network_and_setting():
    ranked = [_row(1), {**_row(2), "arch_hash": "a1"}, _row(3)]  # 2 is 1 trained again
    roots = {1: 1, 2: 1, 3: 3}
    assert [r["id"] for r in pick_diverse(ranked, roots, 3, 2, lambda r: (r["arch_hash"], r["lr"]))] == [1, 3]
