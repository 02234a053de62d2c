"""NeuroPower: SPEA-II with a latency stop rule, then K-means++ pruning of its archive members.

    python benchmarks/neuropower.py [--dataset digits|PATH[?subset=N]] [--seed 0] [--population 12]
                                    [--iterations 8] [--epochs 2] [--size-divisor 4]
                                    [--stop "accuracy >= 0.80 and latency_ms <= 0.1"] [--final-epochs 5]
                                    [--shares 0.3,0.65,0.75] [--prune-iterations 5]
                                    [--fine-tune-epochs 2] [--workers 2] [--compare-seeds 0]
                                    [--out DIR] [--report docs/results/neuropower.md]

The paper's central experiment (Loni et al., Fig. 3 and 4, then its pruning table), in one
process so every step can be recorded:

1. Search: the real ``spea2`` strategy (Score = validation accuracy / params as the fitness of
   archive and tournament) over ``--space dense``, driven iteration by iteration through
   ask/tell; each candidate is trained (``--epochs``, ``--workers`` in parallel, one thread
   each) and exported to ONNX by hostside's worker, without evaluating the test split. After
   every iteration the archive members are measured on the ``local`` board (this machine;
   median of 3 x 200 runs, with no training running) and the ``--stop`` rule (hostside's stop
   rule syntax; ``accuracy`` there means validation accuracy) is judged on them: the search ends
   when a member meets it, or at ``--iterations``. Per iteration: best and median Score of the
   archive and the share of each left / right activation among its members (Fig. 3/4), with
   verdicts on the paper's reading of those figures.
2. Final models: the best-Score and the largest archive member are trained again for
   ``--final-epochs`` on the same split and evaluated on the test split (reported as "test
   accuracy (not used in any choice)").
3. Pruning: each final model pruned by ``hostside prune``'s code at every ``--shares`` maximum
   share: params, test accuracy, NID = test accuracy / params, local latency before and after;
   verdicts on whether NID rises with the share and whether the large network loses less
   accuracy than the small one.
4. ``--compare-seeds N`` (optional) adds the older comparison: ``spea2``, ``nsga2`` and
   ``random`` with the same training budget, N seeds, hypervolume of (1 - validation accuracy,
   params / P_ref) against (1, 1), P_ref = the largest network of the space.

``--report`` writes all of it as markdown with two PNGs beside it (Score and activation shares
per iteration; NID against the pruning share).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRATEGIES = ("spea2", "nsga2", "random")
DENSE_GENES = {"left": "swish", "right": "relu", "condense_layers": 2, "fels": 16, "kernel": 3, "optimizer": "adam"}
LATENCY_RUNS = 200
LATENCY_REPEATS = 3


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




def latency_ms(board: Any, path: Path) -> float:
    """Median of ``LATENCY_REPEATS`` medians of ``LATENCY_RUNS`` batch-1 runs: one median alone
    moves with whatever else the two cores are doing."""
    values = [board.measure(path, runs=LATENCY_RUNS)["latency_ms"]["median"] for _ in range(LATENCY_REPEATS)]
    return float(statistics.median(values))


def train_candidate(spec_dict: Dict[str, Any], dataset_source: str, split_dict: Dict[str, Any],
                    config: Dict[str, Any], out_dir: str) -> Dict[str, Any]:
    """One training in a worker process (one torch thread, so ``--workers`` trainings share the
    cores without oversubscribing them); hostside's worker exports the ONNX the board measures."""
    import torch

    from hostside.train.worker import train_and_export

    torch.set_num_threads(1)
    return train_and_export(spec_dict, dataset_source, split_dict, config, out_dir)


def activation_shares(members: Sequence[Any], gene: str, values: Sequence[str]) -> Dict[str, float]:
    """Share of archive members whose ``gene`` (``left`` or ``right``) is each value: the
    quantity of the paper's Fig. 3 and 4."""
    return {v: sum(1 for c in members if c.genotype[gene] == v) / len(members) for v in values}


