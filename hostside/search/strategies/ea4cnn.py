"""EA4CNN (Badan & Sekanina 2019): neuroevolution with weight inheritance and age-based speciation.

Algorithm 1 of the paper, over the engine's ask/tell:

1. the initial population: ``population`` random networks of the ``ea4cnn`` space, or, with
   ``seed_model``, the trained seed itself (evaluated unchanged) and mutants of it that inherit
   its weights; evaluated on the fitness split;
2. each generation ``ask`` replays the population from the journal's records (stateless:
   ``population_at``), then builds ``population`` offspring: two-member tournaments pick the
   parents a, b; with ``crossover_rate`` one-point crossover gives a', b' (else copies); each child is
   mutated with ``mutation_rate`` by one of MO1..MO6 drawn with ``mo_probabilities``. Every child is
   trained for ``epochs_per_generation`` epochs, starting from the weights it inherits by node
   id (crossover children from both parents, the front part's parent first), on a freshly
   shuffled training split (a new ``data_seed`` per exercise). An unchanged child is the
   parent trained once more ("retrain");
3. ``tell`` gives each trained child its fitness, age and species (journaled attributes
   ``ea4cnn.fitness``, ``ea4cnn.age``, ``ea4cnn.species``): the age is the parent's + 1, capped
   at ``age_max`` (default |P|/2), and reset to 1 (one training since the change) when a
   variation operator changed the network and its fitness dropped below its parent's;
4. replacement with speciation: the new population takes the same number of best individuals
   from each age level of P u Q (remaining places go to the best left over); with
   ``speciation = false`` simply the |P| best.

Fitness (equation 1): f = a * (k / log(s_rel + 1) + 1) if a >= a_min, else 0, where a is the
accuracy on the fitness split (the run's ``val`` part, 10 %) and s_rel the parameters relative
to the best network of the initial population (the seed, when seeded); ``log`` is natural.
The run's split is 75 % train, 10 % fitness, 15 % validation (``test``, reported, never used).

Deviation, on purpose: the paper evaluates its random initial networks untrained, so all score
0 and the s_rel reference is an arbitrary network; here they are trained ``initial_epochs``
(default 1) first; ``initial_epochs = 0`` gives the literal variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import hostside.spaces.ea4cnn  # noqa: F401 - registers the "ea4cnn" space this strategy evolves
from hostside.errors import UserError
from hostside.options import setting
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy

NAME = "ea4cnn"
PAPER_MO_PROBABILITIES = [0.41, 0.07, 0.03, 0.29, 0.10, 0.10]
ABLATIONS = ("EA1", "EA2", "EA3")
#: p_mut of the main experiments (section 4) and of the ablation study (section 5.1: EA2 0.80,
#: EA3 0.50); ``mutation_rate`` unset takes 0.80 for EA2 and the main experiments' 0.7 for EA3, whose
#: ablation value ``benchmarks/ea4cnn.py`` sets explicitly.
PAPER_P_M = 0.7
ABLATION_P_M = {"EA2": 0.8, "EA3": 0.5}
SEED_DIR = "seed"
FITNESS = f"{NAME}.fitness"
AGE = f"{NAME}.age"


@dataclass
class Ea4cnnOptions:
    generations: int = setting(20, "G_max, generations of offspring after the initial population", minimum=1)
    crossover_rate: float = setting(0.35, "crossover probability (the paper's p_cross)", minimum=0, maximum=1,
                                    aliases=("p_c",))
    mutation_rate: Optional[float] = setting(None, "mutation probability per individual (the paper's p_mut); "
                                             "unset means 0.7 (the paper's EA1/EA3), 0.8 with "
                                             "`ablation = \"EA2\"`", default_text="unset", minimum=0, maximum=1,
                                             aliases=("p_m",))
    mo_probabilities: List[float] = setting(default_factory=lambda: list(PAPER_MO_PROBABILITIES), help="probabilities "
                                            "of MO1 weight reset, MO2 add layer, MO3 remove layer, MO4 modify "
                                            "layer, MO5 change the head's width, MO6 change the learning rate (sum "
                                            "1)")
    epochs_per_generation: int = setting(1, "epochs each offspring (and survivor) trains per generation, from "
                                         "inherited weights", minimum=1)
    initial_epochs: int = setting(1, "epochs of the initial population before its first evaluation (0: untrained, "
                                  "as the paper literally does)", minimum=0)
    age_max: int = setting(0, "highest age (species); 0 means |P|/2", minimum=0)
    k: float = setting(0.5, "weight of the size term in the fitness a·(k/log(s_rel+1) + 1)", minimum=0,
                       above_minimum=True)
    a_min: float = setting(0.8, "accuracy below which the fitness is 0", minimum=0, maximum=1)
    speciation: bool = setting(True, "replacement per age level (off: plain elitism)")
    ablation: str = setting("EA3", "`EA1` selection only, `EA2` + mutation, `EA3` + crossover (the full algorithm)")
    seed_model: Optional[str] = setting(None, "a trained ONNX model the initial population starts from "
                                        "(`--seed-model`)")

    def validate(self) -> None:
        probabilities = self.mo_probabilities
        if len(probabilities) != 6:
            raise UserError(f"option 'mo_probabilities': {probabilities!r} needs 6 values, one for each of MO1..MO6")
        for i, value in enumerate(probabilities):
            if not 0 <= value <= 1:
                raise UserError(f"option 'mo_probabilities': MO{i + 1} = {value!r} is not a probability in [0, 1]")
        if not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6):
            raise UserError(f"option 'mo_probabilities': {probabilities!r} sums to {sum(probabilities):.6g}; "
                            f"the six probabilities must sum to 1")
        if self.ablation not in ABLATIONS:
            raise UserError(f"option 'ablation': {self.ablation!r} is not allowed; choose one of {', '.join(ABLATIONS)}")
        if self.seed_model is not None and not Path(self.seed_model).is_file():
            raise UserError(f"option 'seed_model': {self.seed_model!r} is not a file; give a trained .onnx model")

    @property
    def mutation_probability(self) -> float:
        if self.mutation_rate is not None:
            return float(self.mutation_rate)
        return ABLATION_P_M["EA2"] if self.ablation == "EA2" else PAPER_P_M

    @property
    def use_mutation(self) -> bool:
        return self.ablation in ("EA2", "EA3")

    @property
    def use_crossover(self) -> bool:
        return self.ablation == "EA3"


# -- the paper's arithmetic, as pure functions -----------------------------------------------

def fitness(accuracy: Optional[float], params: int, reference_params: int, k: float = 0.5,
            a_min: float = 0.8) -> float:
    """Equation 1: a * (k / ln(s_rel + 1) + 1) when a >= a_min, else 0 (s_rel = params / reference)."""
    if accuracy is None or not math.isfinite(accuracy) or accuracy < a_min:
        return 0.0
    s_rel = params / reference_params
    return accuracy * (k / math.log(s_rel + 1) + 1)


@dataclass(frozen=True)
class Member:
    """One individual of a population: its candidate id, fitness, age and genotype."""

    id: int
    fitness: float
    age: int
    params: int
    genotype: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _better(member: Member) -> Tuple[float, int, int]:
    """Sort key: higher fitness, then fewer parameters, then the older candidate."""
    return (-member.fitness, member.params, member.id)


def tournament(population: Sequence[Member], rng: np.random.Generator) -> Member:
    """Two-member tournament: draw two distinct individuals, keep the fitter."""
    if len(population) == 1:
        return population[0]
    i, j = rng.choice(len(population), size=2, replace=False)
    return min(population[int(i)], population[int(j)], key=_better)


def replace_with_speciation(pool: Sequence[Member], size: int, speciation: bool = True) -> List[Member]:
    """The next population from P u Q.

    With speciation every age level present gets ``size // levels`` places, filled with its
    best; places a level cannot fill (and the remainder of the division) go to the best
    individuals left over. With more levels than places, the levels' best compete. Without
    speciation: the ``size`` best overall.
    """
    ranked = sorted(pool, key=_better)
    if not speciation:
        return ranked[:size]
    levels = sorted({m.age for m in pool})
    quota = size // len(levels) if levels else 0
    chosen: List[Member] = []
    if quota == 0:
        heads = [next(m for m in ranked if m.age == level) for level in levels]
        return sorted(heads, key=_better)[:size]
    for level in levels:
        chosen += [m for m in ranked if m.age == level][:quota]
    taken = {m.id for m in chosen}
    chosen += [m for m in ranked if m.id not in taken][: size - len(chosen)]
    return sorted(chosen, key=_better)


# -- population replay -------------------------------------------------------------------------

def member_of(candidate: Candidate) -> Optional[Member]:
    """The population member a told, trained candidate is (None for a failed or untold one)."""
    if FITNESS not in candidate.attrs or not candidate.trained:
        return None
    return Member(candidate.id, float(candidate.attrs[FITNESS]), int(candidate.attrs[AGE]),
                  int(candidate.metrics.get("params") or 0), candidate.genotype)


def generations_of(records: Sequence[Candidate], before: int) -> List[List[Member]]:
    """Members grouped by generation (ascending), for the generations before ``before``."""
    groups: Dict[int, List[Member]] = {}
    for record in records:
        if record.generation >= before:
            continue
        member = member_of(record)
        if member is not None:
            groups.setdefault(record.generation, []).append(member)
    return [groups[g] for g in sorted(groups)]


def population_at(records: Sequence[Candidate], before: int, size: int, speciation: bool) -> List[Member]:
    """Replay Algorithm 1's replacements over the journal: the population P after the last
    generation before ``before`` (the initial population, then ``replace(P u Q_g)`` for each)."""
    groups = generations_of(records, before)
    if not groups:
        return []
    population = sorted(groups[0], key=_better)[:size]
    for offspring in groups[1:]:
        population = replace_with_speciation(population + offspring, size, speciation)
    return population


# -- seeding from a trained model ------------------------------------------------------------

def write_seed(model: Path, space: Any, out_dir: Path) -> Path:
    """Import ``model`` (ONNX), encode it as a genotype of ``space`` and write ``out_dir/``
    spec.json, genotype.json and weights.npz (re-keyed to the genotype's node ids). Files
    already there (a resumed run) are kept: the seed is read once per run."""
    import json

    from hostside.arch.onnx_import import import_onnx
    from hostside.arch.spec import SpecError
    from hostside.arch.weights import save_state

    if (out_dir / "genotype.json").is_file() and (out_dir / "weights.npz").is_file():
        return out_dir
    imported = import_onnx(model)
    try:
        genotype, state = space.encode_state(imported.spec, imported.weights)
    except SpecError as exc:
        raise UserError(f"--seed-model {model}: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    space.decode(genotype).save(out_dir / "spec.json")
    save_state(state, out_dir / "weights.npz")
    (out_dir / "genotype.json").write_text(json.dumps(genotype, indent=1) + "\n")
    return out_dir


def read_seed(seed_dir: Path) -> Tuple[Mapping[str, Any], str]:
    """The seed's genotype and the absolute path of its weights file."""
    import json

    return json.loads((seed_dir / "genotype.json").read_text()), str((seed_dir / "weights.npz").resolve())


@register_strategy(NAME)
class Ea4cnn(Strategy):
    """Algorithm 1; see the module docstring."""

    Options = Ea4cnnOptions
    #: 10 % fitness split (``val``), 15 % validation (``test``), the rest (75 %) for training.
    split_fractions = (0.10, 0.15)
    default_space = "ea4cnn"

    def __init__(self, options: Ea4cnnOptions, settings: Any):
        super().__init__(options, settings)
        self.seed_dir: Optional[Path] = None

    @property
    def age_max(self) -> int:
        return self.options.age_max or max(1, self.settings.population // 2)

    # -- seeding ----------------------------------------------------------------------------

    def prepare(self, run_dir: Path, space: Any) -> None:
        """Turn ``seed_model`` into ``run_dir/seed/`` (spec.json, genotype.json, weights.npz keyed
        by the genotype's node ids) once; a resumed run finds the files and reuses them."""
        if getattr(space, "name", None) != "ea4cnn":
            raise UserError(f"strategy 'ea4cnn' evolves the 'ea4cnn' space (its MO1-MO6 and two-child crossover), "
                            f"not {getattr(space, 'name', space)!r}; add --space ea4cnn")
        if self.options.seed_model is None:
            return
        self.seed_dir = write_seed(Path(self.options.seed_model), space, Path(run_dir) / SEED_DIR)

    def _seed(self) -> Tuple[Mapping[str, Any], str]:
        if self.seed_dir is None:
            raise UserError("ea4cnn: seed_model is set but the engine did not call prepare(run_dir, space)")
        return read_seed(self.seed_dir)

    # -- ask --------------------------------------------------------------------------------

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        groups = generations_of(ctx.records, ctx.generation)
        if not groups:
            return self._initial(n, ctx)
        if len(groups) - 1 >= self.options.generations:
            return []
        population = population_at(ctx.records, ctx.generation, self.settings.population, self.options.speciation)
        if not population:
            return []
        offspring: List[Proposal] = []
        while len(offspring) < n:
            offspring += self._pair(population, ctx)
        return offspring[:n]

    def _exercise(self, ctx: AskContext) -> int:
        return int(ctx.rng.integers(0, 2 ** 31))

    def _initial(self, n: int, ctx: AskContext) -> List[Proposal]:
        epochs = self.options.initial_epochs
        if self.options.seed_model is None:
            return [Proposal(ctx.space.sample(ctx.rng), "sample", epochs=epochs, data_seed=self._exercise(ctx))
                    for _ in range(n)]
        genotype, weights = self._seed()
        already = [c for c in ctx.records if c.operator == "seed"]
        proposals = [] if already else [Proposal(dict(genotype), "seed", weights_from=(weights,), epochs=0)]
        while len(proposals) < n:
            child, operator = self._mutated(genotype, ctx)
            proposals.append(Proposal(child, f"seed+{operator}" if operator else "seed", weights_from=(weights,),
                                      epochs=max(epochs, 1), data_seed=self._exercise(ctx)))
        return proposals

    def _pair(self, population: Sequence[Member], ctx: AskContext) -> List[Proposal]:
        rng, options = ctx.rng, self.options
        a, b = tournament(population, rng), tournament(population, rng)
        children = [(dict(a.genotype), [], (a.id,)), (dict(b.genotype), [], (b.id,))]
        if options.use_crossover and a.id != b.id and rng.random() < options.crossover_rate:
            first, second = ctx.space.crossover_pair(a.genotype, b.genotype, rng)
            if (first, second) != (a.genotype, b.genotype):
                children = [(first, ["crossover"], (a.id, b.id)), (second, ["crossover"], (b.id, a.id))]
        proposals = []
        for (genotype, operators, lineage), parent in zip(children, (a, b)):
            if options.use_mutation and rng.random() < options.mutation_probability:
                genotype, mutation = self._mutated(genotype, ctx)
                if mutation:
                    operators = operators + [mutation]
            changed = bool(operators)
            genotype = {**genotype, "age": parent.age}
            proposals.append(Proposal(
                genotype, "+".join(operators) or "retrain", lineage, lineage, epochs=options.epochs_per_generation,
                data_seed=self._exercise(ctx),
                attrs={f"{NAME}.changed": changed, f"{NAME}.parent_fitness": parent.fitness,
                       f"{NAME}.parent_age": parent.age},
            ))
        return proposals

    def _mutated(self, genotype: Mapping[str, Any], ctx: AskContext) -> Tuple[Mapping[str, Any], str]:
        """One MO drawn with ``mo_probabilities`` among those that can change this genotype;
        ('', unchanged) when none can."""
        from hostside.arch.spec import SpecError

        space = ctx.space
        weights = np.array(self.options.mo_probabilities, dtype=float)
        operators = list(space.mutation_operators)
        for _ in range(len(operators)):
            usable = np.array([w if space.applicable(genotype, op) else 0.0 for op, w in zip(operators, weights)])
            if usable.sum() <= 0:
                break
            operator = operators[int(ctx.rng.choice(len(operators), p=usable / usable.sum()))]
            try:
                return space.mutate(dict(genotype), ctx.rng, operator=operator)
            except SpecError:
                weights[operators.index(operator)] = 0.0
        return genotype, ""

    # -- tell -------------------------------------------------------------------------------

    def reference_params(self, records: Sequence[Candidate]) -> Optional[int]:
        """Parameters of the best network of the initial population (the seed when seeded)."""
        first = min((c.generation for c in records), default=None)
        initial = [c for c in records if c.generation == first and c.trained
                   and c.metrics.get("val_accuracy") is not None]
        seeds = [c for c in initial if c.operator == "seed"]
        if seeds:
            return int(seeds[0].metrics["params"])
        if not initial:
            return None
        best = max(initial, key=lambda c: (c.metrics["val_accuracy"], -int(c.metrics["params"]), -c.id))
        return int(best.metrics["params"])

    def tell(self, finished: Sequence[Candidate], ctx: AskContext) -> Dict[int, Dict[str, Any]]:
        reference = self.reference_params(ctx.records)
        updates: Dict[int, Dict[str, Any]] = {}
        for c in finished:
            accuracy = c.metrics.get("val_accuracy")
            if not c.trained or accuracy is None or reference is None:
                continue
            params = int(c.metrics["params"])
            f = fitness(accuracy, params, reference, self.options.k, self.options.a_min)
            parent_age = c.attrs.get(f"{NAME}.parent_age")
            trainings = 1 if (c.epochs is None or c.epochs > 0) else 0
            age = trainings if parent_age is None else min(int(parent_age) + trainings, self.age_max)
            reset = bool(c.attrs.get(f"{NAME}.changed")) and f < float(c.attrs.get(f"{NAME}.parent_fitness", 0.0))
            if reset:
                age = 1
            updates[c.id] = {FITNESS: f, AGE: age, f"{NAME}.species": age, f"{NAME}.s_rel": params / reference,
                             f"{NAME}.age_reset": reset}
        return updates
