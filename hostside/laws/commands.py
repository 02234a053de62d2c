"""``hostside laws learn | sample | elaborate``: sampling laws for narrow spaces.

Heavy imports (numpy, scikit-learn, matplotlib) stay inside the handlers so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Optional, Tuple

from hostside.errors import UserError

DEFAULT_INPUT = "3,32,32"


def _say(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _add_space_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--space", required=required, help="narrow:<family> (plain, resnet, inception, densenet, "
                                                           "mobilenet)")
    parser.add_argument("--input-shape", default=None, help=f"C,H,W of the input (default {DEFAULT_INPUT}, CIFAR-10)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes (default 10)")
    parser.add_argument("--dataset", help="take input shape and classes from this dataset source instead")


def _add_calibration_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", help="calibration.json for the latency_ms metric")
    parser.add_argument("--board", help="board whose stored calibration predicts latency_ms (default: none)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the board's calibration (default 1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    laws = subparsers.add_parser("laws", help="sampling laws for narrow spaces: learn, sample, elaborate")
    sub = laws.add_subparsers(dest="laws_command", metavar="ACTION")
    sub.required = True

    learn = sub.add_parser("learn", help="learn k sampling laws for a target interval of a metric (GA + clustering)")
    _add_space_args(learn)
    learn.add_argument("--metric", default="params",
                       help="params, macs, activation_bytes, weight_bytes (with --format), latency_ms")
    learn.add_argument("--format", dest="weight_format", help="number format of weight_bytes (fp32, fp16, int8, "
                                                              "t4.3, q8.8, ...; default fp32)")
    learn.add_argument("--target", nargs=2, type=float, required=True, metavar=("TAU1", "TAU2"),
                       help="the interval the sampled metric should fall in")
    _add_calibration_args(learn)
    _add_ga_args(learn)
    learn.add_argument("--out", type=Path, required=True, help="directory for laws.json and laws.png")
    learn.set_defaults(handler=run_learn)

    sample = sub.add_parser("sample", help="write N ArchSpec JSON files drawn from learned laws (or uniformly)")
    sample.add_argument("laws", nargs="?", type=Path, help="laws.json (or its directory)")
    sample.add_argument("-n", type=int, required=True, help="number of networks")
    sample.add_argument("--uniform", action="store_true", help="sample the whole space of --space uniformly")
    _add_space_args(sample, required=False)
    sample.add_argument("--law", type=int, help="only this law (rank in laws.json); default: all, in turn")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, required=True, help="directory for the ArchSpec files")
    sample.set_defaults(handler=run_sample)

    elab = sub.add_parser("elaborate", help="Pareto elaboration: laws for a grid of params targets, every sample "
                                            "judged by cost and predicted latency")
    _add_space_args(elab)
    _add_calibration_args(elab)
    _add_ga_args(elab)
    elab.add_argument("--n-val", type=int, default=100, help="samples per law (default 100)")
    elab.add_argument("--decades", default="3,4,5,6", help="tau = 10^d for these d (default 3,4,5,6)")
    elab.add_argument("--out", type=Path, required=True, help="directory for population.json and population.png")
    elab.set_defaults(handler=run_elaborate)


def _add_ga_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-init", type=int, default=100, help="initial population (default 100)")
    parser.add_argument("--n-steps", type=int, default=900, help="GA steps (default 900)")
    parser.add_argument("--n-eval", type=int, default=10, help="samples per law evaluation (default 10)")
    parser.add_argument("-k", type=int, default=10, help="clusters = laws kept (default 10)")
    parser.add_argument("--seed", type=int, default=0)


def _parse_shape(text: str) -> Tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input-shape must be C,H,W with positive integers (e.g. 3,32,32), got {text!r}")
    return shape  # type: ignore[return-value]


def input_of(args: argparse.Namespace) -> Tuple[Tuple[int, int, int], int]:
    if args.dataset:
        if args.input_shape or args.num_classes:
            raise UserError("--dataset sets the input shape and classes; drop --input-shape/--num-classes")
        from hostside.train.datasets import load_dataset

        dataset = load_dataset(args.dataset)
        return tuple(dataset.input_shape), dataset.num_classes  # type: ignore[return-value]
    classes = 10 if args.num_classes is None else args.num_classes
    if classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {classes}")
    return _parse_shape(args.input_shape or DEFAULT_INPUT), classes


def calibration_of(args: argparse.Namespace, needed: bool) -> Optional[Any]:
    """The calibration named by --calibration, else the stored one of --board; None if neither given."""
    from hostside.calibration.artifact import load_calibration

    if args.calibration:
        return load_calibration(args.calibration)
    if not args.board:
        return None
    from hostside.boards.board import open_board
    from hostside.calibration.registry import find_calibration

    board = open_board(args.board)
    found = find_calibration(board.key, args.threads)
    if found is None and needed:
        raise UserError(f"board {args.board!r} has no stored calibration for {args.threads} thread(s); measure one "
                        f"with `hostside calibrate --board {args.board}` or give --calibration FILE")
    return found


def _ga_settings(args: argparse.Namespace):
    from hostside.laws.ga import GASettings

    settings = GASettings(n_init=args.n_init, n_steps=args.n_steps, n_eval=args.n_eval, k=args.k, seed=args.seed)
    settings.validate()
    return settings


def checked_reach(space: Any, metric: Any, tau1: float, tau2: float, seed: int) -> Tuple[float, float]:
    """The metric range the space reaches, after checking the target against it (one line if bad)."""
    import numpy as np

    from hostside.laws.ga import check_target, reachable_range

    if tau1 >= tau2:
        check_target(tau1, tau2, (0.0, float("inf")), metric, space.name)
    reach = reachable_range(space, metric, np.random.default_rng([seed, 1]))
    check_target(tau1, tau2, reach, metric, space.name)
    return reach


def run_learn(args: argparse.Namespace) -> int:
    from hostside.laws.learn import learn_laws, progress_printer
    from hostside.laws.metrics import make_metric
    from hostside.laws.plots import plot_law_distributions
    from hostside.laws.store import LAWS_FILE, save_laws
    from hostside.spaces.narrow import family_of, make_narrow

    family_of(args.space)
    metric_name = args.metric.split(":", 1)[0]
    calibration = calibration_of(args, needed=metric_name == "latency_ms")
    metric = make_metric(args.metric, args.weight_format, calibration if metric_name == "latency_ms" else None)
    settings = _ga_settings(args)
    shape, classes = input_of(args)
    space = make_narrow(args.space, shape, classes)
    tau1, tau2 = args.target
    reach = checked_reach(space, metric, tau1, tau2, settings.seed)
    _say(f"learning {settings.k} laws for {space.name} on input {list(shape)}: {metric.label} in "
         f"[{tau1:g}, {tau2:g}] ({settings.n_init} + {settings.n_steps} laws x {settings.n_eval} networks)")
    body, samples = learn_laws(space, metric, tau1, tau2, settings, progress=progress_printer(_say, "GA"), reach=reach)
    path = save_laws(body, args.out / LAWS_FILE)
    png = plot_law_distributions(args.out / "laws.png", f"{space.name}: {len(body['laws'])} learned laws vs uniform",
                                 metric.label, (tau1, tau2), samples["laws"], samples["uniform"],
                                 [law["validation"]["share_inside"] for law in body["laws"]],
                                 body["uniform"]["share_inside"])
    for law in body["laws"]:
        v = law["validation"]
        _say(f"law {law['rank']}: GA cost {law['cost']:.3f}, validation cost {law['validation_cost']:.3f}, "
             f"{v['share_inside']:.0%} of {v['samples']} samples inside, "
             f"median {v['median']:.4g}")
    _say(f"uniform sampling of the whole space: {body['uniform']['share_inside']:.0%} inside "
         f"(median {body['uniform']['median']:.4g}); GA {body['ga_seconds']:.1f} s")
    print(f"wrote {path} and {png}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from hostside.laws.law import Law
    from hostside.laws.store import load_laws
    from hostside.spaces.narrow import make_narrow

    if args.n < 1:
        raise UserError(f"-n must be at least 1, got {args.n}")
    if args.uniform:
        if args.laws is not None or not args.space:
            raise UserError("--uniform samples a whole space: give --space narrow:<family> and no laws file")
        shape, classes = input_of(args)
        space = make_narrow(args.space, shape, classes)
        laws = [Law.uniform(space)]
        names = ["uniform"]
    else:
        if args.laws is None:
            raise UserError("give a laws.json to sample from, or --uniform --space narrow:<family>")
        if args.space or args.input_shape or args.dataset:
            raise UserError("the laws file fixes the space and input; drop --space/--input-shape/--dataset")
        body, space, laws = load_laws(args.laws)
        names = [f"law{law['rank']}" for law in body["laws"]]
        if args.law is not None:
            if not 0 <= args.law < len(laws):
                raise UserError(f"--law {args.law} is not in the file; it holds laws 0..{len(laws) - 1}")
            laws, names = [laws[args.law]], [names[args.law]]
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    index = []
    for i in range(args.n):
        which = i % len(laws)
        config = laws[which].sample(space, 1, rng)[0]
        spec = space.decode(config)
        file = args.out / f"arch_{i:05d}.json"
        spec.save(file)
        cost = spec.cost
        index.append({"file": file.name, "law": names[which], "config": config, "sha256": spec.content_hash(),
                      "params": cost.params, "macs": cost.macs, "activation_bytes": cost.activation_bytes})
        if (i + 1) % 1000 == 0:
            _say(f"{i + 1}/{args.n} networks written")
    (args.out / "index.json").write_text(json.dumps({"space": space.describe(), "networks": index}, indent=1) + "\n")
    print(f"wrote {args.n} ArchSpec files and index.json to {args.out}")
    return 0


def run_elaborate(args: argparse.Namespace) -> int:
    from hostside.laws.elaborate import elaborate, target_grid, windows_of
    from hostside.spaces.narrow import family_of, make_narrow

    family_of(args.space)
    calibration = calibration_of(args, needed=True)
    if calibration is None:
        raise UserError("elaboration judges predicted latency: give --calibration FILE or --board NAME "
                        "(with a stored calibration)")
    settings = _ga_settings(args)
    try:
        decades = [int(d) for d in args.decades.split(",")]
    except ValueError:
        raise UserError(f"--decades must be comma-separated integers (e.g. 3,4,5,6), got {args.decades!r}") from None
    shape, classes = input_of(args)
    space = make_narrow(args.space, shape, classes)
    result = elaborate(space, calibration, windows_of(target_grid(decades)), settings, args.n_val, args.out, _say)
    print(f"wrote {result['population_file']} ({result['networks']} networks) and {result['png']}")
    return 0