def run_neuropower(dataset_source: str, seed: int, population: int, iterations: int, epochs: int,
                   size_divisor: int, stop: str, workers: int, out: Path) -> Dict[str, Any]:
    """SPEA-II iteration by iteration with the archive measured on the local board after each
    one, stopping on ``stop``; returns the per-iteration records, the final archive and how the
    search ended."""
    import numpy as np

    from hostside.boards.board import open_board
    from hostside.search.candidate import Candidate
    from hostside.search.engine import candidate_key
    from hostside.search.stop_rules import parse_rules
    from hostside.search.strategies.base import AskContext, StrategySettings, make_strategy
    from hostside.search.strategies.spea2 import score
    from hostside.spaces import make_space
    from hostside.train.datasets import cached_dataset
    from hostside.train.splits import make_split

    rules = parse_rules([f"target: {stop}"])
    dataset = cached_dataset(dataset_source)
    split = make_split(dataset, seed)
    split.save(out / "split.json")
    space = make_space("dense", dataset.input_shape, dataset.num_classes, size_divisor=size_divisor)
    activations = list(space.choices["left"])
    settings = StrategySettings(objectives=("val_accuracy", "params"), budgets={}, population=population,
                                epochs=epochs, budget=population * iterations, seed=seed)
    strategy = make_strategy("spea2", {"iterations": iterations}, settings)
    board = open_board("local")
    records: List[Candidate] = []
    seen = set()
    latencies: Dict[int, float] = {}
    per_iteration: List[Dict[str, Any]] = []
    stopped_by: Optional[Tuple[int, int]] = None
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for generation in range(iterations):
            rng = np.random.default_rng([seed, generation])
            chosen: List[Tuple[Any, Any]] = []
            for _ in range(20):  # a duplicate is dropped and asked again, as the engine does
                ctx = AskContext(space, tuple(records), rng, generation, len(records) + len(chosen))
                proposals = strategy.ask(population - len(chosen), ctx)
                if not proposals:
                    break
                for proposal in proposals:
                    spec = space.decode(proposal.genotype)
                    key = candidate_key(spec.structure_hash(), space.training_overrides(proposal.genotype), {})
                    if key not in seen:
                        seen.add(key)
                        chosen.append((proposal, spec))
                if len(chosen) >= population:
                    break
            if not chosen:
                break
            jobs = []
            for k, (proposal, spec) in enumerate(chosen):
                config = {"epochs": epochs, "seed": seed, "evaluate_test": False,
                          **space.training_overrides(proposal.genotype)}
                jobs.append(pool.submit(train_candidate, spec.to_dict(), dataset_source, split.to_dict(), config,
                                        str(out / "candidates" / f"{len(records) + k:05d}")))
            born: List[Candidate] = []
            for k, ((proposal, spec), job) in enumerate(zip(chosen, jobs)):
                metrics = job.result()
                accuracy = metrics["val_accuracy"] if metrics["val_accuracy"] is not None else 0.0
                born.append(Candidate(
                    id=len(records) + k, genotype=dict(proposal.genotype), parents=proposal.parents,
                    operator=proposal.operator, generation=generation, status="measured",
                    arch_hash=spec.structure_hash(), objectives=(1 - accuracy, float(spec.cost.params)),
                    violation=0.0, metrics={"val_accuracy": accuracy, "params": spec.cost.params,
                                            "onnx": metrics["onnx"], "weights": metrics["weights"]},
                    attrs=dict(proposal.attrs)))
            records += born
            updates = strategy.tell(born, AskContext(space, tuple(records), rng, generation, len(records)))
            records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}}) for c in records]
            archive = list(strategy.stop_candidates(records))
            for member in archive:  # the pool is idle here: nothing trains while the board measures
                if member.id not in latencies:
                    latencies[member.id] = latency_ms(board, Path(member.metrics["onnx"]))
            met = [m for m in archive if rules[0].met_by({**m.metrics, "latency_ms": latencies[m.id]})]
            scores = [score(m.metrics) for m in archive]
            row = {"iteration": generation, "trainings": len(records), "best_score": max(scores),
                   "median_score": statistics.median(scores),
                   "best_val_accuracy": max(m.metrics["val_accuracy"] for m in archive),
                   "fastest_ms": min(latencies[m.id] for m in archive),
                   "left": activation_shares(archive, "left", activations),
                   "right": activation_shares(archive, "right", activations),
                   "seconds": time.perf_counter() - started}
            per_iteration.append(row)
            print(f"[{row['seconds']:5.0f} s] iteration {generation}: {len(records)} trainings, archive best Score "
                  f"{row['best_score']:.3e}, median {row['median_score']:.3e}, best val. accuracy "
                  f"{100 * row['best_val_accuracy']:.1f} %, fastest member {row['fastest_ms']:.4f} ms",
                  file=sys.stderr, flush=True)
            if met:
                stopped_by = (generation, met[0].id)
                print(f"  stop rule '{rules[0].text}' met by candidate {met[0].id} after iteration {generation}",
                      file=sys.stderr, flush=True)
                break
    archive = list(strategy.stop_candidates(records))
    members = [{"id": m.id, "genotype": m.genotype, "params": m.metrics["params"],
                "val_accuracy": m.metrics["val_accuracy"], "score": score(m.metrics), "latency_ms": latencies[m.id],
                "spec": space.decode(m.genotype).to_dict(), "overrides": space.training_overrides(m.genotype)}
               for m in archive]
    return {"iterations": per_iteration, "archive": members, "activations": activations, "stop": rules[0].text,
            "stopped_by": stopped_by, "trainings": len(records), "split": {"train": len(split.train),
            "val": len(split.val), "test": len(split.test)}, "dataset_name": dataset.name,
            "test_part": "official test images" if dataset.official_test else "held out"}


