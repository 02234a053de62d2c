"""``hostside prune``: K-means++ filter pruning of a trained network with fine-tuning between
iterations; writes the pruned spec, weights and ONNX file, ``prune.json`` (params, test
accuracy and NID = accuracy / params after each iteration) and ``prune.png``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from hostside.errors import UserError

PRUNE_FILE = "prune.json"
PLOT_FILE = "prune.png"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "prune", help="K-means++ filter pruning of a trained network, fine-tuned between iterations",
        description="Per conv layer, K-means++ clusters the filters and keeps the one nearest each centre; following "
                    "layers lose the matching input channels; the network is fine-tuned after each iteration. "
                    "Writes DIR/pruned.onnx, DIR/pruned_spec.json, DIR/pruned_weights.npz, DIR/prune.json, DIR/prune.png.")
    p.add_argument("--spec", required=True, type=Path,
                   help="ArchSpec JSON (e.g. from `hostside arch import`) or a run's candidate folder RUN/candidates/NNNNN")
    p.add_argument("--weights", required=True, type=Path, help="trained weights .npz of that spec")
    p.add_argument("--dataset", default="digits", help="dataset the network was trained on (default digits)")
    p.add_argument("--split", type=Path, help="split.json (default: a new seeded one)")
    p.add_argument("--max-prune", type=float, default=0.30, help="largest share of parameters removed (default 0.3)")
    p.add_argument("--cluster-factor", type=float, default=0.9, help="clusters per filter each iteration (default 0.9)")
    p.add_argument("--iterations", type=int, default=10, help="pruning iterations (default 10)")
    p.add_argument("--fine-tune-epochs", type=int, default=5, help="fine-tune epochs after each iteration (default 5)")
    p.add_argument("--lr", type=float, default=0.001, help="fine-tune learning rate (default 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of K-means++, the split and fine-tuning (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(handler=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    from hostside.compress.prune import PruneSettings

    settings = PruneSettings(args.cluster_factor, args.iterations, args.max_prune, args.fine_tune_epochs, args.seed)
    settings.validate()
    result = prune_network(args.spec, args.weights, args.dataset, args.split, settings, args.out, lr=args.lr,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    last = result["iterations"][-1]
    print(f"pruned {result['original']['params']} -> {last['params']} params ({100 * last['pruned_share']:.1f} %), "
          f"accuracy {result['original']['accuracy']:.4f} -> {last['accuracy']:.4f}, NID "
          f"{result['original']['nid']:.3g} -> {last['nid']:.3g}; {args.out / PRUNE_FILE}")
    return 0


def prune_network(spec_path: Path, weights_path: Path, dataset: str, split_path: Optional[Path], settings: Any,
                  out: Path, lr: float = 0.001, progress=lambda line: None) -> Dict[str, Any]:
    """The whole pruning run (see ``hostside.compress.prune``); returns what prune.json holds."""
    import tempfile

    from hostside.arch.build import build_module
    from hostside.arch.weights import load_state, load_weights, save_state
    from hostside.compress.prune import prune_step
    from hostside.train.splits import Split
    from hostside.train.worker import train_and_export

    spec = load_spec(spec_path)
    state = load_weights(weights_path)
    load_state(build_module(spec), state, where=f"weights {weights_path}")  # one line if they belong elsewhere
    split = Split.load(split_path).to_dict() if split_path else None
    config = {"epochs": 0, "lr": lr, "seed": settings.seed, "threads": 1}
    out.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        base = train_and_export(spec.to_dict(), dataset, split, config, Path(scratch) / "base", init_weights=state)
        split = json.loads((Path(scratch) / "base" / "split.json").read_text())
        original = {"params": spec.cost.params, "accuracy": base["test_accuracy"], "nid": base["test_accuracy"] / spec.cost.params}
        progress(f"prune: start {original['params']} params, accuracy {original['accuracy']:.4f}")
        final_dir = Path(scratch) / "base"
        for iteration in range(1, settings.iterations + 1):
            spec, state, cut = prune_step(spec, state, settings, original["params"], iteration)
            if not cut:
                progress(f"prune: iteration {iteration}: no layer can be cut within --max-prune; done")
                break
            step_dir = Path(scratch) / f"it{iteration}"
            metrics = train_and_export(spec.to_dict(), dataset, split, {**config, "epochs": settings.fine_tune_epochs},
                                       step_dir, init_weights=state)
            state = load_weights(step_dir / "weights.npz")
            final_dir = step_dir
            row = {"iteration": iteration, "params": spec.cost.params, "macs": spec.cost.macs,
                   "pruned_share": 1 - spec.cost.params / original["params"], "accuracy": metrics["test_accuracy"],
                   "nid": metrics["test_accuracy"] / spec.cost.params, "layers_cut": cut,
                   "filters": {n.id: n.attrs["out_channels"] for n in spec.nodes if n.op == "conv2d"}}
            rows.append(row)
            progress(f"prune: iteration {iteration}: {row['params']} params ({100 * row['pruned_share']:.1f} % "
                     f"removed), accuracy {row['accuracy']:.4f}, NID {row['nid']:.3g}")
        shutil.copyfile(final_dir / "model.onnx", out / "pruned.onnx")
        save_state(state, out / "pruned_weights.npz")
        spec.save(out / "pruned_spec.json")
        (out / "split.json").write_text(json.dumps(split) + "\n")
    if not rows:
        rows.append({"iteration": 0, "params": original["params"], "macs": spec.cost.macs, "pruned_share": 0.0,
                     "accuracy": original["accuracy"], "nid": original["nid"], "layers_cut": [], "filters": {}})
    result = {"settings": {"cluster_factor": settings.cluster_factor, "iterations": settings.iterations,
                           "max_prune": settings.max_prune, "fine_tune_epochs": settings.fine_tune_epochs,
                           "seed": settings.seed, "lr": lr},
              "spec": str(spec_path), "weights": str(weights_path), "dataset": dataset,
              "original": original, "iterations": rows, "pruned_onnx": str(out / "pruned.onnx")}
    (out / PRUNE_FILE).write_text(json.dumps(result, indent=1) + "\n")
    _plot(result, out / PLOT_FILE)
    return result


def load_spec(path: Path) -> Any:
    """An ArchSpec JSON file, or a run's candidate folder (RUN/candidates/00012 or RUN/final/00012,
    whose spec lives in the run's journal)."""
    from hostside.arch.spec import ArchSpec

    path = Path(path)
    if not path.is_dir():
        return ArchSpec.load(path)
    run_dir = path.parent.parent
    if not path.name.isdigit() or not (run_dir / "journal.sqlite").exists():
        raise UserError(f"--spec {path}: a folder must be a run's candidate folder (RUN/candidates/NNNNN); "
                        f"otherwise give an ArchSpec JSON file")
    from hostside.journal import Journal

    journal = Journal.open(run_dir)
    try:
        row = journal.candidate(int(path.name))
    except KeyError:
        raise UserError(f"--spec {path}: run {run_dir} has no candidate {int(path.name)}") from None
    finally:
        journal.close()
    return ArchSpec.from_dict(row["spec"])


def _plot(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"pruned_share": 0.0, **result["original"]}] + [r for r in result["iterations"] if r["iteration"]]
    share = [100 * r["pruned_share"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(share, [r["accuracy"] for r in rows], "o-", color="tab:blue", label="test accuracy")
    ax.set_xlabel("parameters removed (%)")
    ax.set_ylabel("test accuracy", color="tab:blue")
    twin = ax.twinx()
    twin.plot(share, [r["nid"] for r in rows], "s--", color="tab:red", label="NID")
    twin.set_ylabel("NID = accuracy / params", color="tab:red")
    ax.set_title(f"K-means++ filter pruning (max {100 * result['settings']['max_prune']:.0f} %)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
