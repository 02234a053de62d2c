"""Pareto elaboration: laws learned over a grid of params targets, every sample judged untrained.

The grid splits each decade into [tau, 2 tau, 5 tau, 10 tau] for tau = 10^3 .. 10^6; one GA run
per sliding window of consecutive grid values (12 windows), k laws each, ``n_val`` samples per
law: 12 x 10 x 100 = 12,000 networks per space with the defaults, each with its analytic cost
and the latency the board's calibration predicts. A window the space cannot reach at all is
skipped (and listed); one it reaches in part is clipped to the reachable range. Filtering this
population by budgets gives the constraint search its candidates (``hostside.laws.constraint``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.laws.ga import GASettings, reachable_range
from hostside.laws.learn import learn_laws
from hostside.laws.metrics import make_metric
from hostside.laws.plots import plot_population
from hostside.spaces.narrow import Config, NarrowSpace

POPULATION_FILE = "population.json"
#: A clipped window narrower than this ratio is not worth a GA run.
MIN_WINDOW_RATIO = 1.2

Say = Callable[[str], None]


def target_grid(decades: Sequence[int] = (3, 4, 5, 6)) -> List[float]:
    """[tau, 2 tau, 5 tau] for each tau = 10^d, closed by 10 x the last tau."""
    grid = [m * 10.0 ** d for d in sorted(decades) for m in (1, 2, 5)]
    return grid + [10.0 ** (max(decades) + 1)]


def windows_of(grid: Sequence[float]) -> List[Tuple[float, float]]:
    return [(grid[i], grid[i + 1]) for i in range(len(grid) - 1)]


def judge_population(space: NarrowSpace, configs: Sequence[Config], calibration: Any) -> List[Dict[str, Any]]:
    """Cost and predicted latency of each configuration's network (one batched prediction)."""
    specs = [space.spec(c) for c in configs]
    latency = calibration.predict_many(specs)[0] if calibration is not None else [None] * len(specs)
    rows = []
    for config, spec, ms in zip(configs, specs, latency):
        cost = spec.cost
        rows.append({"config": config, "params": cost.params, "macs": cost.macs,
                     "activation_bytes": cost.activation_bytes, "weight_bytes": cost.weight_bytes,
                     "latency_ms": None if ms is None else float(ms)})
    return rows


def elaborate(space: NarrowSpace, calibration: Any, windows: Sequence[Tuple[float, float]],
              settings: GASettings = GASettings(), n_val: int = 100, out_dir: Optional[Path] = None,
              say: Say = print) -> Dict[str, Any]:
    """Learn laws per window, judge ``n_val`` samples of each; writes population.json and a PNG."""
    metric = make_metric("params")
    rng = np.random.default_rng([settings.seed, 3])
    reach = reachable_range(space, metric, rng)
    started = time.perf_counter()
    population: List[Dict[str, Any]] = []
    learned: List[Dict[str, Any]] = []
    skipped: List[Dict[str, Any]] = []
    for w, (tau1, tau2) in enumerate(windows):
        lo, hi = max(tau1, reach[0]), min(tau2, reach[1])
        if hi / lo < MIN_WINDOW_RATIO:
            skipped.append({"window": [tau1, tau2], "reason": f"outside the reachable range "
                                                              f"[{reach[0]:.4g}, {reach[1]:.4g}] params"})
            say(f"window {w + 1}/{len(windows)} [{tau1:g}, {tau2:g}] params: outside what {space.name} reaches "
                f"([{reach[0]:.4g}, {reach[1]:.4g}]); skipped")
            continue
        body, samples = learn_laws(space, metric, lo, hi,
                                   GASettings(**{**settings.to_dict(), "seed": settings.seed + w}),
                                   n_val=n_val, reach=reach, n_uniform=0)
        for law, configs in zip(body["laws"], samples["configs"]):
            for row in judge_population(space, configs, calibration):
                population.append({"window": [tau1, tau2], "law": law["rank"], **row})
        learned.append({"window": [tau1, tau2], "target": [lo, hi], "laws": body["laws"]})
        inside = np.mean([law["validation"]["share_inside"] for law in body["laws"]])
        say(f"window {w + 1}/{len(windows)} [{lo:g}, {hi:g}] params: {len(body['laws'])} laws, "
            f"{inside:.0%} of their samples inside; {len(population)} networks judged so far")
    result: Dict[str, Any] = {
        "space": space.describe(), "reachable_params": list(reach), "settings": {**settings.to_dict(), "n_val": n_val},
        "calibration": None if calibration is None else {"board": calibration.board.get("name"),
                                                         "path": str(calibration.path) if calibration.path else None},
        "windows": learned, "skipped": skipped, "networks": len(population), "population": population,
        "seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pop_file = out_dir / POPULATION_FILE
        pop_file.write_text(json.dumps(result, allow_nan=False) + "\n")
        points = [{"window": tuple(p["window"]), "params": p["params"], "latency_ms": p["latency_ms"]}
                  for p in population if p["latency_ms"] is not None]
        png = out_dir / "population.png"
        if points:
            plot_population(png, f"{space.name}: {len(points)} networks judged without training", points)
        result["population_file"] = str(pop_file)
        result["png"] = str(png)
    return result



def load_population(path: Path) -> Dict[str, Any]:
    """An elaborated population written by ``elaborate``; one UserError line for a bad file."""
    from hostside.errors import UserError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the elaborated population ({exc}); write it with "
                        f"`hostside laws elaborate`") from None
    if not isinstance(data, dict) or "population" not in data or "space" not in data:
        raise UserError(f"{path}: not an elaborated population; write it with `hostside laws elaborate`")
    return data
