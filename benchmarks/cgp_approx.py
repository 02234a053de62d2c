"""Scenarios S1-S4 of the CGP NAS with approximate multipliers, and their re-trained fronts.

    python3 benchmarks/cgp_approx.py [--dataset digits|PATH.npz] [--generations G] [--out DIR]

Runs ``hostside search --config configs/cgp_s{1..4}.toml`` (one command per scenario, here with
a smaller grid and budget so all four fit ~10 minutes of a loaded 2-core machine on digits),
trains ResNet-8-like reference networks with the exact and two approximate multipliers, and
plots the four re-trained Pareto fronts as accuracy vs multiplication energy (N_mult x P_mult)
in one PNG (``DIR/cgp_fronts.png``). Prints each front's points and the wall time. Every
search chooses on validation accuracy; the accuracies printed and plotted are the re-trained
fronts' test accuracies, which no choice used.

S3 uses the scenario config's fixed multiplier (mul8u_QKX) with either library. QKX's error
matrix has rank 51, above the rank-16 limit of training (``hostside.approx.conv``), so S3's
networks train with the best rank-16 approximation of its table and are evaluated with the exact
table; the run prints which circuits of each front trained that way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hostside.approx.metrics import approx_metrics  # noqa: E402
from hostside.arch.blocks import SpecBuilder  # noqa: E402

SCENARIOS = {"S1": "cgp_s1.toml", "S2": "cgp_s2.toml", "S3": "cgp_s3.toml", "S4": "cgp_s4.toml"}
REFERENCE_MULTIPLIERS = ("mul8u_1JFF", "mul8u_7C1", "mul8u_18DU")
#: Circuits whose error matrix has rank <= 8 (cheap, exact lookups in training and evaluation):
#: the benchmark's default library for the evolved gene (S1, S2), so four searches fit ~10
#: minutes; --library all = the configs' 14-circuit library (high-rank circuits such as 12N4
#: cost ~100x per conv). A scenario's fixed multiplier joins the library it is fixed in.
FAST_LIBRARY = ["mul8u_17C8", "mul8u_17QU", "mul8u_13QR", "mul8u_18DU", "mul8u_7C1", "mul8u_GS2", "mul8u_125K",
                "mul8u_1JFF"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(data: Dict[str, Any], path: Path) -> None:
    """A config of plain keys and one level of tables (all the scenario files use)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")


def resnet8_like(input_shape, num_classes: int, multiplier: str):
    """ResNet-8-like reference: conv16, three basic blocks (16, 32/2, 64/2), global pool, FC."""
    b = SpecBuilder(input_shape)
    x = b.conv_bn_act("input", 16, 3)
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        x = b.residual(x, width, stride=stride)
    b.head(x, num_classes)
    spec = b.build(num_classes, name=f"resnet8-like-{multiplier}")
    nodes = []
    for n in spec.to_dict()["nodes"]:
        if n["op"] == "conv2d":
            n = {**n, "op": "approx_conv2d", "multiplier": multiplier}
        nodes.append(n)
    from hostside.arch.spec import ArchSpec

    return ArchSpec.from_dict({**spec.to_dict(), "nodes": nodes})


