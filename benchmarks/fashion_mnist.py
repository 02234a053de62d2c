"""The search's Fashion-MNIST front against the dataset README's hand-designed CNNs.

Run: ``python benchmarks/fashion_mnist.py --run RUN_DIR [--epochs N] [--out DIR]``
(RUN_DIR: a finished ``hostside search --config configs/fashion.toml`` run). Builds the
README's CNNs whose structure it states as ArchSpecs (the 2-conv ~100K, 2-conv ~113K and
3-conv+BN+pooling families; the README gives layer counts and parameter sizes, so widths are
chosen to match them), trains them with the project's trainer on the run's own split (the
official test set) for the run's ``final_epochs`` on the run's ``final_data`` (what the front was
re-trained on and for how long), measures
them and the front's ONNX files on the same board in the same session (medians of
``--repeats`` measurements), prints a table, writes ``fashion_mnist.json`` and two PNGs:
test accuracy vs params and vs measured latency, with the README's published figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from hostside.arch.blocks import SpecBuilder
from hostside.arch.spec import ArchSpec

#: As printed in the dataset's README (Benchmark table): name, test accuracy, parameters
#: where the row gives them (None: not stated).
PUBLISHED = [
    ("2 Conv <100K parameters", 0.925, 100_000),
    ("2 Conv ~113K parameters", 0.922, 113_000),
    ("2 Conv+3 FC ~500K parameters", 0.934, 500_000),
    ("2 Conv+3 FC ~1.8M parameters", 0.932, 1_800_000),
    ("DenseNet-BC 768K params", 0.954, 768_000),
    ("WRN40-4 8.9M params", 0.967, 8_900_000),
    ("3 Conv+BN+pooling", 0.921, None),
    ("3 Conv+pooling+BN", 0.903, None),
    ("2 Conv+pooling", 0.916, None),
]


def two_conv_100k() -> ArchSpec:
    """"2 Conv <100K parameters": two 5x5 convs (32, 64) with max pooling, linear classifier."""
    b = SpecBuilder((1, 28, 28))
    x = b.pool(b.conv_bn_act("input", 32, 5, bn=False))
    x = b.pool(b.conv_bn_act(x, 64, 5, bn=False))
    b.head(x, 10, global_pool=False)
    return b.build(name="2conv-100k")


def two_conv_113k() -> ArchSpec:
    """"2 Conv ~113K parameters": two 3x3 convs (32, 64) with pooling, a 32-unit hidden layer."""
    b = SpecBuilder((1, 28, 28))
    x = b.pool(b.conv_bn_act("input", 32, 3, bn=False))
    x = b.pool(b.conv_bn_act(x, 64, 3, bn=False))
    b.head(x, 10, global_pool=False, hidden=(32,))
    return b.build(name="2conv-113k")


def three_conv_bn_pool() -> ArchSpec:
    """"3 Conv+BN+pooling": three 3x3 conv+BN+ReLU (32, 64, 128), each followed by max pooling."""
    b = SpecBuilder((1, 28, 28))
    x = "input"
    for width in (32, 64, 128):
        x = b.pool(b.conv_bn_act(x, width, 3))
    b.head(x, 10, global_pool=False)
    return b.build(name="3conv-bn-pool")


REFERENCES = {"2conv-100k": two_conv_100k, "2conv-113k": two_conv_113k, "3conv-bn-pool": three_conv_bn_pool}


def measure_ms(board: Any, onnx: Path, repeats: int) -> float:
    """Median over ``repeats`` measurements of the board's median batch-1 latency."""
    values = []
    for _ in range(repeats):
        result = board.measure(onnx, threads=1)
        if result.get("error"):
            raise SystemExit(f"{onnx}: measurement failed: {result['error']}")
        values.append(float(result["latency_ms"]["median"] if isinstance(result["latency_ms"], dict)
                            else result["latency_ms"]))
    return statistics.median(values)


def _train_one(name: str, dataset: str, split: Dict[str, Any], train_config: Dict[str, Any], out: Path) -> Dict:
    """Train reference ``name`` (in a worker process), or reuse an earlier call's result on this run."""
    from hostside.train.worker import train_and_export

    started = time.perf_counter()
    done = out / name / "metrics.json"
    previous = json.loads(done.read_text()) if done.exists() else {}
    trained_on = "train+val" if split.get("val_in_train") else "train"
    if (previous.get("epochs") == train_config["epochs"] and previous.get("dataset") == dataset
            and previous.get("trained_on", "train") == trained_on):
        return {**previous, "train_wall_s": previous.get("train_wall_s", 0.0)}
    metrics = train_and_export(REFERENCES[name]().to_dict(), dataset, split, train_config, out / name)
    metrics["train_wall_s"] = time.perf_counter() - started
    done.write_text(json.dumps({**metrics, "epochs": train_config["epochs"], "dataset": dataset,
                                "trained_on": trained_on}) + "\n")
    return metrics


