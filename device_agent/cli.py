"""The ``device-agent`` command (also ``python -m device_agent``): info, measure, serve, selftest.

With ``--json`` a command prints exactly one JSON object on stdout, also on failure (then with
``"error": {"code", "message"}``), so the host can always parse what came back. Exit status:
0 success, 1 a measurement failed (the JSON says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional

from device_agent.protocol import MEASURE_OPTIONS, PROTOCOL_VERSION, add_measure_arguments, options_from_args

REPORT_PGID_ENV = "DEVICE_AGENT_REPORT_PGID"
#: Set by the host: the agent's stdin stays open exactly as long as the host process (or its
#: SSH session) lives, so end of stdin means the host is gone and the measurement must stop.
EXIT_WITH_STDIN_ENV = "DEVICE_AGENT_EXIT_WITH_STDIN"


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
    from device_agent.bench import failure
    from device_agent.store import measurement_lock
    from device_agent.system import default_memory_limit_mb

    if not model.is_file():
        return failure("invalid_model", f"model file {model} does not exist; give the path of an .onnx file", model)
    memory_limit_mb = options.get("memory_limit_mb")
    if memory_limit_mb is None:
        memory_limit_mb = default_memory_limit_mb()
    with measurement_lock() as queue_wait_s:
        try:
            result = _measure_under_limits(model, options, memory_limit_mb)
        finally:
            signal.alarm(0)
    result["queue_wait_s"] = queue_wait_s
    result["limits"] = {"timeout_s": options.get("timeout_s"), "memory_limit_mb": memory_limit_mb or None}
    return result


#: Room beyond what is mapped before the model loads that a suggested limit leaves for
#: onnxruntime's session (arena, thread stacks) and the model's weights.
SUGGESTED_HEADROOM_MB = 64


def _address_space_mb() -> Optional[int]:
    """This process's mapped address space (VmSize) in MB: what RLIMIT_AS is compared with.
    None where /proc is missing, so the limit is then simply tried."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _limit_advice(model: Path, memory_limit_mb: int, in_use_mb: Optional[int]) -> str:
    """How to fix a limit that was too small, with a figure when the usage is known: a user
    who gave 20 MB cannot guess that Python and onnxruntime alone map a few hundred."""
    if in_use_mb is None or in_use_mb < memory_limit_mb:
        return f"raise --memory-limit-mb above {memory_limit_mb} or drop it (0: no limit)"
    model_mb = model.stat().st_size / (1024 * 1024) if model.is_file() else 0.0
    suggested = int(math.ceil((in_use_mb + SUGGESTED_HEADROOM_MB + 2 * model_mb) / 16.0)) * 16
    return (f"Python, numpy and onnxruntime already take {in_use_mb} MB of address space before the model loads; "
            f"raise --memory-limit-mb to at least {suggested} or drop it (0: no limit)")


def _out_of_memory(model: Path, memory_limit_mb: int, what: str) -> Dict[str, Any]:
    from device_agent.bench import failure

    advice = _limit_advice(model, memory_limit_mb, _address_space_mb())
    return failure("out_of_memory", f"{what}; {advice}", model)


def _measure_under_limits(model: Path, options: Dict[str, Any], memory_limit_mb: int) -> Dict[str, Any]:
    """One measurement with the limits applied; never raises.

    onnxruntime is imported before the address-space limit, so a failed import here really
    is a missing or broken package, while a failure once the limit holds (an import that
    cannot map its shared object, a MemoryError) is the limit's doing: ``out_of_memory``.
    A limit below what the process maps already is refused before anything runs.
    """
    from device_agent.bench import MeasureError, failure, measure_model

    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return failure("agent_missing", f"onnxruntime cannot be imported on this board: {exc}", model)
    in_use_mb = _address_space_mb()
    if memory_limit_mb and in_use_mb is not None and memory_limit_mb <= in_use_mb:
        return _out_of_memory(model, memory_limit_mb, f"--memory-limit-mb {memory_limit_mb} is too small to even start measuring {model.name}")
    _apply_limits(options.get("timeout_s"), memory_limit_mb)
    try:
        return measure_model(model, **{k: options[k] for k in MEASURE_OPTIONS if options.get(k) is not None})
    except MeasureError as exc:
        if exc.code == "out_of_memory" and memory_limit_mb:
            return _out_of_memory(model, memory_limit_mb, f"{exc} (--memory-limit-mb {memory_limit_mb})")
        return failure(exc.code, str(exc), model)
    except (ImportError, MemoryError) as exc:
        if not memory_limit_mb:
            return failure("agent_missing", f"a module the measurement needs cannot be imported on this board: {exc}", model)
        detail = f"{type(exc).__name__}: {str(exc)[:200]}"
        return _out_of_memory(model, memory_limit_mb, f"{model.name} does not fit in --memory-limit-mb {memory_limit_mb} ({detail})")


