"""EA4CNN against its baselines and ablations (Badan & Sekanina 2019, section 5.1).

    python benchmarks/ea4cnn.py [--dataset digits|PATH] [--seeds 5] [--population 6]
                                [--generations 6] [--a-min 0.8] [--workers 2] [--out DIR]

Five variants, each run with ``--seeds`` seeds at the same number of training epochs:
EA3 (selection + mutation + crossover, speciation on: the full algorithm), EA3 with
speciation off, EA1 (selection only), EA2 (selection + mutation, p_m = 0.8 as in the paper's
ablation) and RS-CNN (|P| random networks trained once for all the epochs an EA lineage gets);
the ablation's EA3 uses the paper's p_m = 0.5 there too. For each run the final network is the
fittest of the last population (RS-CNN: of its networks), chosen on the fitness part; the table
gives the mean and standard deviation over the seeds of its test accuracy (the paper's
"validation" part, 15 %, evaluated once for that network and used in no choice) and its
parameters, and the PNG the best fitness of the population per generation of the EA variants
(mean over seeds). No fitness is compared across EA and RS-CNN: s_rel is relative to each
search's own reference network (the best of an EA's initial population, the best of RS-CNN's
networks), so the two fitness scales differ; accuracy and parameters, which the fitness
combines, are compared instead.

The runs drive the real strategies (``ea4cnn``, ``rs-cnn``) through ask/tell with real
training, weight inheritance by node id (``hostside.arch.weights.inherit``) and the run's
75/10/15 split, but in this process and without the engine's ONNX export, board
measurements and front re-training: none of those changes what is compared here, and
leaving them out keeps 25 runs within minutes on two busy cores. ``hostside search
--strategy ea4cnn`` is the same algorithm with all of that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostside.search.strategies.ea4cnn import ABLATION_P_M  # noqa: E402 - after the path insert

VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "EA3": ("ea4cnn", {"ablation": "EA3", "p_m": ABLATION_P_M["EA3"]}),
    "EA3 no speciation": ("ea4cnn", {"ablation": "EA3", "p_m": ABLATION_P_M["EA3"], "speciation": False}),
    "EA1": ("ea4cnn", {"ablation": "EA1"}),
    "EA2": ("ea4cnn", {"ablation": "EA2", "p_m": ABLATION_P_M["EA2"]}),
    "RS-CNN": ("rs-cnn", {}),
}


def run_one(variant: str, seed: int, dataset_source: str, population: int, generations: int,
            a_min: float) -> Dict[str, Any]:
    """One search: ask/tell until the strategy stops; the best fitness per generation and the final network."""
    import numpy as np
    import torch

    from hostside.arch.build import build_module
    from hostside.arch.weights import inherit, state_of, with_normalisation
    from hostside.search.candidate import Candidate
    from hostside.search.strategies.base import AskContext, StrategySettings, make_strategy
    from hostside.search.strategies.ea4cnn import population_at
    from hostside.spaces.ea4cnn import Ea4cnnSpace
    from hostside.train.datasets import cached_dataset
    from hostside.train.loop import TrainConfig, train_model
    from hostside.train.splits import make_split

    torch.set_num_threads(1)
    name, options = VARIANTS[variant]
    dataset = cached_dataset(dataset_source)
    split = make_split(dataset, seed, 0.10, 0.15)
    space = Ea4cnnSpace(dataset.input_shape, dataset.num_classes)
    settings = StrategySettings(objectives=("accuracy", "params"), budgets={}, population=population, epochs=1,
                                budget=10 ** 6, seed=seed)
    strategy = make_strategy(name, {**options, "generations": generations, "a_min": a_min}, settings)
    namespace = name
    records: List[Candidate] = []
    states: Dict[int, Dict[str, Any]] = {}
    best_per_generation: List[float] = []
    started = time.perf_counter()
    epochs_used = 0
    for generation in range(generations + 2):
        ctx = AskContext(space, tuple(records), np.random.default_rng([seed, generation]), generation, len(records))
        proposals = strategy.ask(population, ctx)
        if not proposals:
            break
        born = []
        for proposal in proposals:
            spec = space.decode(proposal.genotype)
            config = TrainConfig.from_dict({"epochs": proposal.epochs, "seed": seed, "evaluate_test": False,
                                            **space.training_overrides(proposal.genotype)})
            init, fraction = None, 0.0
            if proposal.weights_from:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    fresh = state_of(build_module(spec))
                init, fraction, _ = inherit(fresh, [states[i] for i in proposal.weights_from])
            result = train_model(spec, dataset, split, config, init_state=init, data_seed=proposal.data_seed)
            epochs_used += proposal.epochs
            candidate_id = len(records) + len(born)
            states[candidate_id] = with_normalisation(state_of(result.module), result.mean, result.std)
            metrics = {"val_accuracy": result.val_accuracy, "params": spec.cost.params}
            born.append(Candidate(
                id=candidate_id, genotype=dict(proposal.genotype), parents=proposal.parents,
                operator=proposal.operator, generation=generation, status="measured", arch_hash=spec.content_hash(),
                objectives=(1 - result.val_accuracy, float(spec.cost.params)), violation=0.0, metrics=metrics,
                attrs=dict(proposal.attrs), weights_path=f"memory:{candidate_id}", inherited_fraction=fraction,
                weights_from=proposal.weights_from, epochs=proposal.epochs))
        records += born
        updates = strategy.tell(born, AskContext(space, tuple(records), ctx.rng, generation, len(records)))
        records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}}) for c in records]
        if name == "ea4cnn":
            current = {m.id: m for m in population_at(records, generation + 1, population, strategy.options.speciation)}
            best_per_generation.append(max(m.fitness for m in current.values()))
            states = {k: v for k, v in states.items() if k in current}  # only parents-to-be are inherited from
    if name == "ea4cnn":
        final_ids = {m.id for m in population_at(records, generations + 2, population, strategy.options.speciation)}
        final = [c for c in records if c.id in final_ids]
    else:
        final = records
        best_per_generation = [max(c.attrs[f"{namespace}.fitness"] for c in records)]
    best = max(final, key=lambda c: (c.attrs[f"{namespace}.fitness"], c.metrics["val_accuracy"], -c.id))
    # The chosen network's test accuracy: its trained weights evaluated once (0 epochs), after every choice.
    judged = train_model(space.decode(best.genotype), dataset, split, TrainConfig(epochs=0, seed=seed),
                         init_state=states[best.id])
    return {"variant": variant, "seed": seed, "accuracy": judged.test_accuracy, "params": best.metrics["params"],
            "best_per_generation": best_per_generation,
            "exercises": len(records), "epochs": epochs_used, "seconds": time.perf_counter() - started}


def summarise(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for variant in VARIANTS:
        mine = [r for r in results if r["variant"] == variant]
        if not mine:
            continue

        def stats(key: str) -> Tuple[float, float]:
            values = [float(r[key]) for r in mine]
            return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

        rows.append({"variant": variant, "runs": len(mine), "accuracy": stats("accuracy"), "params": stats("params"),
                     "exercises": mine[0]["exercises"], "epochs": mine[0]["epochs"],
                     "seconds": stats("seconds")})
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| variant | runs | test accuracy (not used in any choice) | params | trainings (epochs) | s per run |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['runs']} | {100 * r['accuracy'][0]:.2f} % ± {100 * r['accuracy'][1]:.2f} "
                     f"| {r['params'][0]:,.0f} ± {r['params'][1]:,.0f} "
                     f"| {r['exercises']} ({r['epochs']}) | {r['seconds'][0]:.0f} |")
    return "\n".join(lines)


def plot(results: List[Dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for variant, (strategy, _) in VARIANTS.items():
        curves = [r["best_per_generation"] for r in results if r["variant"] == variant]
        if not curves or strategy != "ea4cnn":  # RS-CNN's fitness has another s_rel reference
            continue
        length = min(len(c) for c in curves)
        ax.plot(range(length), [statistics.mean(c[g] for c in curves) for g in range(length)], marker="o",
                markersize=3, label=variant)
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel(f"best fitness in the population (mean of {len({r['seed'] for r in results})} seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="digits (default) or an MNIST/CIFAR path hostside reads")
    parser.add_argument("--seeds", type=int, default=5)
    # Smaller than the paper's |P| = 8, G_max = 20, so that 25 runs finish in minutes on two busy cores.
    parser.add_argument("--population", type=int, default=6, help="|P| (the paper: 8 for MNIST)")
    parser.add_argument("--generations", type=int, default=6, help="G_max (the paper: 20)")
    parser.add_argument("--a-min", type=float, default=0.8, help="minimal accuracy a_min (the paper: 0.8 MNIST, 0.6 CIFAR-10)")
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--out", type=Path, default=Path("benchmark_ea4cnn"), help="folder for the PNG")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, seed, args.dataset, args.population, args.generations, args.a_min)
            for seed in range(args.seeds) for v in variants]
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: List[Dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for result in pool.map(run_one, *zip(*jobs)):
            results.append(result)
            print(f"[{time.perf_counter() - started:6.0f} s] {result['variant']:<18} seed {result['seed']}: "
                  f"test accuracy {100 * result['accuracy']:.2f} %, {result['params']:,} params "
                  f"({result['seconds']:.0f} s)", file=sys.stderr, flush=True)
    print(f"EA4CNN on {args.dataset}: |P| = {args.population}, G_max = {args.generations}, {args.seeds} seeds; "
          f"mean ± standard deviation over the seeds")
    print(table(summarise(results)))
    png = plot(results, args.out / "ea4cnn_fitness.png",
               f"EA4CNN on {args.dataset}: |P| = {args.population}, G_max = {args.generations}")
    print(f"wrote {png}; {time.perf_counter() - started:.0f} s in all, load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
