"""NeuroPower on digits: SPEA-II against NSGA-II and random search, and K-means++ pruning.

    python benchmarks/neuropower.py [--dataset digits|PATH] [--seeds 5] [--population 5]
                                    [--iterations 3] [--epochs 2] [--shares 0.3,0.65,0.75]
                                    [--prune-iterations 5] [--fine-tune-epochs 2] [--workers 2]
                                    [--out DIR]

1. Search: ``spea2``, ``nsga2`` and ``random`` over ``--space dense`` (scaled for digits), each
   ``--population`` x ``--iterations`` trainings of ``--epochs`` epochs (the same training budget),
   ``--seeds`` seeds. Each strategy chooses on validation accuracy (SPEA-II's fitness is the
   paper's Score = accuracy / params), and no candidate is evaluated on the test split. Per run
   the hypervolume of every trained candidate in (1 - validation accuracy, params / P_ref)
   against (1, 1), P_ref = the largest network of the space; the table gives mean and standard
   deviation over the seeds. The runs drive the real strategies through
   ask/tell with real training, in this process and without the engine's export and board
   measurements (they do not change what is compared; ``hostside search --strategy spea2``
   is the same algorithm with all of it). A duplicate proposal is dropped and asked again, as
   the engine does.
2. Pruning: one dense model (the template with 12 channels per FEL) and one small plain CNN,
   trained 10 epochs, pruned by ``hostside prune``'s code at each maximum share: params, test
   accuracy, NID = accuracy / params, and latency on the local board (median of 3
   measurements of 200 runs each) before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRATEGIES = ("spea2", "nsga2", "random")
DENSE_GENES = {"left": "swish", "right": "relu", "condense_layers": 2, "fels": 16, "kernel": 3, "optimizer": "adam"}


def _param_reference(space) -> float:
    """The largest network of the space (fewer condense layers pool less, so the classifier of a
    shallow template can outweigh a deep one: every layer count is tried)."""
    return float(max(space.decode({**DENSE_GENES, "condense_layers": layers, "fels": max(space.choices["fels"]),
                                   "kernel": kernel}).cost.params
                     for layers in space.choices["condense_layers"] for kernel in space.choices["kernel"]))


def run_search(strategy_name: str, seed: int, dataset_source: str, population: int, iterations: int,
               epochs: int) -> Dict[str, Any]:
    import numpy as np
    import torch

    from hostside.metrics import hypervolume
    from hostside.search.candidate import Candidate
    from hostside.search.engine import candidate_key
    from hostside.search.strategies.base import AskContext, StrategySettings, make_strategy
    from hostside.spaces import make_space
    from hostside.train.datasets import cached_dataset
    from hostside.train.loop import TrainConfig, train_model
    from hostside.train.splits import make_split

    torch.set_num_threads(1)
    dataset = cached_dataset(dataset_source)
    split = make_split(dataset, seed)
    space = make_space("dense", dataset.input_shape, dataset.num_classes)
    settings = StrategySettings(objectives=("accuracy", "params"), budgets={}, population=population, epochs=epochs,
                                budget=population * iterations, seed=seed)
    options = {"iterations": iterations} if strategy_name == "spea2" else {}
    strategy = make_strategy(strategy_name, options, settings)
    records: List[Candidate] = []
    seen = set()
    started = time.perf_counter()
    for generation in range(iterations):
        rng = np.random.default_rng([seed, generation])
        born: List[Candidate] = []
        for _ in range(20):
            ctx = AskContext(space, tuple(records + born), rng, generation, len(records) + len(born))
            proposals = strategy.ask(population - len(born), ctx)
            if not proposals:
                break
            for proposal in proposals:
                spec = space.decode(proposal.genotype)
                key = candidate_key(spec.structure_hash(), space.training_overrides(proposal.genotype), {})
                if key in seen:
                    continue
                seen.add(key)
                config = TrainConfig.from_dict({"epochs": epochs, "seed": seed, "evaluate_test": False,
                                                **space.training_overrides(proposal.genotype)})
                result = train_model(spec, dataset, split, config)
                accuracy = result.val_accuracy if np.isfinite(result.val_accuracy) else 0.0
                metrics = {"val_accuracy": accuracy, "params": spec.cost.params}
                born.append(Candidate(
                    id=len(records) + len(born), genotype=dict(proposal.genotype), parents=proposal.parents,
                    operator=proposal.operator, generation=generation, status="measured",
                    arch_hash=spec.structure_hash(), objectives=(1 - accuracy, float(spec.cost.params)), violation=0.0,
                    metrics=metrics, attrs=dict(proposal.attrs)))
            if len(born) >= population:
                break
        if not born:
            break
        records += born
        updates = strategy.tell(born, AskContext(space, tuple(records), rng, generation, len(records)))
        records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}}) for c in records]
    reference = _param_reference(space)
    F = np.array([[1 - c.metrics["val_accuracy"], c.metrics["params"] / reference] for c in records])
    best = max(records, key=lambda c: c.metrics["val_accuracy"])
    return {"strategy": strategy_name, "seed": seed, "hv": hypervolume(F, (1.0, 1.0)), "trainings": len(records),
            "best_accuracy": best.metrics["val_accuracy"], "best_params": best.metrics["params"],
            "seconds": time.perf_counter() - started}


def _latency_ms(board, path: Path) -> float:
    values = [board.measure(path, runs=200)["latency_ms"]["median"] for _ in range(3)]
    return float(statistics.median(values))


def run_pruning(dataset_source: str, shares: List[float], iterations: int, fine_tune_epochs: int, out: Path) -> List[Dict[str, Any]]:
    import torch

    from hostside.arch.spec import ArchSpec
    from hostside.boards.board import open_board
    from hostside.compress.commands import prune_network
    from hostside.compress.prune import PruneSettings
    from hostside.spaces import make_space
    from hostside.train.datasets import cached_dataset
    from hostside.train.worker import train_and_export

    torch.set_num_threads(1)
    dataset = cached_dataset(dataset_source)
    dense = make_space("dense", dataset.input_shape, dataset.num_classes, growth=48).decode(DENSE_GENES)
    small = ArchSpec.from_dict({"input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes, "nodes": [
        {"id": "conv1", "op": "conv2d", "inputs": ["input"], "out_channels": 16, "kernel": 3, "padding": 1, "bias": False},
        {"id": "bn1", "op": "batchnorm", "inputs": ["conv1"]}, {"id": "relu1", "op": "relu", "inputs": ["bn1"]},
        {"id": "pool1", "op": "maxpool", "inputs": ["relu1"], "kernel": 2},
        {"id": "conv2", "op": "conv2d", "inputs": ["pool1"], "out_channels": 32, "kernel": 3, "padding": 1, "bias": False},
        {"id": "bn2", "op": "batchnorm", "inputs": ["conv2"]}, {"id": "relu2", "op": "relu", "inputs": ["bn2"]},
        {"id": "flatten", "op": "flatten", "inputs": ["relu2"]},
        {"id": "classifier", "op": "linear", "inputs": ["flatten"], "out_features": dataset.num_classes}]})
    board = open_board("local")
    rows = []
    for name, spec in (("dense", dense), ("small", small)):
        trained = out / name
        metrics = train_and_export(spec.to_dict(), dataset_source, None, {"epochs": 10, "seed": 0}, trained)
        spec.save(trained / "spec.json")
        before_ms = _latency_ms(board, trained / "model.onnx")
        for share in shares:
            target = out / f"{name}_pruned_{int(round(100 * share))}"
            settings = PruneSettings(0.9, iterations, share, fine_tune_epochs, 0)
            result = prune_network(trained / "spec.json", trained / "weights.npz", dataset_source,
                                   trained / "split.json", settings, target)
            last = result["iterations"][-1]
            after_ms = _latency_ms(board, target / "pruned.onnx")
            row = {"model": name, "max_share": share, "params_before": spec.cost.params,
                   "accuracy_before": metrics["accuracy"], "nid_before": metrics["accuracy"] / spec.cost.params,
                   "latency_ms_before": before_ms, "params_after": last["params"], "pruned_share": last["pruned_share"],
                   "accuracy_after": last["accuracy"], "nid_after": last["nid"], "latency_ms_after": after_ms}
            rows.append(row)
            print(f"  {name} max {100 * share:.0f} %: {row['params_before']} -> {row['params_after']} params, "
                  f"accuracy {row['accuracy_before']:.4f} -> {row['accuracy_after']:.4f}, latency "
                  f"{before_ms:.4f} -> {after_ms:.4f} ms", file=sys.stderr, flush=True)
    return rows


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="digits (default) or an MNIST/CIFAR path hostside reads")
    parser.add_argument("--seeds", type=int, default=5)
    # The paper: N = 45, G = 8, 16 epochs; scaled so 15 searches fit in minutes on two busy cores.
    parser.add_argument("--population", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shares", default="0.3,0.65,0.75", help="maximum pruning shares")
    parser.add_argument("--prune-iterations", type=int, default=5, help="the paper: 10")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="the paper: 5")
    parser.add_argument("--workers", type=int, default=2, help="searches in parallel (one thread each)")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-pruning", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmark_neuropower"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    if not args.skip_search:
        jobs = [(s, seed, args.dataset, args.population, args.iterations, args.epochs)
                for seed in range(args.seeds) for s in STRATEGIES]
        results = []
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for r in pool.map(run_search, *zip(*jobs)):
                results.append(r)
                print(f"[{time.perf_counter() - started:5.0f} s] {r['strategy']:<6} seed {r['seed']}: HV {r['hv']:.4f}, "
                      f"{r['trainings']} trainings, best {100 * r['best_accuracy']:.1f} % at {r['best_params']} params",
                      file=sys.stderr, flush=True)
        print(f"Search on {args.dataset}, dense space: {args.population} x {args.iterations} trainings of "
              f"{args.epochs} epochs per run, {args.seeds} seeds (mean ± sd)")
        print("| strategy | hypervolume (1-val. acc, params/P_ref) | best validation accuracy | its params | trainings "
              "| s per run |")
        print("|---|---|---|---|---|---|")
        for name in STRATEGIES:
            mine = [r for r in results if r["strategy"] == name]

            def ms(key: str):
                values = [float(r[key]) for r in mine]
                return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            hv, acc, params, secs = ms("hv"), ms("best_accuracy"), ms("best_params"), ms("seconds")
            print(f"| {name} | {hv[0]:.4f} ± {hv[1]:.4f} | {100 * acc[0]:.1f} % ± {100 * acc[1]:.1f} | "
                  f"{params[0]:,.0f} | {mine[0]['trainings']} | {secs[0]:.0f} |")
    if not args.skip_pruning:
        shares = [float(s) for s in args.shares.split(",") if s.strip()]
        rows = run_pruning(args.dataset, shares, args.prune_iterations, args.fine_tune_epochs, args.out)
        print(f"Pruning on {args.dataset} (cluster factor 0.9, {args.prune_iterations} iterations, "
              f"{args.fine_tune_epochs} fine-tune epochs; latency: local board, median of 3 x 200 runs)")
        print("| model | max share | params before -> after (removed) | accuracy before -> after | NID before -> after "
              "| latency ms before -> after |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {100 * r['max_share']:.0f} % | {r['params_before']:,} -> {r['params_after']:,} "
                  f"({100 * r['pruned_share']:.1f} %) | {100 * r['accuracy_before']:.1f} % -> "
                  f"{100 * r['accuracy_after']:.1f} % | {r['nid_before']:.2e} -> {r['nid_after']:.2e} | "
                  f"{r['latency_ms_before']:.4f} -> {r['latency_ms_after']:.4f} |")
    print(f"{time.perf_counter() - started:.0f} s in all; load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