def _resolve_power(name: Optional[str], config_path: Optional[str]) -> Optional[str]:
    """The spec of a named power source, from the board's own config; ConfigError if refused."""
    if name is None:
        return None
    from device_agent import config

    return config.resolve_power(name, config.load(config_path))


def cmd_measure(args: argparse.Namespace) -> int:
    from device_agent.config import ConfigError
    from device_agent.protocol import error_result

    model = Path(args.model)
    options = options_from_args(args)
    try:
        options["power"] = _resolve_power(args.power, args.config)
        result = measure_with_limits(model, options)
    except ConfigError as exc:
        result = error_result("bad_request", str(exc))
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

    _die_with_parent()
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


def _die_with_parent() -> None:
    """A daemon's worker dies with the daemon (Linux ``PR_SET_PDEATHSIG``), so a killed daemon
    leaves no measurement holding the board's lock. Best effort where prctl is missing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def cmd_serve(args: argparse.Namespace) -> int:
    from device_agent import config
    from device_agent.daemon import DaemonConfig, serve

    try:
        agent_config = config.load(args.config, args.power_source or ())
    except config.ConfigError as exc:
        print(f"device-agent: error: {exc}", file=sys.stderr)
        return 2
    daemon_config = DaemonConfig(
        port=args.port,
        socket_path=args.socket,
        timeout_s=args.timeout_s,
        memory_limit_mb=args.memory_limit_mb,
        thermal_guard_c=args.thermal_guard_c,
        agent_config=agent_config,
        token_file=args.token_file,
        token_mode=args.token_mode,
    )
    return serve(daemon_config)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _file_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode such as 0600") from None
    if mode not in (0o600, 0o640, 0o400, 0o440):
        raise argparse.ArgumentTypeError("must be 0600 or 0640 (0400/0440): never readable by others")
    return mode


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (what is wrong, where to read more), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="device-agent", description="On-board latency and power measurement.")
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
    add_measure_arguments(measure)
    measure.add_argument("--json", action="store_true", help="print the result as one JSON object")
    measure.add_argument("--config", default=None, help="the board's agent config (default $DEVICE_AGENT_CONFIG or $DEVICE_AGENT_HOME/agent.json)")
    measure.set_defaults(handler=cmd_measure)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.set_defaults(handler=cmd_worker)

    serve = sub.add_parser("serve", help="run the daemon (loopback TCP or a Unix socket only)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--port", type=_integer, default=None, help="TCP port on 127.0.0.1 (default 47800)")
    where.add_argument("--socket", default=None, help="Unix socket path (mode 0600) instead of TCP")
    add_measure_arguments(serve, ("timeout_s", "memory_limit_mb"))
    serve.add_argument("--thermal-guard-c", type=float, default=None, help="wait until the CPU is below this temperature")
    serve.add_argument("--config", default=None, help="the board's agent config (default $DEVICE_AGENT_CONFIG or $DEVICE_AGENT_HOME/agent.json)")
    serve.add_argument("--power-source", action="append", metavar="NAME=SPEC", help="declare a power source, e.g. meter=cmd:/usr/local/bin/read-watts (repeatable)")
    serve.add_argument("--token-file", default=None, help="where the TCP daemon writes its token (default $DEVICE_AGENT_HOME/daemon.token)")
    serve.add_argument("--token-mode", type=_file_mode, default=0o600, help="token file mode: 0600 (default) or 0640 to let the agent's group measure")
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


def _exit_with_stdin() -> None:
    """Stop (with the whole process group, when this process leads one) as soon as stdin
    ends: the host that started this measurement died or its SSH session closed, and nobody
    is left to read the result, which would otherwise hold the board's lock for minutes."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-stdin", daemon=True).start()


def main(argv: Optional[List[str]] = None) -> int:
    if os.environ.get(REPORT_PGID_ENV):
        _report_process_group()
    args = build_parser().parse_args(argv)
    if os.environ.get(EXIT_WITH_STDIN_ENV) and args.command in ("measure", "info", "selftest"):
        _exit_with_stdin()
    return int(args.handler(args) or 0)