def pick_final(archive: List[Dict[str, Any]]) -> List[Tuple[str, Dict[str, Any]]]:
    """The best-Score member and the largest other member (the paper prunes a small and a large
    network to see which loses less)."""
    best = max(archive, key=lambda m: m["score"])
    others = [m for m in archive if m["id"] != best["id"]]
    largest = max(others or [best], key=lambda m: (m["params"], -m["id"]))
    return [("best-Score", best), ("largest", largest)]


def train_final(picked: List[Tuple[str, Dict[str, Any]]], dataset_source: str, seed: int, final_epochs: int,
                workers: int, out: Path) -> Dict[str, Dict[str, Any]]:
    """Re-train the chosen members on the search's split and evaluate them on the test split,
    once, after every choice has been made."""
    split_dict = json.loads((out / "split.json").read_text())
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {name: pool.submit(train_candidate, m["spec"], dataset_source, split_dict,
                                  {"epochs": final_epochs, "seed": seed, "evaluate_test": True, **m["overrides"]},
                                  str(out / "final" / name))
                for name, m in picked}
        return {name: job.result() for name, job in jobs.items()}


def prune_one(name: str, share: float, dataset_source: str, iterations: int, fine_tune_epochs: int,
              out: str) -> Dict[str, Any]:
    """One ``hostside prune`` run in a worker (one torch thread)."""
    import torch

    from hostside.compress.commands import prune_network
    from hostside.compress.prune import PruneSettings

    torch.set_num_threads(1)
    trained = Path(out) / "final" / name
    target = Path(out) / "pruned" / f"{name}_{int(round(100 * share))}"
    result = prune_network(trained / "spec.json", trained / "weights.npz", dataset_source, trained / "split.json",
                           PruneSettings(0.9, iterations, share, fine_tune_epochs, 0), target)
    return {"last": result["iterations"][-1], "onnx": str(target / "pruned.onnx")}


def run_pruning(picked: List[Tuple[str, Dict[str, Any]]], final: Dict[str, Dict[str, Any]], dataset_source: str,
                shares: List[float], iterations: int, fine_tune_epochs: int, workers: int,
                out: Path) -> List[Dict[str, Any]]:
    """Prune every final model at every maximum share (trainings in parallel, latencies after
    them, on idle cores)."""
    from hostside.arch.spec import ArchSpec
    from hostside.boards.board import open_board

    for name, member in picked:
        ArchSpec.from_dict(member["spec"]).save(out / "final" / name / "spec.json")
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = [(name, share, pool.submit(prune_one, name, share, dataset_source, iterations, fine_tune_epochs,
                                          str(out)))
                for name, _ in picked for share in shares]
        results = [(name, share, job.result()) for name, share, job in jobs]
    board = open_board("local")
    before = {name: latency_ms(board, Path(final[name]["onnx"])) for name, _ in picked}
    params = {name: member["params"] for name, member in picked}
    rows = []
    for name, share, result in results:
        last = final[name]["test_accuracy"]
        row = {"model": name, "max_share": share, "params_before": params[name], "accuracy_before": last,
               "nid_before": last / params[name], "latency_ms_before": before[name],
               "params_after": result["last"]["params"], "pruned_share": result["last"]["pruned_share"],
               "accuracy_after": result["last"]["accuracy"], "nid_after": result["last"]["nid"],
               "latency_ms_after": latency_ms(board, Path(result["onnx"]))}
        rows.append(row)
        print(f"  {name} max {100 * share:.0f} %: {row['params_before']} -> {row['params_after']} params, test "
              f"accuracy {last:.4f} -> {row['accuracy_after']:.4f}, latency {row['latency_ms_before']:.4f} -> "
              f"{row['latency_ms_after']:.4f} ms", file=sys.stderr, flush=True)
    return rows


