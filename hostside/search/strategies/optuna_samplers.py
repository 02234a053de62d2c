"""Optuna's samplers (TPE, NSGA-II, random) as strategies: ``--strategy optuna:tpe`` and friends.

Optuna is the reference many NAS comparisons use, so its samplers run here as peers of our
own strategies, on the same engine, journal and budgets. The strategy stays stateless: every
``ask`` rebuilds an in-memory study from the run's records (each evaluated candidate a
complete trial with the run's objectives and directions, each failed or rejected one a failed
trial, each one still in flight a running trial) and asks it ``n`` times with a sampler seeded
from the engine's generator. A resumed run therefore continues from its journal alone. What a
sampler writes on a trial when it is asked (NSGA-II's generation number) is journaled as the
attribute ``<strategy>.system_attrs`` and given back to the rebuilt trial, since it cannot be
recomputed from the records once later trials have finished.

Only spaces with categorical genes work (each gene an Optuna ``CategoricalDistribution`` over
its choice indices). Budgets become Optuna constraints (the candidate's relative violation).
"""

from __future__ import annotations

import contextlib
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from hostside.errors import UserError
from hostside.search.candidate import Candidate, Proposal
from hostside.search.objectives import objective
from hostside.search.strategies.base import AskContext, NoOptions, Strategy, register_strategy
from hostside.search.strategies.genes import GeneCoder
from hostside.spaces.base import SearchSpace

#: Where Optuna's samplers read a trial's constraint values (``optuna.samplers._base``).
CONSTRAINTS_KEY = "constraints"


@dataclass
class TPEOptions:
    #: Model the genes jointly (Optuna's multivariate TPE), not one by one.
    multivariate: bool = True
    #: Random trials before TPE takes over.
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    #: Treat candidates still training as bad, so parallel asks spread out (several workers).
    constant_liar: bool = True

    def validate(self) -> None:
        for key in ("n_startup_trials", "n_ei_candidates"):
            if getattr(self, key) < 1:
                raise UserError(f"option {key!r}: {getattr(self, key)!r} is not allowed; give an integer >= 1")


@dataclass
class NSGA2SamplerOptions:
    population_size: int = 20
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    #: Per-gene mutation probability; None is Optuna's default (1 / number of genes).
    mutation_prob: Optional[float] = None

    def validate(self) -> None:
        if self.population_size < 2:
            raise UserError(f"option 'population_size': {self.population_size!r} is not allowed; "
                            f"give an integer >= 2")
        for key in ("crossover_prob", "swapping_prob", "mutation_prob"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise UserError(f"option {key!r}: {value!r} is not allowed; give a probability in [0, 1]")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna logs every study it creates and warns that multivariate TPE is experimental;
    neither means anything to a hostside user, and a study per ask would flood the output."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


class OptunaStrategy(Strategy):
    """The shared rebuild-and-ask; subclasses only say which sampler."""

    default_space = "nasbench201"

    @abstractmethod
    def make_sampler(self, seed: int, constrained: bool) -> BaseSampler:
        """The sampler, seeded; ``constrained`` when the run has budgets (Optuna constraints)."""

    def prepare(self, run_dir: Path, space: SearchSpace) -> None:
        GeneCoder(space, self.name)

    @property
    def _attr(self) -> str:
        return f"{self.name}.system_attrs"

    def directions(self) -> List[str]:
        return ["maximize" if objective(name).sense == "max" else "minimize" for name in self.settings.objectives]

    def trial_of(self, record: Candidate, coder: GeneCoder, constrained: bool,
                 distributions: Optional[Dict[str, CategoricalDistribution]] = None) -> Optional[FrozenTrial]:
        """The Optuna trial a record is, or None when its genotype is not one of these genes."""
        distributions = distributions or _distributions(coder)
        indices = coder.encode(record.genotype)
        if indices is None:
            return None
        params = dict(zip(coder.names, indices))
        system_attrs = dict(record.attr(self._attr) or {})
        if record.evaluated and record.complete:
            if constrained:
                system_attrs[CONSTRAINTS_KEY] = (float(record.violation),)
            values = [objective(name).value(record.metrics) for name in self.settings.objectives]
            return create_trial(state=TrialState.COMPLETE, params=params, distributions=distributions,
                                values=values, system_attrs=system_attrs)
        state = TrialState.FAIL if record.finished or record.evaluated else TrialState.RUNNING
        return create_trial(state=state, params=params, distributions=distributions, system_attrs=system_attrs)

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        coder = GeneCoder(ctx.space, self.name)
        constrained = bool(self.settings.budgets)
        distributions = _distributions(coder)
        with _quiet():
            sampler = self.make_sampler(int(ctx.rng.integers(0, 2 ** 31)), constrained)
            study = optuna.create_study(directions=self.directions(), sampler=sampler)
            trials = [t for t in (self.trial_of(r, coder, constrained, distributions) for r in ctx.records)
                      if t is not None]
            study.add_trials(trials)
            proposals = []
            for _ in range(n):
                trial = study.ask(fixed_distributions=distributions)
                genotype = coder.decode([trial.params[name] for name in coder.names])
                written = study.get_trials(deepcopy=False)[trial.number].system_attrs
                attrs = {self._attr: dict(written)} if written else {}
                proposals.append(Proposal(genotype, self.name, attrs=attrs))
        return proposals


def _distributions(coder: GeneCoder) -> Dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution(tuple(range(size))) for name, size in zip(coder.names, coder.sizes)}


def _constraints(trial: FrozenTrial) -> Any:
    return trial.system_attrs.get(CONSTRAINTS_KEY, (0.0,))


@register_strategy("optuna:tpe")
class OptunaTPE(OptunaStrategy):
    """Optuna's (multi-objective) TPE."""

    Options = TPEOptions

    def make_sampler(self, seed: int, constrained: bool) -> BaseSampler:
        o = self.options
        return TPESampler(multivariate=o.multivariate, n_startup_trials=o.n_startup_trials,
                          n_ei_candidates=o.n_ei_candidates, constant_liar=o.constant_liar, seed=seed,
                          constraints_func=_constraints if constrained else None)


@register_strategy("optuna:nsga2")
class OptunaNSGA2(OptunaStrategy):
    """Optuna's NSGA-II sampler (its own generations of ``population_size``, uniform crossover)."""

    Options = NSGA2SamplerOptions

    def make_sampler(self, seed: int, constrained: bool) -> BaseSampler:
        o = self.options
        return NSGAIISampler(population_size=o.population_size, crossover_prob=o.crossover_prob,
                             swapping_prob=o.swapping_prob, mutation_prob=o.mutation_prob, seed=seed,
                             constraints_func=_constraints if constrained else None)


@register_strategy("optuna:random")
class OptunaRandom(OptunaStrategy):
    """Optuna's random sampler: the baseline of the other two, through the same rebuild."""

    Options = NoOptions

    def make_sampler(self, seed: int, constrained: bool) -> BaseSampler:
        return RandomSampler(seed=seed)
