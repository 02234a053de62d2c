"""Optuna's samplers as strategies: valid NAS-Bench-201 cells, the same proposals from the same
records (a resumed run), every configuration the registry and config accept, one line for a
space without categorical genes."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.search.candidate import Candidate
from hostside.search.config import SearchConfig
from hostside.search.strategies import AskContext, make_strategy, strategy_names
from hostside.search.strategies.genes import GeneCoder
from hostside.spaces import make_space
from hostside.spaces.nasbench201 import NB201_OPS
from tests.search.nb201_records import drive, settings, space

SAMPLERS = ("optuna:tpe", "optuna:nsga2", "optuna:random")


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_proposes_cells_of_the_space_and_resumes_identically(name):
    nb201 = space()
    options = {"population_size": 6} if name == "optuna:nsga2" else {}
    records = drive(make_strategy(name, options, settings()), nb201, 20, seed=1)
    assert len({tuple(r.genotype["ops"]) for r in records}) == 20
    ctx = AskContext(nb201, tuple(records), np.random.default_rng(7), 20, 20)
    first = make_strategy(name, options, settings()).ask(4, ctx)
    again = make_strategy(name, options, settings()).ask(4, AskContext(nb201, tuple(records),
                                                                        np.random.default_rng(7), 20, 20))
    assert [p.genotype for p in first] == [p.genotype for p in again]
    assert [dict(p.attrs) for p in first] == [dict(p.attrs) for p in again]
    for proposal in first:
        ops = proposal.genotype["ops"]
        assert len(ops) == 6 and all(op in NB201_OPS for op in ops)
        assert nb201.to_genes(nb201.from_genes(nb201.to_genes(proposal.genotype))) == nb201.to_genes(proposal.genotype)


def test_nsga2_generations_come_back_from_the_records():
    """NSGA-II numbers its generations when asked; the number is journaled so the rebuilt study
    sees the same generations and breeds children from the first one's elite."""
    nb201 = space()
    strategy = make_strategy("optuna:nsga2", {"population_size": 5}, settings())
    records = drive(strategy, nb201, 16, seed=2)
    generations = [r.attr("optuna:nsga2.system_attrs")["NSGAIISampler:generation"] for r in records]
    assert generations[:5] == [0] * 5 and max(generations) >= 2
    assert generations == sorted(generations)


def test_tpe_learns_from_its_records():
    """Judged by accuracy alone, TPE's cells after 40 of the benchmark beat its random start."""
    nb201 = space()
    strategy = make_strategy("optuna:tpe", {"n_startup_trials": 10}, settings(objectives=("val_accuracy",)))
    accuracy = np.array([r.metrics["val_accuracy"] for r in drive(strategy, nb201, 60, seed=3)])
    assert accuracy[40:].mean() > accuracy[:10].mean()


def test_running_and_failed_candidates_are_trials_too():
    nb201 = space()
    records = drive(make_strategy("optuna:random", {}, settings()), nb201, 4, seed=4)
    training = Candidate(**{**records[0].__dict__, "id": 5, "status": "training"})
    failed = Candidate(**{**records[1].__dict__, "id": 6, "status": "failed"})
    strategy = make_strategy("optuna:tpe", {}, settings())
    coder = GeneCoder(nb201, "optuna:tpe")
    states = [strategy.told(r, coder, False).state.name for r in (training, failed, records[2])]
    assert states == ["RUNNING", "FAIL", "COMPLETE"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_registry_and_config_accept_the_colon_names(name):
    assert name in strategy_names()
    config = SearchConfig(strategy=name, dataset="digits", objectives=["val_accuracy", "measured_latency"])
    assert config.space == "nasbench201"


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_space_without_categorical_genes_is_refused_in_one_line(name):
    layers = make_space("layer_list", (1, 8, 8), 10)
    strategy = make_strategy(name, {}, settings())
    with pytest.raises(UserError) as error:
        strategy.ask(1, AskContext(layers, (), np.random.default_rng(0), 0, 0))
    message = str(error.value)
    assert "\n" not in message and "layer_list" in message and "nasbench201" in message


def test_bad_options_are_one_line():
    with pytest.raises(UserError, match="population_size"):
        make_strategy("optuna:nsga2", {"population_size": 1}, settings())
    with pytest.raises(UserError, match="n_startup_trials"):
        make_strategy("optuna:tpe", {"n_startup_trials": 0}, settings())
    with pytest.raises(UserError, match=r"option 'crossover_prob' \(now 'crossover_rate'\): 2 is not allowed"):
        make_strategy("optuna:nsga2", {"crossover_prob": 2}, settings())


def test_optunas_own_names_still_work():
    """Optuna users write ``crossover_prob`` and ``mutation_prob``; they reach the sampler."""
    sampler = make_strategy("optuna:nsga2", {"crossover_prob": 0.3, "mutation_prob": 0.2}, settings())
    assert (sampler.options.crossover_rate, sampler.options.gene_mutation_rate) == (0.3, 0.2)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("objectives", [("val_accuracy",), ("val_accuracy", "measured_latency")])
def test_the_memo_study_asks_what_a_rebuild_from_the_records_asks(name, objectives, monkeypatch):
    """The process keeps the last study and reuses its matching trials (and what each record
    said); whatever the records before (longer, shorter, a trial back to running, another run's),
    an ask must propose what a study rebuilt from the records alone proposes, or a resumed run
    would differ from an uninterrupted one."""
    from hostside.search.strategies import optuna_samplers

    nb201 = space()
    options = {"population_size": 5} if name == "optuna:nsga2" else {}
    options.update({"n_startup_trials": 5} if name == "optuna:tpe" else {})
    strategy = make_strategy(name, options, settings(objectives=objectives))
    records = drive(strategy, nb201, 24, seed=5)
    other_run = drive(make_strategy(name, options, settings(objectives=objectives)), nb201, 12, seed=6)
    running = Candidate(**{**records[17].__dict__, "status": "training"})
    histories = [records[:12], records[:24], records[:16], records[:17] + [running] + records[18:], other_run,
                 records[:20], records[:20]]

    def ask(history, seed):
        proposals = strategy.ask(3, AskContext(nb201, tuple(history), np.random.default_rng(seed), 0, 0))
        return [(p.genotype, dict(p.attrs)) for p in proposals]

    warm = [ask(history, seed) for seed, history in enumerate(histories)]
    cold = []
    for seed, history in enumerate(histories):
        monkeypatch.setattr(optuna_samplers, "_MEMO", optuna_samplers._StudyMemo())
        monkeypatch.setattr(optuna_samplers, "_TOLD", optuna_samplers._ToldMemo())
        cold.append(ask(history, seed))
        study = optuna_samplers._MEMO._study
        assert len(study.trials) == len(history)  # what was asked is forgotten
        assert not study._storage.get_study_system_attrs(study._study_id)
    assert warm == cold
