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

Rebuilding costs a deep copy per trial per ask, and the engine asks again after every
duplicate it drops, so a long run would spend nearly all its time rebuilding. Each process
therefore keeps the last built study (``_StudyMemo``) holding exactly the trials the records
say, and on the next ask keeps its longest prefix that matches the new records, drops the
rest and adds only the new trials; trials asked and not yet in the records are removed again
after every ask. The study asked is thus the one a rebuild from the records would make, so
proposals (and a resumed run) are the same with or without the memo.

Only spaces with categorical genes work (each gene an Optuna ``CategoricalDistribution`` over
its choice indices). Budgets become Optuna constraints (the candidate's relative violation).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from hostside.options import setting
from hostside.search.candidate import Candidate, Proposal
from hostside.search.objectives import objective
from hostside.search.strategies.base import AskContext, NoOptions, Strategy, register_strategy
from hostside.search.strategies.genes import GeneCoder
from hostside.spaces.base import SearchSpace

#: Where Optuna's samplers read a trial's constraint values (``optuna.samplers._base``).
CONSTRAINTS_KEY = "constraints"


@dataclass
class TPEOptions:
    multivariate: bool = setting(True, "model the genes jointly (Optuna's multivariate TPE)")
    n_startup_trials: int = setting(10, "random trials before TPE takes over", minimum=1)
    n_ei_candidates: int = setting(24, "candidates TPE scores per ask", minimum=1)
    constant_liar: bool = setting(True, "treat candidates still training as bad, so parallel asks spread out")


@dataclass
class NSGA2SamplerOptions:
    population_size: int = setting(20, "Optuna's generation size", minimum=2)
    crossover_rate: float = setting(0.9, "probability a child comes from a crossover (Optuna's crossover_prob)",
                                    minimum=0, maximum=1, aliases=("crossover_prob",))
    swapping_prob: float = setting(0.5, "per-gene probability the uniform crossover takes the other parent's gene",
                                   minimum=0, maximum=1)
    gene_mutation_rate: Optional[float] = setting(None, "per-gene mutation probability (Optuna's mutation_prob); "
                                                  "unset is Optuna's 1 / number of genes", default_text="unset",
                                                  minimum=0, maximum=1, aliases=("mutation_prob",))


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

    def told(self, record: Candidate, coder: GeneCoder, constrained: bool) -> Optional[Told]:
        """What a record tells the study, as a comparable value: (state, params, values,
        system attributes); None when its genotype is not one of these genes."""
        indices = coder.encode(record.genotype)
        if indices is None:
            return None
        system_attrs = dict(record.attr(self._attr) or {})
        if record.evaluated and record.complete:
            if constrained:
                system_attrs[CONSTRAINTS_KEY] = (float(record.violation),)
            values = tuple(float(objective(name).value(record.metrics)) for name in self.settings.objectives)
            state = TrialState.COMPLETE
        else:
            values = None
            state = TrialState.FAIL if record.finished or record.evaluated else TrialState.RUNNING
        return Told(state, indices, values, system_attrs)

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        coder = GeneCoder(ctx.space, self.name)
        constrained = bool(self.settings.budgets)
        distributions = _distributions(coder)
        key = (self.name, self.settings.objectives, constrained, coder.names, coder.sizes)
        told = [t for t in _TOLD.of(key, ctx.records, lambda r: self.told(r, coder, constrained)) if t is not None]
        with _quiet():
            sampler = self.make_sampler(int(ctx.rng.integers(0, 2 ** 31)), constrained)
            with _MEMO.study(self.directions(), coder, distributions, told, sampler) as study:
                proposals = []
                for _ in range(n):
                    trial = study.ask(fixed_distributions=distributions)
                    genotype = coder.decode([trial.params[name] for name in coder.names])
                    written = study.get_trials(deepcopy=False)[trial.number].system_attrs
                    attrs = {self._attr: dict(written)} if written else {}
                    proposals.append(Proposal(genotype, self.name, attrs=attrs))
        return proposals


@dataclass(frozen=True)
class Told:
    """One record as a trial, in a form cheap to compare (the memo matches lists of these)."""

    state: TrialState
    indices: Tuple[int, ...]
    values: Optional[Tuple[float, ...]]
    system_attrs: Dict[str, Any]

    def trial(self, coder: GeneCoder, distributions: Dict[str, CategoricalDistribution]) -> FrozenTrial:
        return create_trial(state=self.state, params=dict(zip(coder.names, self.indices)),
                            distributions=distributions, values=None if self.values is None else list(self.values),
                            system_attrs=dict(self.system_attrs))


class _TruncatableStorage(InMemoryStorage):
    """Optuna's in-memory storage that can also forget its last trials, so one study can be
    brought back to a shorter list of trials instead of being rebuilt. It edits the parent's
    bookkeeping (``_studies``, ``_trial_id_to_study_id_and_number``, ``_max_trial_id``) so the
    result is what a fresh storage given the kept trials holds, trial ids included."""

    def truncate(self, study_id: int, keep: int) -> None:
        with self._lock:
            study = self._studies[study_id]
            for trial in study.trials[keep:]:
                del self._trial_id_to_study_id_and_number[trial._trial_id]
            del study.trials[keep:]
            self._max_trial_id = max(self._trial_id_to_study_id_and_number, default=-1)
            study.system_attrs.clear()
            study.best_trial_id = None
            for trial in study.trials:
                self._update_cache(trial._trial_id, study_id)


class _StudyMemo:
    """The last study built in this process and the trials it holds (see the module docstring).

    It also keeps the samplers' intersection search space (TPE and NSGA-II recompute it from
    every trial at each ask, comparing every distribution; with a fresh sampler per ask that is
    a full pass each time). Optuna's ``IntersectionSearchSpace`` is incremental over the trials
    after the first unfinished one it saw, so one is handed from sampler to sampler while the
    trials before that point are kept, and dropped otherwise. The intersection is a function of
    the trials alone, so the space is the one a fresh sampler computes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple[Any, ...]] = None
        self._study: Optional[optuna.Study] = None
        self._told: List[Told] = []
        #: Intersection search spaces by ``include_pruned``, valid for the trials held.
        self._spaces: Dict[bool, IntersectionSearchSpace] = {}

    @contextlib.contextmanager
    def study(self, directions: List[str], coder: GeneCoder, distributions: Dict[str, CategoricalDistribution],
              told: Sequence[Told], sampler: BaseSampler) -> Iterator[optuna.Study]:
        """A study holding exactly the ``told`` trials, asked through ``sampler``; what is asked
        of it is forgotten afterwards, since the records bring back the proposals the engine keeps."""
        with self._lock:
            key = (tuple(directions), coder.names, coder.sizes)
            if key != self._key or self._study is None:
                self._key, self._told, self._spaces = key, [], {}
                self._study = optuna.create_study(directions=directions, storage=_TruncatableStorage())
            study, storage = self._study, self._study._storage
            keep = 0
            for old, new in zip(self._told, told):
                if old != new:
                    break
                keep += 1
            storage.truncate(study._study_id, keep)
            self._spaces = {k: v for k, v in self._spaces.items() if v._cached_trial_number <= keep}
            study.add_trials([t.trial(coder, distributions) for t in told[keep:]])
            self._told = list(told)
            own = getattr(sampler, "_search_space", None)
            if type(own) is IntersectionSearchSpace:
                sampler._search_space = self._spaces.setdefault(own._include_pruned, own)
            study.sampler = sampler
            try:
                yield study
            finally:
                storage.truncate(study._study_id, len(self._told))


_MEMO = _StudyMemo()


class _ToldMemo:
    """What each record tells the study, kept by object identity for the next ask: records are
    frozen and the engine hands out the same object until its candidate changes, so only new or
    changed records are encoded again. Only the last ask's records are kept, so the memo does not
    grow with the runs a process serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple[Any, ...]] = None
        self._by_id: Dict[int, Tuple[Candidate, Optional[Told]]] = {}

    def of(self, key: Tuple[Any, ...], records: Sequence[Candidate],
           tell: Callable[[Candidate], Optional[Told]]) -> List[Optional[Told]]:
        """``tell(record)`` for each record (None for a record that is no trial), in order."""
        with self._lock:
            old = self._by_id if key == self._key else {}
            new: Dict[int, Tuple[Candidate, Optional[Told]]] = {}
            for record in records:
                hit = old.get(id(record))
                new[id(record)] = hit if hit is not None and hit[0] is record else (record, tell(record))
            self._key, self._by_id = key, new
            return [new[id(record)][1] for record in records]


_TOLD = _ToldMemo()


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
        return NSGAIISampler(population_size=o.population_size, crossover_prob=o.crossover_rate,
                             swapping_prob=o.swapping_prob, mutation_prob=o.gene_mutation_rate, seed=seed,
                             constraints_func=_constraints if constrained else None)


@register_strategy("optuna:random")
class OptunaRandom(OptunaStrategy):
    """Optuna's random sampler: the baseline of the other two, through the same rebuild."""

    Options = NoOptions

    def make_sampler(self, seed: int, constrained: bool) -> BaseSampler:
        return RandomSampler(seed=seed)