def search_verdicts(search: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    """(claim, verdict, the numbers) for the paper's Fig. 3 (Score improves over the iterations)
    and Fig. 4 (on CIFAR-10: swish dominates the left activation at every iteration; swish
    dominates the right one at first and relu replaces it later), from the per-iteration rows."""
    its = search["iterations"]
    first, last = its[0], its[-1]
    improves = last["median_score"] > first["median_score"] and last["best_score"] > first["best_score"]

    def top(row: Dict[str, Any], gene: str) -> List[str]:
        most = max(row[gene].values())
        return [v for v, share in row[gene].items() if share == most]

    def tops(gene: str) -> str:
        return "; ".join(f"{r['iteration']}: {'/'.join(top(r, gene))} {100 * max(r[gene].values()):.0f} %" for r in its)
    left_swish = all(top(r, "left") == ["swish"] for r in its)  # a tie for first place is no lead
    right_swap = top(first, "right") == ["swish"] and top(last, "right") == ["relu"]
    return [
        ("Score improves over the iterations (Fig. 3)", "holds" if improves else "does not hold at this scale",
         f"archive best Score {first['best_score']:.3e} -> {last['best_score']:.3e}, median "
         f"{first['median_score']:.3e} -> {last['median_score']:.3e} (iteration {first['iteration']} -> "
         f"{last['iteration']}; the best can only rise, the archive keeps it)"),
        ("swish is the most common left activation of the archive at every iteration (Fig. 4a, CIFAR-10 in the paper)",
         "holds" if left_swish else "does not hold at this scale", f"most common left activation per iteration: "
         f"{tops('left')}"),
        ("swish leads the right activation at first and relu at the end (Fig. 4b, CIFAR-10 in the paper)",
         "holds" if right_swap else "does not hold at this scale", f"most common right activation per iteration: "
         f"{tops('right')}"),
    ]


def verdicts(rows: List[Dict[str, Any]], shares: List[float]) -> List[Tuple[str, str, str]]:
    """(claim, verdict, the numbers) for the paper's two pruning claims, from the rows alone."""
    out = []
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["max_share"])
        nids = [r["nid_after"] for r in mine]
        rises = all(b >= a for a, b in zip(nids, nids[1:])) and nids[-1] > nids[0]
        numbers = ", ".join(f"{100 * r['max_share']:.0f} % (removed {100 * r['pruned_share']:.1f} %): "
                            f"{r['nid_after']:.3e}" for r in mine)
        out.append((f"NID rises with the pruning share ({model} network)",
                    "holds" if rises else "does not hold at this scale",
                    f"NID before {mine[0]['nid_before']:.3e}; after, by maximum share: {numbers}"))
    small, large = models[0], models[-1]
    drops = {m: {r["max_share"]: r["accuracy_before"] - r["accuracy_after"] for r in rows if r["model"] == m}
             for m in (small, large)}
    less = all(drops[large][s] <= drops[small][s] for s in shares)
    numbers = "; ".join(f"{100 * s:.0f} %: {large} {100 * drops[large][s]:+.1f} pt vs {small} "
                        f"{100 * drops[small][s]:+.1f} pt" for s in shares)
    sizes = {r["model"]: r["params_before"] for r in rows}
    out.append((f"the large network ({large}, {sizes[large]:,} params) loses less test accuracy than the small one "
                f"({small}, {sizes[small]:,} params) at every share",
                "holds" if less else "does not hold at this scale",
                f"accuracy lost (before - after, percentage points): {numbers}"))
    return out