def train_references(names: List[str], run: Path, config: Dict[str, Any], epochs: int, out: Path,
                     jobs: int) -> List[Dict]:
    """Train the references ``jobs`` at a time (one thread each, as the search's workers train)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from hostside.train.splits import Split

    split = Split.load(run / "split.json").for_training_on(config.get("final_data", "train")).to_dict()
    train_config = {**config.get("train", {}), "epochs": epochs, "seed": config.get("seed", 0), "threads": 1}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_one, name, config["dataset"], split, train_config, out) for name in names}
        rows = []
        for name, future in futures.items():
            metrics = future.result()
            print(f"  {name}: test accuracy {metrics['accuracy']:.4f}, {metrics['params']} params, "
                  f"{metrics['train_wall_s']:.0f} s training", flush=True)
            rows.append({"name": name, "kind": "reference", "accuracy": metrics["accuracy"],
                         "params": metrics["params"], "macs": metrics.get("macs"),
                         "onnx": str(out / name / "model.onnx"), "epochs": epochs})
    return rows


def front_rows(run: Path) -> List[Dict]:
    pareto = json.loads((run / "pareto.json").read_text())
    return [{"name": f"front {m['id']}", "kind": "front", "accuracy": m["accuracy"], "params": m["params"],
             "macs": m.get("macs"), "onnx": str(run / m["onnx"])} for m in pareto]


def target_met(rows: List[Dict]) -> List[str]:
    """Front models at >= 0.92 test accuracy, <= 25,000 params, faster than every reference
    of equal or lower accuracy."""
    references = [r for r in rows if r["kind"] == "reference"]
    hits = []
    for r in rows:
        if r["kind"] != "front" or r["accuracy"] < 0.92 or r["params"] > 25_000:
            continue
        if all(r["latency_ms"] < ref["latency_ms"] for ref in references if ref["accuracy"] <= r["accuracy"]):
            hits.append(r["name"])
    return hits


def plot(rows: List[Dict], out: Path) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, label, log in (("params", "parameters", True), ("latency_ms", "measured batch-1 latency (ms)", True)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for kind, style in (("reference", dict(marker="s", color="tab:orange")),
                            ("front", dict(marker="o", color="tab:blue"))):
            part = [r for r in rows if r["kind"] == kind]
            ax.scatter([r[key] for r in part], [r["accuracy"] for r in part], label=f"{kind} (trained here)", **style)
            for r in part:
                ax.annotate(r["name"], (r[key], r["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if key == "params":
            shown = [p for p in PUBLISHED if p[2] is not None]
            ax.scatter([p[2] for p in shown], [p[1] for p in shown], marker="x", color="grey",
                       label="published (README)")
            for name, acc, params in shown:
                ax.annotate(name, (params, acc), fontsize=6, color="grey", xytext=(3, -8), textcoords="offset points")
        else:
            for name, acc, _ in PUBLISHED:  # no published latencies: each accuracy as a labelled line
                ax.axhline(acc, color="grey", lw=0.5, ls=":")
                ax.annotate(f"{name} ({acc})", (0.01, acc), xycoords=("axes fraction", "data"), fontsize=6,
                            color="grey", xytext=(0, 1), textcoords="offset points")
        ax.set_xscale("log" if log else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (official test set)")
        ax.axhline(0.92, color="red", lw=0.6, ls="--")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"Fashion-MNIST: accuracy vs {label}")
        fig.tight_layout()
        path = out / f"fashion_accuracy_vs_{key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished search run directory")
    parser.add_argument("--epochs", type=int, help="reference training epochs (default: the run's final_epochs)")
    parser.add_argument("--references", default=",".join(REFERENCES), help="comma-separated subset")
    parser.add_argument("--board", default=None, help="default: the run's board")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="references trained at once (default 2, one core each)")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN/fashion_mnist")
    args = parser.parse_args()
    from hostside.boards import open_board

    if not (args.run / "config.json").exists() or not (args.run / "split.json").exists():
        sys.exit(f"{args.run}: not a search run directory (no config.json / split.json)")
    config = json.loads((args.run / "config.json").read_text())
    config = config.get("config", config)
    epochs = args.epochs if args.epochs is not None else config.get("final_epochs", 30)
    out = args.out or args.run / "fashion_mnist"
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.references.split(",") if n]
    unknown = set(names) - set(REFERENCES)
    if unknown:
        sys.exit(f"unknown reference(s) {sorted(unknown)}; known: {', '.join(REFERENCES)}")
    print(f"training {len(names)} reference(s) for {epochs} epochs on {config['dataset']} "
          f"({config.get('final_data', 'train')}, as the front)", flush=True)
    rows = train_references(names, args.run, config, epochs, out, max(1, args.jobs))
    if not (args.run / "pareto.json").exists():
        sys.exit(f"{args.run}: no pareto.json yet (search not finished); the references are trained and "
                 f"kept in {out}, run this again when the search is done")
    rows += front_rows(args.run)
    board_name = args.board or str(config.get("board", "local")).split(",")[0]
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    with open_board(board_name) as board:
        for r in rows:
            r["latency_ms"] = measure_ms(board, Path(r["onnx"]), args.repeats)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    print(f"\nmeasured on {board_name} (loadavg before {' '.join(load_before)}, after {' '.join(load_after)}), "
          f"median of {args.repeats}")
    print(f"{'model':16} {'kind':9} {'accuracy':>8} {'params':>9} {'latency_ms':>10}")
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        print(f"{r['name']:16} {r['kind']:9} {r['accuracy']:8.4f} {r['params']:9d} {r['latency_ms']:10.4f}")
    hits = target_met(rows)
    print(f"target (>= 0.92, <= 25,000 params, faster than every reference of equal or lower accuracy): "
          f"{'met by ' + ', '.join(hits) if hits else 'NOT met'}")
    paths = plot(rows, out)
    (out / "fashion_mnist.json").write_text(json.dumps(
        {"rows": rows, "published": PUBLISHED, "target_met_by": hits, "epochs": epochs,
         "loadavg": {"before": load_before, "after": load_after}}, indent=1) + "\n")
    print("wrote " + ", ".join(str(p) for p in paths) + f", {out / 'fashion_mnist.json'}")


if __name__ == "__main__":
    main()
