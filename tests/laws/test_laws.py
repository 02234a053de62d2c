"""Sampling laws: the paper's cost function, laws within limits, spectral clustering, learning
that puts most samples inside the target, and one-line errors for bad targets and metrics."""

import math

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.laws.clustering import best_per_cluster, cluster_laws
from hostside.laws.ga import GASettings, check_target, law_cost, mutate_law
from hostside.laws.law import Law
from hostside.laws.learn import learn_laws
from hostside.laws.metrics import make_metric
from hostside.spaces.narrow import make_narrow


def test_cost_is_zero_when_one_sigma_band_is_the_interval():
    values = np.array([3.0, 5.0])  # mean 4, sample std sqrt(2)
    s = math.sqrt(2.0)
    assert law_cost(values, 4 - s, 4 + s) == pytest.approx(0.0)
    assert law_cost(values, 4 - s - 0.5, 4 + s + 0.25) == pytest.approx(0.75)
    # shifting the distribution up by one decade costs both edges
    assert law_cost(values + 1, 4 - s, 4 + s) == pytest.approx(2.0)


def test_mutations_keep_laws_ordered_within_limits():
    space = make_narrow("narrow:mobilenet", (3, 32, 32), 10)
    n_levels = np.array([len(v.values) for v in space.variables])
    rng = np.random.default_rng(0)
    law = Law.uniform(space)
    moved = 0
    for _ in range(500):
        child = mutate_law(law, n_levels, rng)
        assert np.all(child.low >= 0) and np.all(child.high < n_levels) and np.all(child.low <= child.high)
        moved += int(np.any(child.low != law.low) or np.any(child.high != law.high))
        law = child
    assert moved > 400
    for config in law.sample(space, 50, rng):
        assert law.contains(space, config)
        assert space.check_config(config) == config


def test_law_json_round_trip_and_limits():
    space = make_narrow("narrow:resnet", (3, 32, 32), 10)
    law = Law(np.array([0, 4, 8, 0, 1, 2, 1]), np.array([7, 15, 31, 2, 3, 5, 2]))
    data = law.to_dict(space)
    assert data["width_1"] == [1, 8] and data["kernel"] == [3, 5]
    again = Law.from_dict(space, data)
    assert np.array_equal(again.low, law.low) and np.array_equal(again.high, law.high)
    with pytest.raises(UserError, match=r"blocks_1 bounds \[0, 3\].*limits \[1, 6\]"):
        Law.from_dict(space, {**data, "blocks_1": [0, 3]})


def test_spectral_clustering_keeps_the_best_law_of_each_cluster():
    space = make_narrow("narrow:resnet", (3, 32, 32), 10)
    rng = np.random.default_rng(0)
    n_levels = np.array([len(v.values) for v in space.variables])
    # three well-separated groups of near-copies
    centres = [Law(np.zeros(7, int), np.array([3, 3, 3, 0, 0, 0, 0])),
               Law(np.array([100, 100, 100, 2, 2, 2, 1]), np.array([120, 120, 120, 3, 3, 3, 1])),
               Law(np.array([200, 200, 200, 4, 4, 4, 2]), np.array([255, 255, 255, 5, 5, 5, 2]))]
    laws, group = [], []
    for g, centre in enumerate(centres):
        for _ in range(10):
            jitter = rng.integers(0, 3, size=7)
            laws.append(Law(np.minimum(centre.low + jitter, n_levels - 1), np.minimum(centre.high + jitter, n_levels - 1)))
            group.append(g)
    costs = rng.random(len(laws))
    labels = cluster_laws(space, laws, 3)
    assert len(set(labels)) == 3
    for g in range(3):  # each true group is one cluster
        assert len({labels[i] for i in range(len(laws)) if group[i] == g}) == 1
    best = best_per_cluster(space, laws, costs, 3, finalists=2)
    firsts = [finalists[0][1] for _, finalists in best]
    assert firsts == sorted(firsts)
    for label, finalists in best:
        members = sorted(costs[i] for i in range(len(laws)) if labels[i] == label)
        assert [cost for _, cost in finalists] == members[:2]


def test_learned_laws_put_most_samples_inside_where_uniform_puts_few():
    space = make_narrow("narrow:resnet", (3, 32, 32), 10)
    metric = make_metric("params")
    body, samples = learn_laws(space, metric, 1e4, 1e5, GASettings(n_init=40, n_steps=200, k=3, seed=0),
                               n_val=100, n_uniform=200)
    shares = [law["validation"]["share_inside"] for law in body["laws"]]
    assert len(body["laws"]) == 3
    assert shares[0] > 0.5  # the best-fit law: most of its samples inside
    assert np.mean(shares) > 0.3
    assert body["uniform"]["share_inside"] < 0.05
    assert body["networks_judged"] == (40 + 200) * 10 + 3 * 3 * 100  # GA + three finalists per cluster
    for law in body["laws"]:
        limits = Law.from_dict(space, law["bounds"])  # within the limits or it raises
        assert limits.low.shape == (7,)


def test_bad_targets_and_metrics_are_one_line_errors():
    metric = make_metric("params")
    with pytest.raises(UserError, match=r"tau1 < tau2, got 20000 >= 10000"):
        check_target(2e4, 1e4, (100.0, 1e7), metric, "narrow:resnet")
    with pytest.raises(UserError, match=r"outside what narrow:plain can reach \(about \[100, 5e\+06\]\)"):
        check_target(1.0, 50.0, (100.0, 5e6), metric, "narrow:plain")
    with pytest.raises(UserError, match="unknown metric 'flops'"):
        make_metric("flops")
    with pytest.raises(UserError, match="latency_ms needs a calibration"):
        make_metric("latency_ms")
    with pytest.raises(UserError, match="unknown number format"):
        make_metric("weight_bytes", "fp13")
    assert make_metric("weight_bytes:int8").weight_format == "int8"


def test_weight_bytes_at_formats():
    space = make_narrow("narrow:plain", (1, 8, 8), 10)
    spec = space.reference_spec()
    deployed = spec.cost.deployed_params
    assert make_metric("weight_bytes", "fp16").values([spec])[0] == 2 * deployed
    assert make_metric("weight_bytes", "int8").values([spec])[0] == spec.cost.weight_bytes["int8"]
    assert make_metric("weight_bytes", "t4.3").values([spec])[0] == deployed  # 8 bits
