"""The ``device-agent`` command (also ``python -m device_agent``): info, measure, serve, selftest.

With ``--json`` a command prints exactly one JSON object on stdout, also on failure (then with
``"error": {"code", "message"}``), so the host can always parse what came back. Exit status:
0 success, 1 a measurement failed (the JSON says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from device_agent.protocol import DEFAULT_SEED, DEFAULT_WARMUP, MEASURE_OPTIONS, PROTOCOL_VERSION

REPORT_PGID_ENV = "DEVICE_AGENT_REPORT_PGID"


def _print_json(payload: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, allow_nan=False) + "\n")
    sys.stdout.flush()


def _apply_limits(timeout_s: Optional[float], memory_limit_mb: Optional[int]) -> None:
    """Self-imposed limits, so a one-shot run over SSH is as contained as a daemon child.

    SIGALRM keeps its default action (terminate) so the limit holds even inside onnxruntime's
    C++ code, where a Python handler would never run; the parent reads the signal as a timeout.
    RLIMIT_AS makes an oversized allocation fail (bad_alloc -> out_of_memory) instead of
    waking the kernel's OOM killer on a 1 GB Pi.
    """
    if timeout_s:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(max(1, int(timeout_s + 0.999)))
    if memory_limit_mb:
        limit = int(memory_limit_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def cmd_info(args: argparse.Namespace) -> int:
    from device_agent.system import info

    facts = info()
    if args.json:
        _print_json(facts)
    else:
        for key, value in facts.items():
            print(f"{key}: {value}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from device_agent.selftest import run

    facts = run()
    if args.json:
        _print_json(facts)
    else:
        print("ok" if facts["ok"] else facts.get("message"))
    return 0 if facts["ok"] else 1


def measure_with_limits(model: Path, options: Dict[str, Any]) -> Dict[str, Any]:
    """Measure under the board-wide lock and the self-imposed limits; never raises.

    ``options`` holds MEASURE_OPTIONS plus ``timeout_s`` and ``memory_limit_mb`` (None: 80% of
    RAM, 0: no limit). Shared by ``device-agent measure`` and the daemon's warm workers.
    """
    from device_agent.bench import MeasureError, failure, measure_model
    from device_agent.store import measurement_lock
    from device_agent.system import default_memory_limit_mb

    if not model.is_file():
        return failure("invalid_model", f"model file {model} does not exist; give the path of an .onnx file", model)
    memory_limit_mb = options.get("memory_limit_mb")
    if memory_limit_mb is None:
        memory_limit_mb = default_memory_limit_mb()
    with measurement_lock() as queue_wait_s:
        _apply_limits(options.get("timeout_s"), memory_limit_mb)
        try:
            result = measure_model(model, **{k: options[k] for k in MEASURE_OPTIONS if options.get(k) is not None})
        except MeasureError as exc:
            result = failure(exc.code, str(exc), model)
        except ImportError as exc:
            result = failure("agent_missing", f"onnxruntime cannot be imported on this board: {exc}", model)
        except MemoryError:
            result = failure("out_of_memory", f"{model.name} does not fit in the memory limit", model)
        signal.alarm(0)
    result["queue_wait_s"] = queue_wait_s
    result["limits"] = {"timeout_s": options.get("timeout_s"), "memory_limit_mb": memory_limit_mb or None}
    return result


def cmd_measure(args: argparse.Namespace) -> int:
    from device_agent.protocol import error_result

    model = Path(args.model)
    options = {
        "threads": args.threads, "warmup": args.warmup, "runs": args.runs, "min_time_s": args.min_time,
        "power": args.power, "idle_s": args.idle_s, "spinning": args.spinning, "seed": args.seed,
        "keep_samples": args.keep_samples, "timeout_s": args.timeout_s, "memory_limit_mb": args.memory_limit_mb,
    }
    try:
        result = measure_with_limits(model, options)
    except ImportError as exc:  # numpy itself missing: bench cannot even be imported
        result = error_result("agent_missing", f"numpy cannot be imported on this board: {exc}")
    _bound_cache_after_one_shot(model)
    if args.json:
        _print_json(result)
    elif result["error"]:
        print(f"device-agent: error: {result['error']['message']}", file=sys.stderr)
    else:
        lat = result["latency_ms"]
        print(f"{model.name}: median {lat['median']:.3f} ms, p90 {lat['p90']:.3f} ms over {lat['count']} runs")
    return 1 if result["error"] else 0


def _bound_cache_after_one_shot(model: Path) -> None:
    """The host's one-shot path copies models straight into the cache over SFTP, so the
    cache bound is applied here, after the measurement, as an upload to the daemon applies it."""
    from device_agent import store

    if model.is_file() and model.resolve().parent == store.models_dir().resolve():
        store.evict_least_recently_used(keep=model.resolve())


def cmd_worker(args: argparse.Namespace) -> int:
    """A daemon's pre-started measuring process: imports numpy and onnxruntime and runs one tiny
    inference now, then waits for one JSON request on stdin, measures it and exits. Paying the
    start-up before the request arrives keeps it out of the host's waiting time (seconds on a
    Pi 3)."""
    from device_agent.bench import warm_up

    warm_up()
    line = sys.stdin.readline()
    if not line:
        return 0
    request = json.loads(line)
    _print_json(measure_with_limits(Path(request["model"]), request))
    sys.stderr.flush()
    # The result is out; skip interpreter teardown (tens of ms with onnxruntime loaded), which
    # the daemon would otherwise wait for before answering the host.
    os._exit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    from device_agent.daemon import DaemonConfig, serve

    config = DaemonConfig(
        port=args.port,
        socket_path=args.socket,
        timeout_s=args.timeout_s,
        memory_limit_mb=args.memory_limit_mb,
        thermal_guard_c=args.thermal_guard_c,
    )
    return serve(config)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``device-agent measure`` and the host's ``hostside measure``."""
    parser.add_argument("--threads", type=_positive_int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--warmup", type=_non_negative_int, default=DEFAULT_WARMUP, help="untimed runs first")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--runs", type=_positive_int, default=None, help="timed runs (default 100)")
    count.add_argument("--min-time", type=float, default=None, metavar="S", help="time runs for at least S seconds")
    parser.add_argument("--power", default=None, metavar="SOURCE", help="rapl, rapl:package, rapl:dram, hwmon[:hwmonN] or 'cmd:COMMAND'")
    parser.add_argument("--idle-s", type=float, default=1.0, help="seconds of idle power baseline before the run")
    parser.add_argument("--spinning", action="store_true", help="let onnxruntime threads spin (default off, recorded)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the random input")
    parser.add_argument("--keep-samples", action="store_true", help="include every run's latency as samples_ms")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="device-agent", description="On-board latency and power measurement.")
    parser.add_argument("--version", action="version", version=f"%(prog)s protocol {PROTOCOL_VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="board facts (CPU, clocks, temperature, throttling, power sources)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_info)

    selftest = sub.add_parser("selftest", help="run one tiny inference to prove onnxruntime works here")
    selftest.add_argument("--json", action="store_true")
    selftest.set_defaults(handler=cmd_selftest)

    measure = sub.add_parser("measure", help="batch-1 latency (and power) of one ONNX model")
    measure.add_argument("model", metavar="MODEL.onnx")
    add_measure_options(measure)
    measure.add_argument("--timeout-s", type=float, default=600.0, help="kill the measurement after this long (default 600)")
    measure.add_argument("--memory-limit-mb", type=int, default=None, help="address-space limit of the measuring process (default 80%% of RAM; 0: none)")
    measure.set_defaults(handler=cmd_measure)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.set_defaults(handler=cmd_worker)

    serve = sub.add_parser("serve", help="run the daemon (loopback TCP or a Unix socket only)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default 47800)")
    where.add_argument("--socket", default=None, help="Unix socket path instead of TCP")
    serve.add_argument("--timeout-s", type=float, default=600.0, help="per-measurement time limit")
    serve.add_argument("--memory-limit-mb", type=int, default=None, help="per-measurement memory limit (default: 80%% of RAM)")
    serve.add_argument("--thermal-guard-c", type=float, default=None, help="wait until the CPU is below this temperature")
    serve.set_defaults(handler=cmd_serve)
    return parser


def _report_process_group() -> None:
    """Put this process in its own group and say which, so a host whose SSH command timed out
    can kill exactly this measurement (``kill -KILL -- -PGID``) and nothing else."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a session leader: its group is its own
    sys.stderr.write(f"device-agent-pgid {os.getpgrp()}\n")
    sys.stderr.flush()


def main(argv: Optional[List[str]] = None) -> int:
    if os.environ.get(REPORT_PGID_ENV):
        _report_process_group()
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)