def plot(search: Dict[str, Any], rows: List[Dict[str, Any]], report: Path) -> List[Path]:
    """Fig. 3/4 analogue (Score and activation shares per iteration) and NID against share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in search["iterations"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(its, [r["best_score"] for r in search["iterations"]], "o-", label="best")
    axes[0].plot(its, [r["median_score"] for r in search["iterations"]], "s--", label="median")
    axes[0].set(xlabel="iteration", ylabel="Score = val. accuracy / params", title="archive Score")
    axes[0].legend()
    for ax in axes:
        ax.set_xticks(its)
    for ax, gene in zip(axes[1:], ("left", "right")):
        bottom = [0.0] * len(its)
        for value in search["activations"]:
            share = [r[gene][value] for r in search["iterations"]]
            ax.bar(its, share, bottom=bottom, label=value)
            bottom = [b + s for b, s in zip(bottom, share)]
        ax.set(xlabel="iteration", ylabel="share of archive members", title=f"{gene} activation (x {'<' if gene == 'left' else '>='} 0)",
               ylim=(0, 1))
    axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    first = report.with_name(report.stem + "_search.png")
    fig.savefig(first, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["max_share"])
        ax.plot([0] + [100 * r["pruned_share"] for r in mine], [mine[0]["nid_before"]] + [r["nid_after"] for r in mine],
                "o-", label=f"{model} ({mine[0]['params_before']:,} params)")
        for r in mine:
            ax.annotate(f"max {100 * r['max_share']:.0f} %", (100 * r["pruned_share"], r["nid_after"]), fontsize=7)
    ax.set(xlabel="parameters removed (%)", ylabel="NID = test accuracy / params", title="NID against pruning share")
    ax.legend()
    fig.tight_layout()
    second = report.with_name(report.stem + "_nid.png")
    fig.savefig(second, dpi=110)
    plt.close(fig)
    return [first, second]


def search_tables(search: Dict[str, Any]) -> List[str]:
    """The per-iteration table (Score and fastest member) and the activation-share tables."""
    lines = ["| iteration | trainings | best Score | median Score | best val. accuracy | fastest member (ms) |",
             "|---|---|---|---|---|---|"]
    for r in search["iterations"]:
        lines.append(f"| {r['iteration']} | {r['trainings']} | {r['best_score']:.3e} | {r['median_score']:.3e} | "
                     f"{100 * r['best_val_accuracy']:.1f} % | {r['fastest_ms']:.4f} |")
    for gene in ("left", "right"):
        lines += ["", f"Share of archive members by **{gene}** activation (%):", "",
                  "| iteration | " + " | ".join(search["activations"]) + " |",
                  "|---|" + "---|" * len(search["activations"])]
        for r in search["iterations"]:
            lines.append(f"| {r['iteration']} | " + " | ".join(f"{100 * r[gene][v]:.0f}" for v in search["activations"])
                         + " |")
    return lines


def archive_table(search: Dict[str, Any]) -> List[str]:
    """The final archive, best Score first."""
    lines = ["| id | left / right | condense layers | FELs | kernel | optimizer | params | val. accuracy | Score "
             "| latency (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(search["archive"], key=lambda m: -m["score"]):
        g = m["genotype"]
        lines.append(f"| {m['id']} | {g['left']} / {g['right']} | {g['condense_layers']} | {g['fels']} | {g['kernel']} "
                     f"| {g['optimizer']} | {m['params']:,} | {100 * m['val_accuracy']:.1f} % | {m['score']:.3e} | "
                     f"{m['latency_ms']:.4f} |")
    return lines


def final_table(picked: List[Tuple[str, Dict[str, Any]]], final: Dict[str, Dict[str, Any]], epochs: int) -> List[str]:
    """The two re-trained members with their test accuracy, used in no choice."""
    lines = [f"| model | candidate | params | val. accuracy (search, {epochs} epochs) | val. accuracy (re-trained) "
             "| test accuracy (not used in any choice) |", "|---|---|---|---|---|---|"]
    for name, m in picked:
        lines.append(f"| {name} | {m['id']} | {m['params']:,} | {100 * m['val_accuracy']:.1f} % | "
                     f"{100 * final[name]['val_accuracy']:.1f} % | {100 * final[name]['test_accuracy']:.1f} % |")
    return lines


def pruning_table(rows: List[Dict[str, Any]]) -> List[str]:
    """The pruning rows: params, test accuracy, NID and latency before and after."""
    lines = ["| model | max share | params before -> after (removed) | test accuracy before -> after (not used in "
             "any choice) | NID before -> after | latency ms before -> after |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['max_share']:.0f} % | {r['params_before']:,} -> {r['params_after']:,} "
                     f"({100 * r['pruned_share']:.1f} %) | {100 * r['accuracy_before']:.1f} % -> "
                     f"{100 * r['accuracy_after']:.1f} % | {r['nid_before']:.2e} -> {r['nid_after']:.2e} | "
                     f"{r['latency_ms_before']:.4f} -> {r['latency_ms_after']:.4f} |")
    return lines


def comparison_table(results: List[Dict[str, Any]]) -> List[str]:
    """Mean and standard deviation per strategy over the comparison seeds."""
    lines = ["| strategy | hypervolume (1-val. acc, params/P_ref) | best validation accuracy | its params | trainings "
             "| s per run |", "|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        mine = [r for r in results if r["strategy"] == name]

        def ms(key: str) -> Tuple[float, float]:
            values = [float(r[key]) for r in mine]
            return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        hv, acc, params, secs = ms("hv"), ms("best_accuracy"), ms("best_params"), ms("seconds")
        lines.append(f"| {name} | {hv[0]:.4f} ± {hv[1]:.4f} | {100 * acc[0]:.1f} % ± {100 * acc[1]:.1f} | "
                     f"{params[0]:,.0f} | {mine[0]['trainings']} | {secs[0]:.0f} |")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="digits (default) or a path hostside reads, with "
                        "?subset=N for a seeded N-image subset")
    parser.add_argument("--seed", type=int, default=0)
    # The paper: N = 45, G = 8, 16 epochs; scaled so the search fits minutes on two cores.
    parser.add_argument("--population", type=int, default=12, help="N, archive and offspring per iteration")
    parser.add_argument("--iterations", type=int, default=8, help="G, the iteration cap (the paper: 8)")
    parser.add_argument("--epochs", type=int, default=2, help="per candidate (the paper: 16)")
    parser.add_argument("--size-divisor", type=int, default=4, help="the dense space's: FEL counts and growth / 4 "
                        "(4/7/10/13 FELs of 3 channels) so a 28x28 training takes seconds on one core")
    parser.add_argument("--stop", default="accuracy >= 0.80 and latency_ms <= 0.1", help="stop rule judged on the archive after every "
                        "iteration (hostside's [stop] syntax; accuracy = validation accuracy)")
    parser.add_argument("--final-epochs", type=int, default=5, help="re-training of the two pruned members")
    parser.add_argument("--shares", default="0.3,0.65,0.75", help="maximum pruning shares")
    parser.add_argument("--prune-iterations", type=int, default=5, help="the paper: 10")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="the paper: 5")
    parser.add_argument("--workers", type=int, default=2, help="trainings in parallel (one thread each)")
    parser.add_argument("--compare-seeds", type=int, default=0, help="also run the spea2/nsga2/random comparison "
                        "with this many seeds (0: not run)")
    parser.add_argument("--out", type=Path, default=Path("benchmark_neuropower"))
    parser.add_argument("--report", type=Path, default=None, help="write the markdown report (and PNGs beside it)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shares = [float(s) for s in args.shares.split(",") if s.strip()]
    load_before = os.getloadavg()
    started = time.perf_counter()
    search = run_neuropower(args.dataset, args.seed, args.population, args.iterations, args.epochs,
                            args.size_divisor, args.stop, args.workers, args.out)
    stopped = (f"stop rule `{search['stop']}` met by candidate {search['stopped_by'][1]} after iteration "
               f"{search['stopped_by'][0]}" if search["stopped_by"] else
               f"iteration cap ({args.iterations} iterations) reached; the stop rule `{search['stop']}` was never met")
    search_seconds = time.perf_counter() - started
    print(f"SPEA-II on {search['dataset_name']} ({search['split']['train']:,} train / {search['split']['val']:,} val / "
          f"{search['split']['test']:,} test), dense space / {args.size_divisor}: N = {args.population}, "
          f"{args.epochs} epochs per candidate; {search['trainings']} trainings in {search_seconds:.0f} s; {stopped}")
    tables = search_tables(search)
    print("\n".join(tables))
    print("Final archive:")
    print("\n".join(archive_table(search)))
    picked = pick_final(search["archive"])
    names = ", ".join(f"{name} (candidate {member['id']})" for name, member in picked)
    print(f"[{time.perf_counter() - started:5.0f} s] re-training {names} for {args.final_epochs} epochs",
          file=sys.stderr, flush=True)
    final = train_final(picked, args.dataset, args.seed, args.final_epochs, args.workers, args.out)
    print("\n".join(final_table(picked, final, args.epochs)))
    print(f"[{time.perf_counter() - started:5.0f} s] pruning", file=sys.stderr, flush=True)
    rows = run_pruning(picked, final, args.dataset, shares, args.prune_iterations, args.fine_tune_epochs,
                       args.workers, args.out)
    print(f"Pruning (cluster factor 0.9, {args.prune_iterations} iterations, {args.fine_tune_epochs} fine-tune epochs; "
          f"latency: local board, median of {LATENCY_REPEATS} x {LATENCY_RUNS} runs)")
    print("\n".join(pruning_table(rows)))
    claims = search_verdicts(search) + verdicts(rows, shares)
    for claim, verdict, numbers in claims:
        print(f"- {claim}: **{verdict}** ({numbers})")
    comparison: List[Dict[str, Any]] = []
    if args.compare_seeds:
        jobs = [(s, seed, args.dataset, args.population, args.iterations, args.epochs)
                for seed in range(args.compare_seeds) for s in STRATEGIES]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            comparison = list(pool.map(run_search, *zip(*jobs)))
        print("\n".join(comparison_table(comparison)))
    total = time.perf_counter() - started
    load_after = os.getloadavg()
    # Everything the tables show, so a figure can be redrawn or checked without running again.
    (args.out / "results.json").write_text(json.dumps({"search": search, "final": final, "pruning": rows,
                                                       "comparison": comparison, "seconds": total}, indent=1,
                                                      default=str) + "\n")
    print(f"{total:.0f} s in all; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"({os.cpu_count()} cores)")
    if args.report:
        pngs = plot(search, rows, args.report)
        command = "python3 benchmarks/neuropower.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        lines = [
            "# NeuroPower: SPEA-II with a latency stop rule, then pruning", "",
            "Written by `benchmarks/neuropower.py`; every number below comes from this run.", "",
            "```sh", command, "```", "",
            f"Wall time {total:.0f} s ({total / 60:.1f} min) on {os.cpu_count()} cores, load average "
            f"{load_before[0]:.1f} before and {load_after[0]:.1f} after.", "",
            f"**Data.** `{args.dataset}` ({search['dataset_name']}): {search['split']['train']:,} training, "
            f"{search['split']['val']:,} validation and {search['split']['test']:,} test images (test part: "
            f"{search['test_part']}), split with seed {args.seed}. Every choice (archive, tournament, stop rule, "
            "which members are pruned) reads validation accuracy; test accuracy is computed only for the "
            "re-trained final models and their pruned versions and is used in no choice.", "",
            f"**Search.** hostside's `spea2` (fitness Score = validation accuracy / params) over `--space dense` "
            f"with size divisor {args.size_divisor}, N = {args.population} (archive and offspring per iteration), "
            f"at most {args.iterations} iterations, {args.epochs} epochs per candidate (paper: N = 45, G = 8, 16 "
            f"epochs). After every iteration each new archive member's ONNX was measured on the `local` board "
            f"(this machine, batch 1, median of {LATENCY_REPEATS} x {LATENCY_RUNS} runs, with no training "
            f"running). Stop rule: `{search['stop']}`. Outcome: {stopped}; {search['trainings']} trainings in "
            f"{search_seconds:.0f} s.", "",
            f"![Score and activation shares per iteration]({pngs[0].name})", "",
            *tables, "", "Final archive (best Score first):", "", *archive_table(search), "",
            f"**Final models.** The best-Score member and the largest other member, re-trained for "
            f"{args.final_epochs} epochs on the same split:", "", *final_table(picked, final, args.epochs), "",
            f"**Pruning.** `hostside prune`'s K-means++ filter pruning (cluster factor 0.9, "
            f"{args.prune_iterations} iterations, {args.fine_tune_epochs} fine-tune epochs after each; paper: 10 "
            f"and 5) at each maximum share; NID = test accuracy / params.", "",
            f"![NID against pruning share]({pngs[1].name})", "", *pruning_table(rows), "",
            "Latency repeatability (the same architecture, measured in the search and again before pruning): "
            + "; ".join(f"{name} {member['latency_ms']:.4f} ms vs "
                        f"{next(r['latency_ms_before'] for r in rows if r['model'] == name):.4f} ms"
                        for name, member in picked) + ".", "",
            "## Verdicts", "", *[f"- {claim}: **{verdict}**. {numbers}." for claim, verdict, numbers in claims], "",
        ]
        if comparison:
            lines += ["## spea2 / nsga2 / random", "", f"{args.compare_seeds} seeds, the same training budget:", "",
                      *comparison_table(comparison), ""]
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text("\n".join(lines))
        print(f"wrote {args.report}, {', '.join(str(p) for p in pngs)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
