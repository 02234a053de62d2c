"""The genetic algorithm that learns sampling laws for a target interval of a metric.

As in the narrow-space search paper: a law's statistic (mu, sigma) is the mean and standard
deviation of log10(metric) over ``n_eval`` networks it samples, and its cost
``|mu - sigma - log10 tau1| + |mu + sigma - log10 tau2|`` is smallest when the high-density
range of the sampled distribution coincides with the interval (a one-sided goal such as
``mu < tau`` would be met trivially by the smallest network). Steady-state tournament GA:
``n_init`` random laws, then ``n_steps`` children, each a mutation of a tournament winner that
moves some l_x and h_x, replacing the loser of a second tournament when it is cheaper. The
final population goes to ``clustering.best_per_cluster``.

Written here rather than with pymoo: pymoo's GA evaluates a whole generation per step and
works on real vectors, while the paper's algorithm is steady-state over integer bound pairs
that must stay ordered; the loop is a few lines.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from hostside.errors import UserError
from hostside.laws.law import Law
from hostside.laws.metrics import Metric
from hostside.spaces.narrow import Config, NarrowSpace

Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class GASettings:
    """The paper's defaults: (n_init + n_steps) * n_eval = 10,000 networks per search."""

    n_init: int = 100
    n_steps: int = 900
    n_eval: int = 10
    k: int = 10
    tournament: int = 3
    seed: int = 0

    def validate(self) -> None:
        for name in ("n_init", "n_eval", "k", "tournament"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_steps < 0:
            raise UserError(f"n_steps must be at least 0, got {self.n_steps}")
        if self.n_eval < 2:
            raise UserError("n_eval must be at least 2 (a standard deviation needs two samples)")

    def to_dict(self) -> dict:
        return asdict(self)


def law_cost(log_values: np.ndarray, log_tau1: float, log_tau2: float) -> float:
    """|mu - sigma - tau1| + |mu + sigma - tau2| in log10 space (the paper's cost)."""
    mu = float(np.mean(log_values))
    sigma = float(np.std(log_values, ddof=1))  # the sample standard deviation of n_eval draws
    return abs(mu - sigma - log_tau1) + abs(mu + sigma - log_tau2)


def judge(space: NarrowSpace, configs: Sequence[Config], metric: Metric) -> np.ndarray:
    """The metric of each configuration's network, computed without training."""
    return metric.values([space.spec(c) for c in configs])


def reachable_range(space: NarrowSpace, metric: Metric, rng: np.random.Generator, samples: int = 200
                    ) -> Tuple[float, float]:
    """Smallest and largest metric seen at the all-low and all-high corners and in uniform samples.

    Params and MACs grow with every variable, so for them the corners are the exact extremes."""
    whole = Law.uniform(space)
    corners = np.stack([whole.low, whole.high])
    configs = space.configs_from_levels(corners) + whole.sample(space, samples, rng)
    values = judge(space, configs, metric)
    return float(values.min()), float(values.max())


def check_target(tau1: float, tau2: float, reach: Tuple[float, float], metric: Metric, space_name: str) -> None:
    """One line for an empty interval or one the space cannot reach."""
    if not (math.isfinite(tau1) and math.isfinite(tau2)) or tau1 <= 0:
        raise UserError(f"target [{tau1:g}, {tau2:g}] must be two positive finite numbers")
    if tau1 >= tau2:
        raise UserError(f"target needs tau1 < tau2, got {tau1:g} >= {tau2:g}; give --target LOW HIGH")
    lo, hi = reach
    if tau1 < lo or tau2 > hi:
        raise UserError(f"target [{tau1:g}, {tau2:g}] {metric.label} is outside what {space_name} can reach "
                        f"(about [{lo:.4g}, {hi:.4g}]); choose an interval inside that range")


def _random_law(n_levels: np.ndarray, rng: np.random.Generator) -> Law:
    a = rng.integers(0, n_levels)
    b = rng.integers(0, n_levels)
    return Law(np.minimum(a, b), np.maximum(a, b))


def mutate_law(law: Law, n_levels: np.ndarray, rng: np.random.Generator) -> Law:
    """Move l_x and/or h_x of about one variable in three (at least one) by a random step, keeping
    l_x <= h_x within the limits. Step sizes are log-uniform between one level and a quarter of
    the range: large moves explore, the frequent small ones fine-tune a good law."""
    child = law.copy()
    nvars = len(n_levels)
    chosen = np.flatnonzero(rng.random(nvars) < 1.0 / 3.0)
    if chosen.size == 0:
        chosen = np.array([rng.integers(0, nvars)])
    for j in chosen:
        top = int(n_levels[j]) - 1
        if top == 0:
            continue
        reach = max(1.0, top / 4.0)
        which = rng.integers(0, 3)  # 0: low, 1: high, 2: both (shift the range)
        step = int(round(reach ** rng.random())) * int(rng.choice((-1, 1)))
        lo, hi = int(child.low[j]), int(child.high[j])
        if which in (0, 2):
            lo += step
        if which in (1, 2):
            hi += step
        lo, hi = min(max(lo, 0), top), min(max(hi, 0), top)
        child.low[j], child.high[j] = min(lo, hi), max(lo, hi)
    return child


@dataclass
class Population:
    laws: List[Law]
    costs: np.ndarray


def run_ga(space: NarrowSpace, metric: Metric, tau1: float, tau2: float, settings: GASettings,
           progress: Optional[Progress] = None) -> Population:
    """The final population after ``n_init`` random laws and ``n_steps`` steady-state steps."""
    rng = np.random.default_rng(settings.seed)
    n_levels = np.array([len(v.values) for v in space.variables], dtype=np.int64)
    log_tau1, log_tau2 = math.log10(tau1), math.log10(tau2)

    def cost_of(law: Law) -> float:
        values = judge(space, law.sample(space, settings.n_eval, rng), metric)
        return law_cost(np.log10(np.maximum(values, 1e-12)), log_tau1, log_tau2)

    total = settings.n_init + settings.n_steps
    laws: List[Law] = []
    costs: List[float] = []
    for i in range(settings.n_init):
        law = _random_law(n_levels, rng)
        laws.append(law)
        costs.append(cost_of(law))
        if progress and (i + 1) % 50 == 0:
            progress(i + 1, total, min(costs))
    cost_array = np.array(costs)
    size = min(settings.tournament, len(laws))
    for step in range(settings.n_steps):
        entrants = rng.choice(len(laws), size=size, replace=False)
        parent = laws[int(entrants[np.argmin(cost_array[entrants])])]
        child = mutate_law(parent, n_levels, rng)
        child_cost = cost_of(child)
        rivals = rng.choice(len(laws), size=size, replace=False)
        loser = int(rivals[np.argmax(cost_array[rivals])])
        if child_cost < cost_array[loser]:
            laws[loser] = child
            cost_array[loser] = child_cost
        done = settings.n_init + step + 1
        if progress and (done % 50 == 0 or done == total):
            progress(done, total, float(cost_array.min()))
    return Population(laws, cost_array)
