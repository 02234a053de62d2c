"""One learning run: GA, clustering, and a validation sample of every kept law.

``learn_laws`` returns the JSON-ready body of ``laws.json``: the space, metric, target and
settings it was learned with, the reachable range, the k laws with their GA cost and the share
of ``n_val`` fresh samples that fall inside the interval, and the same share for uniform
sampling of the whole space (what the method is measured against).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from hostside.laws.clustering import best_per_cluster
from hostside.laws.ga import GASettings, Progress, check_target, judge, law_cost, reachable_range, run_ga
from hostside.laws.law import Law
from hostside.laws.metrics import Metric
from hostside.spaces.narrow import NarrowSpace

N_VAL = 100
#: Uniform samples of the whole space the laws are compared with (large networks: the slow part).
N_UNIFORM = 500
#: Cheapest laws per cluster re-scored on ``n_val`` samples before the cluster's best is chosen.
FINALISTS = 3


def share_inside(values: np.ndarray, tau1: float, tau2: float) -> float:
    return float(np.mean((values >= tau1) & (values <= tau2))) if len(values) else 0.0


def summary(values: np.ndarray, tau1: float, tau2: float) -> Dict[str, float]:
    return {"samples": int(len(values)), "share_inside": share_inside(values, tau1, tau2),
            "median": float(np.median(values)), "p10": float(np.quantile(values, 0.1)),
            "p90": float(np.quantile(values, 0.9))}


def learn_laws(space: NarrowSpace, metric: Metric, tau1: float, tau2: float,
               settings: GASettings = GASettings(), n_val: int = N_VAL,
               progress: Optional[Progress] = None,
               reach: Optional[Tuple[float, float]] = None, n_uniform: int = N_UNIFORM
               ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Learn k laws for ``tau1 <= metric <= tau2``; raises UserError for a bad target.

    Returns the laws.json body and the validation samples (``laws``: one metric array per law,
    ``uniform``: the whole space's, ``configs``: each law's configurations) for plots and callers.
    """
    settings.validate()
    rng = np.random.default_rng([settings.seed, 1])
    if reach is None:
        reach = reachable_range(space, metric, rng)
    check_target(tau1, tau2, reach, metric, space.name)
    started = time.perf_counter()
    population = run_ga(space, metric, tau1, tau2, settings, progress)
    clusters = best_per_cluster(space, population.laws, population.costs, settings.k, settings.seed, FINALISTS)
    ga_seconds = time.perf_counter() - started
    log_tau = (math.log10(tau1), math.log10(tau2))
    chosen = []
    for cluster, finalists in clusters:
        # Why re-score: a GA cost from n_eval = 10 draws rewards lucky draws; the cluster's best
        # fit is judged on n_val fresh draws among its few cheapest members.
        scored = []
        for law, ga_cost in finalists:
            configs = law.sample(space, n_val, rng)
            values = judge(space, configs, metric)
            scored.append((law_cost(np.log10(np.maximum(values, 1e-12)), *log_tau), ga_cost, law, configs, values))
        chosen.append((cluster, min(scored, key=lambda item: item[0])))
    chosen.sort(key=lambda item: item[1][0])
    laws = []
    samples: Dict[str, Any] = {"laws": [], "configs": []}
    for rank, (cluster, (val_cost, ga_cost, law, configs, values)) in enumerate(chosen):
        samples["laws"].append(values)
        samples["configs"].append(configs)
        laws.append({"rank": rank, "cluster": cluster, "cost": ga_cost, "validation_cost": val_cost,
                     "bounds": law.to_dict(space), "validation": summary(values, tau1, tau2)})
    uniform = judge(space, Law.uniform(space).sample(space, n_uniform, rng), metric) if n_uniform else np.array([])
    samples["uniform"] = uniform
    body = {
        "space": space.describe(),
        "variables": space.describe_variables(),
        "metric": metric.describe(),
        "target": {"tau1": tau1, "tau2": tau2},
        "settings": {**settings.to_dict(), "n_val": n_val},
        "reachable_range": list(reach),
        "laws": laws,
        "uniform": summary(uniform, tau1, tau2) if len(uniform) else None,
        "ga_seconds": ga_seconds,
        "networks_judged": (settings.n_init + settings.n_steps) * settings.n_eval
                           + sum(len(f) for _, f in clusters) * n_val,
    }
    return body, samples


ProgressLine = Callable[[str], None]


def progress_printer(say: ProgressLine, what: str) -> Progress:
    """A GA progress callback printing ``what: step/total, best cost``."""
    def report(done: int, total: int, best: float) -> None:
        say(f"{what}: {done}/{total} laws evaluated, best cost {best:.3f}")
    return report