def run(cmd: List[str], log: Path) -> None:
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--generations", type=int, default=1, help="G after the initial population (default 1)")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--grid", default="3x8", help="rows x cols of the CGP grid (paper: 6x23)")
    parser.add_argument("--levels-back", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--final-epochs", type=int, default=4, help="E_retrain")
    parser.add_argument("--scenarios", default="S1,S2,S3,S4")
    parser.add_argument("--library", choices=("fast", "all"), default="fast",
                        help="fast: rank<=8 circuits for the evolved gene (default); all: the configs' libraries")
    parser.add_argument("--out", default="runs/cgp_approx")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows, cols = (int(v) for v in args.grid.split("x"))
    start = time.time()
    fronts: Dict[str, List[Dict[str, Any]]] = {}
    for name in args.scenarios.split(","):
        config = tomllib.loads((REPO / "configs" / SCENARIOS[name]).read_text())
        config.update(dataset=args.dataset, population=args.population, epochs=args.epochs,
                      final_epochs=args.final_epochs, budget=args.population * (args.generations + 1))
        config["space_options"].update(rows=rows, cols=cols, levels_back=args.levels_back)
        if args.library == "fast":
            fixed = config["space_options"].get("fixed_multiplier")
            config["space_options"]["multipliers"] = FAST_LIBRARY + ([fixed] if fixed and fixed not in FAST_LIBRARY
                                                                     else [])
        path = out / f"{name}.toml"
        write_toml(config, path)
        run_dir = out / name
        t0 = time.time()
        run([sys.executable, "-m", "hostside.cli", "search", "--config", str(path), "--out", str(run_dir)],
            out / f"{name}.log")
        fronts[name] = json.loads((run_dir / "pareto.json").read_text())
        print(f"{name}: {len(fronts[name])} front model(s) in {time.time() - t0:.0f} s", flush=True)
        for m in sorted(fronts[name], key=lambda m: m["mult_energy_mj"]):
            truncated = " (trained with a rank-16 table)" if m.get("trained_with_truncated_table") else ""
            print(f"  test accuracy {m['test_accuracy']:.3f}{truncated}  mult_energy {m['mult_energy_mj'] * 1e6:9.2f} nJ  "
                  f"n_mult {m['n_mult']:>9,}  {m['multiplier']} ({m['energy_per_mult_pj']} pJ)  params {m['params']:,}")
    references = []
    from hostside.train.datasets import cached_dataset

    dataset = cached_dataset(args.dataset)
    for multiplier in REFERENCE_MULTIPLIERS:
        spec = resnet8_like(dataset.input_shape, dataset.num_classes, multiplier)
        spec_path = out / f"resnet8_{multiplier}.json"
        spec.save(spec_path)
        ref_dir = out / f"resnet8_{multiplier}"
        run([sys.executable, "-m", "hostside.cli", "train", str(spec_path), "--dataset", args.dataset, "--epochs",
             str(args.final_epochs), "--crop-padding", "1", "--weight-decay", "0.0001", "--out", str(ref_dir)],
            out / f"resnet8_{multiplier}.log")
        metrics = json.loads((ref_dir / "metrics.json").read_text())
        ref = {"multiplier": multiplier, "accuracy": metrics["accuracy"], **approx_metrics(spec)}
        references.append(ref)
        print(f"ResNet-8-like {multiplier}: accuracy {ref['accuracy']:.3f}  mult_energy "
              f"{ref['mult_energy_mj'] * 1e6:.2f} nJ  params {spec.cost.params:,}", flush=True)
    plot(fronts, references, out / "cgp_fronts.png", args.dataset)
    (out / "summary.json").write_text(json.dumps({"fronts": fronts, "references": references}, indent=1, default=str))
    print(f"wall {time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f}; plot {out / 'cgp_fronts.png'}")


def plot(fronts, references, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, models), marker, size in zip(fronts.items(), "osD^", (110, 60, 50, 40)):
        pts = sorted((m["mult_energy_mj"] * 1e6, m["test_accuracy"]) for m in models)
        dots = ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=size, alpha=0.8,
                          label=f"{name} (re-trained front)")
        best, line = -1.0, []  # the accuracy-vs-energy staircase (S2's front also trades params)
        for x, y in pts:
            if y > best:
                best = y
                line.append((x, y))
        ax.step([p[0] for p in line], [p[1] for p in line], where="post", color=dots.get_facecolor()[0], alpha=0.5)
    for k, ref in enumerate(references):
        ax.scatter(ref["mult_energy_mj"] * 1e6, ref["accuracy"], marker="*", s=140, color="black", zorder=5)
        ax.annotate(f"ResNet-8-like {ref['multiplier'].replace('mul8u_', '')}",
                    (ref["mult_energy_mj"] * 1e6, ref["accuracy"]), fontsize=7, xytext=(-60, -12 - 10 * k),
                    textcoords="offset points")
    ax.set(xscale="log", xlabel="multiplication energy per inference N_mult x P_mult (nJ)", ylabel="test accuracy (not used in any choice)",
           title=f"CGP NAS with approximate multipliers ({dataset})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
