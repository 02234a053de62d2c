"""The surrogate search: unseen, buildable cells; the same proposals from the same records; one
line for a space without categorical genes; a better front than random on NAS-Bench-201."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.metrics import hypervolume, non_dominated
from hostside.search.strategies import AskContext, make_strategy
from hostside.spaces import make_space
from hostside.arch.nb201 import parse_arch_str
from hostside.search.candidate import Proposal
from hostside.spaces.nasbench201 import NB201_OPS
from tests.search.nb201_records import drive, figures, record, settings, space

FAST = {"trees": 10, "pool": 800}


def _ctx(space_, records, seed):
    return AskContext(space_, tuple(records), np.random.default_rng(seed), len(records), len(records))


def test_proposes_unseen_networks_the_space_builds():
    nb201 = space()
    strategy = make_strategy("surrogate-hv", FAST, settings())
    records = drive(strategy, nb201, 30, seed=0, batch=5)
    assert [r.operator for r in records[:10]] == ["sample"] * 10 and records[-1].operator == "model"
    proposals = strategy.ask(8, _ctx(nb201, records, 1))
    networks = [nb201.decode(dict(p.genotype)).structure_hash() for p in proposals]
    assert len(networks) == 8 and len(set(networks)) == 8 and not set(networks) & {r.arch_hash for r in records}


def test_genes_that_build_a_known_network_are_not_proposed():
    """Node 1 of this cell reaches no output (edges 2<-1 and 3<-1 are none), so its edge 1<-0
    does not change the network: the five variants are one network. With the known one alone
    on the front and only its one-gene neighbours in the pool, the other four are not proposed."""
    nb201 = space()
    ops = ["nor_conv_3x3", "nor_conv_3x3", "none", "nor_conv_3x3", "none", "skip_connect"]
    variants = [{"ops": [op] + ops[1:]} for op in NB201_OPS]
    assert len({nb201.decode(v).structure_hash() for v in variants}) == 1
    known = {"ops": ["skip_connect"] + ops[1:]}
    accuracy, latency_ms = figures()[nb201.genotype_summary(known)["arch_str"]]
    worse = [arch for arch, (a, lat) in sorted(figures().items()) if a < accuracy and lat > latency_ms]
    genotypes = [known] + [{"ops": list(parse_arch_str(arch))} for arch in worse[:3]]
    records = [record(nb201, i + 1, Proposal(g, "sample"), settings(), nb201.decode(g).structure_hash())
               for i, g in enumerate(genotypes)]
    options = {"trees": 10, "pool": 24, "initial": 2, "radius": 1, "explore": 0.0}
    strategy = make_strategy("surrogate-hv", options, settings())
    proposals = strategy.ask(24, _ctx(nb201, records, 6))
    proposed = {tuple(p.genotype["ops"]) for p in proposals}
    assert proposed and not proposed & {tuple(v["ops"]) for v in variants}
    assert all(sum(a != b for a, b in zip(p, known["ops"])) == 1 for p in proposed)


def test_resumes_identically_from_the_records():
    nb201 = space()
    records = drive(make_strategy("surrogate-hv", FAST, settings()), nb201, 20, seed=2, batch=5)
    first = make_strategy("surrogate-hv", FAST, settings()).ask(3, _ctx(nb201, records, 4))
    again = make_strategy("surrogate-hv", FAST, settings()).ask(3, _ctx(nb201, records, 4))
    assert [p.genotype for p in first] == [p.genotype for p in again]


def test_a_space_without_categorical_genes_is_refused_in_one_line():
    layers = make_space("layer_list", (1, 8, 8), 10)
    with pytest.raises(UserError) as error:
        make_strategy("surrogate-hv", {}, settings()).prepare(None, layers)
    assert "\n" not in str(error.value) and "nasbench201" in str(error.value)


def test_finds_a_better_front_than_random_in_100_evaluations():
    """Hypervolume of the found front (accuracy, Raspberry Pi 4 latency) in the region better
    than the table's median in both, over 5 seeds: the surrogate's median beats random's."""
    all_points = np.array([[1 - a, latency] for a, latency in figures().values()])
    reference = np.median(all_points, axis=0)

    def share(name, options, seed):
        records = drive(make_strategy(name, options, settings()), space(), 100, seed=seed, batch=20)
        F = np.array([r.objectives for r in records])
        return hypervolume(F[non_dominated(F)], reference)

    surrogate = [share("surrogate-hv", FAST, seed) for seed in range(5)]
    random = [share("random", {}, seed) for seed in range(5)]
    assert np.median(surrogate) > np.median(random)


@pytest.mark.parametrize("options, key", [({"initial": 1}, "initial"), ({"explore": 1.5}, "explore"),
                                          ({"radius": 0}, "radius")])
def test_bad_options_are_one_line(options, key):
    with pytest.raises(UserError, match=key):
        make_strategy("surrogate-hv", options, settings())
