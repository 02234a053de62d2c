"""Versioned JSON-lines protocol between the host and the device agent.

Shared by both sides (the host imports this module; it must stay stdlib-only). One request
per line, one response per line, UTF-8 JSON objects. A response always carries ``"error"``:
``None`` on success or ``{"code": <one of ERROR_CODES>, "message": str}``, so a caller can
branch on a code instead of parsing exception text (TVM's mistake of calling every failure a
timeout is what the codes avoid).
"""

from __future__ import annotations

import json
import math
import re
import signal
import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple, Union

PROTOCOL_VERSION = 1

#: Documented error codes. Results never carry a code outside this set.
ERROR_CODES = (
    "bad_request",       # malformed or refused request (unknown op, path outside the cache, ...)
    "upload_error",      # the model could not be transferred or its checksum did not match
    "invalid_model",     # the file is not a loadable ONNX model
    "runtime_error",     # onnxruntime failed while running, or the measuring process crashed
    "timeout",           # the measurement exceeded its time limit and was killed
    "out_of_memory",     # the model did not fit in the memory limit (or the kernel killed it)
    "power_error",       # the requested power source is missing or unreadable
    "agent_missing",     # the board lacks Python, numpy, onnxruntime or the agent itself
    "connection_error",  # the link to the board failed and retries were exhausted (host only)
    "unauthorized",      # a TCP client that did not present the daemon's token (deploy/SECURITY.md)
)

#: Measurement defaults, shared by the agent and the host's command line.
DEFAULT_WARMUP = 10
DEFAULT_RUNS = 100
DEFAULT_SEED = 0
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class MeasureOption:
    """One option of a measurement, declared once.

    Why one declaration: the agent's command line, the daemon's request check, the bench
    function, ``Board.measure``, the one-shot command line the host builds and ``hostside
    measure``'s flags all used to restate each option (name, bounds, default, flag), and they
    drifted. They all read this table now.

    ``kind`` is ``int`` (booleans excluded), ``float`` (finite) in ``[low, high]``, ``bool``
    (a flag) or ``str``; ``name`` is the request key and carries the unit; ``flag`` the
    command-line flag, ``aliases`` older spellings that keep working; options sharing an
    ``exclusive`` group may not be given together on a command line.
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float = 0
    high: float = 0
    flag: str = ""
    aliases: Tuple[str, ...] = ()
    metavar: Optional[str] = None
    exclusive: str = ""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


#: The options of one measurement, as keys of a measure request.
MEASURE_OPTION_TABLE: Tuple[MeasureOption, ...] = (
    MeasureOption("threads", "int", 1, "onnxruntime intra-op threads (default 1)", 1, 1024),
    MeasureOption("warmup", "int", DEFAULT_WARMUP, f"untimed runs first (default {DEFAULT_WARMUP})", 0, 1_000_000),
    MeasureOption("runs", "int", None, f"timed runs (default {DEFAULT_RUNS})", 1, 10_000_000, exclusive="count"),
    MeasureOption("min_time_s", "float", None, "time runs for at least S seconds", 1e-3, 86400.0,
                  aliases=("--min-time",), metavar="S", exclusive="count"),
    MeasureOption("power", "str", None,
                  "rapl, rapl:package, rapl:dram, hwmon[:hwmonN], or a source the board's agent config declares "
                  "(deploy/POWER.md)", metavar="SOURCE"),
    MeasureOption("idle_s", "float", 1.0, "seconds of idle power baseline before the run (default 1)", 0.0, 3600.0),
    MeasureOption("spinning", "bool", False, "let onnxruntime threads spin (default off, recorded)"),
    MeasureOption("seed", "int", DEFAULT_SEED, "seed of the random input", 0, 2**63 - 1),
    MeasureOption("keep_samples", "bool", False, "include every run's latency as samples_ms"),
    MeasureOption("batch", "int", 1, "batch size of the input (default 1); the model needs a dynamic batch axis",
                  1, 65536, metavar="N"),
)
#: Limits of the measuring process: ``timeout_s`` travels in a request, the memory limit is the
#: measuring side's own (a daemon sets it when it starts).
LIMIT_OPTION_TABLE: Tuple[MeasureOption, ...] = (
    MeasureOption("timeout_s", "float", DEFAULT_TIMEOUT_S,
                  f"kill the measurement after this long (default {DEFAULT_TIMEOUT_S:g})", 1e-3, 86400.0),
    MeasureOption("memory_limit_mb", "int", None,
                  "address-space limit of the measuring process (default 80%% of RAM; 0: none)", 0, 2**40),
)
MEASURE_OPTIONS = tuple(option.name for option in MEASURE_OPTION_TABLE)

OPS = ("hello", "info", "has_model", "upload", "measure")

#: Fields every request may carry; ``token`` authenticates a TCP connection (deploy/SECURITY.md).
COMMON_FIELDS = ("v", "op", "id", "token")
#: Further fields each op accepts. Anything else is refused, so no field is ever ignored.
OP_FIELDS = {
    "hello": (),
    "info": (),
    "has_model": ("sha256",),
    "upload": ("sha256", "data_b64"),
    "measure": ("sha256", "timeout_s", *MEASURE_OPTIONS),
}
#: (kind, low, high) of every numeric or flag field of a measure request: integers exclude
#: booleans, floats must be finite. The bounds are far beyond any sensible measurement and keep
#: a request from asking for one that never ends or allocates without limit.
FIELD_RULES: Dict[str, Tuple[str, float, float]] = {
    option.name: (option.kind, option.low, option.high)
    for option in (*MEASURE_OPTION_TABLE, LIMIT_OPTION_TABLE[0]) if option.kind != "str"
}
MAX_ID_CHARS = 128
MAX_POWER_NAME_CHARS = 64

#: Upper bound on one protocol line; a model travels base64-encoded inside an upload line.
MAX_LINE_BYTES = 512 * 1024 * 1024

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ProtocolError(Exception):
    """A line that is not a valid message of this protocol version.

    ``fatal`` when the stream can no longer be read line by line (a line over the size
    bound): the reader must close the connection rather than read on.
    """

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def is_sha256(text: Any) -> bool:
    """True for a lowercase hex sha256 digest: the only way a request may name a model."""
    return isinstance(text, str) and bool(_SHA256_RE.match(text))


def error(code: str, message: str) -> Dict[str, str]:
    """The ``error`` member of a result; rejects codes outside the documented set."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return {"code": code, "message": message}


def error_result(code: str, message: str, **extra: Any) -> Dict[str, Any]:
    """A complete failed result: keeps the shape of a success so callers need no special case."""
    result: Dict[str, Any] = {"protocol_version": PROTOCOL_VERSION, "error": error(code, message)}
    result.update(extra)
    return result


def encode(message: Dict[str, Any]) -> bytes:
    """One message as one line; the version is stamped so either side can refuse a mismatch."""
    body = dict(message)
    body.setdefault("v", PROTOCOL_VERSION)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number this protocol accepts")


def decode(line: bytes) -> Dict[str, Any]:
    """Parse one line; raises ProtocolError for anything but a JSON object of our version.

    NaN and Infinity (which Python's json accepts by default) and nesting deep enough to
    exhaust the parser's recursion are refused like any other malformed line.
    """
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not a JSON line: {str(exc)[:200]}") from None
    except RecursionError:
        raise ProtocolError("not a JSON line: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {message.get('v')!r} does not match the agent's {PROTOCOL_VERSION}; "
            "install the same device_agent version on host and board (hostside boards install)"
        )
    return message


def read_message(stream: BinaryIO) -> Optional[Dict[str, Any]]:
    """Read one message from a binary stream; None at a clean end of stream."""
    line = stream.readline(MAX_LINE_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"message longer than {MAX_LINE_BYTES} bytes", fatal=True)
    return decode(line)


def validate_request(message: Dict[str, Any]) -> Optional[str]:
    """Why a request is refused, or None when it is acceptable.

    Models are named only by sha256 digest, so no request can make the agent open a path of
    its choosing outside the model cache.
    """
    op = message.get("op")
    if not isinstance(op, str) or op not in OPS:
        return f"unknown op {str(op)[:40]!r}; expected one of {', '.join(OPS)}"
    for forbidden in ("path", "model_path", "model"):
        if forbidden in message:
            return f"field {forbidden!r} is not accepted: name the model by its sha256 in the cache"
    unknown = sorted(str(k)[:40] for k in message if k not in COMMON_FIELDS and k not in OP_FIELDS[op])
    if unknown:
        return f"{op} does not accept the field(s) {', '.join(unknown)}"
    if op in ("has_model", "upload", "measure") and not is_sha256(message.get("sha256")):
        return "models are named by their sha256 (64 lowercase hex digits), never by a path"
    for key in ("id", "token"):
        value = message.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_ID_CHARS):
            return f"{key!r} must be a string of at most {MAX_ID_CHARS} characters"
    if op == "upload" and not isinstance(message.get("data_b64"), str):
        return "upload needs 'data_b64' (the model file, base64-encoded)"
    if op == "measure":
        for key, rule in FIELD_RULES.items():
            refusal = _check_field(key, message.get(key), rule)
            if refusal:
                return refusal
        power = message.get("power")
        if power is not None and (not isinstance(power, str) or not power or len(power) > MAX_POWER_NAME_CHARS):
            return f"'power' must name one of the board's power sources (a string of at most {MAX_POWER_NAME_CHARS} characters)"
    return None


def _check_field(key: str, value: Any, rule: Tuple[str, float, float]) -> Optional[str]:
    """Why one typed field is refused, or None; an absent (null) field takes its default."""
    if value is None:
        return None
    kind, low, high = rule
    if kind == "bool":
        return None if isinstance(value, bool) else f"{key!r} must be true or false"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key!r} must be an integer from {low:g} to {high:g}"
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{key!r} must be a finite number of seconds from {low:g} to {high:g}"
    if not low <= value <= high:
        return f"{key!r} must be from {low:g} to {high:g}, not {value!r}"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify_exit(returncode: int, killed_for_time: bool) -> Dict[str, str]:
    """Error for a measuring process that died without printing its JSON result.

    ``returncode`` is negative for a signal (subprocess) or 128+N (a shell over SSH).
    """
    signum = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else 0)
    if killed_for_time or signum == signal.SIGALRM:
        return error("timeout", "the measurement exceeded its time limit and was stopped; raise --timeout-s or use fewer --runs")
    if signum == signal.SIGKILL:
        return error("out_of_memory", "the measuring process was killed (SIGKILL), most likely by the kernel's OOM killer")
    if signum == signal.SIGILL:
        return error(
            "runtime_error",
            "onnxruntime died with 'Illegal instruction' (SIGILL): this wheel does not match the CPU; "
            "install another onnxruntime release (hostside boards install tells which)",
        )
    if signum:
        return error("runtime_error", f"the measuring process crashed with {_signal_name(signum)}")
    return error("runtime_error", f"the measuring process exited {returncode} without a result")


# -- measurement options: defaults, command lines ---------------------------------------------

_OPTIONS_BY_NAME = {option.name: option for option in (*MEASURE_OPTION_TABLE, *LIMIT_OPTION_TABLE)}


def with_defaults(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Every measurement option and limit, ``options`` over the declared defaults (None kept
    as given means "the default"). An unknown name is a caller's mistake: TypeError."""
    unknown = sorted(set(options) - set(_OPTIONS_BY_NAME))
    if unknown:
        raise TypeError(f"unknown measurement option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS_BY_NAME)}")
    merged = {name: option.default for name, option in _OPTIONS_BY_NAME.items()}
    merged.update({k: v for k, v in options.items() if v is not None})
    return merged


def option_type(option: MeasureOption) -> Any:
    """The argparse ``type`` of ``option``: its kind and bounds, refused in one line."""

    def convert(text: str) -> Any:
        try:
            value = int(text) if option.kind == "int" else float(text)
        except ValueError:
            kind = "an integer" if option.kind == "int" else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if option.kind == "float" and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if not option.low <= value <= option.high:
            raise argparse.ArgumentTypeError(f"must be from {option.low:g} to {option.high:g}, not {text}")
        return value

    return None if option.kind in ("str", "bool") else convert


def add_measure_arguments(parser: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """The command-line flags of the options called ``names`` (default: every measurement
    option and limit), for ``device-agent measure`` and the host's ``hostside measure``."""
    groups: Dict[str, Any] = {}
    for name in names or _OPTIONS_BY_NAME:
        option = _OPTIONS_BY_NAME[name]
        target = parser
        if option.exclusive:
            if option.exclusive not in groups:
                groups[option.exclusive] = parser.add_mutually_exclusive_group()
            target = groups[option.exclusive]
        flags = (option.cli_flag, *option.aliases)
        if option.kind == "bool":
            target.add_argument(*flags, dest=name, action="store_true", help=option.help)
        else:
            target.add_argument(*flags, dest=name, type=option_type(option), default=option.default,
                                metavar=option.metavar, help=option.help)


def options_from_args(args: argparse.Namespace, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The options ``add_measure_arguments`` declared, read back from parsed arguments."""
    return {name: getattr(args, name) for name in names or _OPTIONS_BY_NAME if hasattr(args, name)}


def _non_defaults(options: Mapping[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    """The options among ``names`` whose value differs from the declared default; ``idle_s``
    only with a power source, the only thing it applies to."""
    merged = with_defaults(options)
    return {name: merged[name] for name in names
            if merged[name] is not None and merged[name] != _OPTIONS_BY_NAME[name].default
            and not (name == "idle_s" and not merged.get("power"))}


def request_fields(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of a measure request for ``options``: what differs from the defaults (an
    agent older than an option still accepts a request that leaves it at its default), and the
    time limit always, so a daemon started with another ``--timeout-s`` keeps the host's."""
    return {**_non_defaults(options, MEASURE_OPTIONS), "timeout_s": with_defaults(options)["timeout_s"]}


def agent_flags(options: Mapping[str, Any]) -> List[str]:
    """``device-agent measure`` flags for ``options`` (a one-shot measurement over SSH).

    Only values that differ from the declared defaults are written, so a measurement with the
    defaults is a short command line an older agent also understands.
    """
    flags: List[str] = []
    for name, value in _non_defaults(options, tuple(_OPTIONS_BY_NAME)).items():
        option = _OPTIONS_BY_NAME[name]
        flags += [option.cli_flag] if option.kind == "bool" else [option.cli_flag, str(value)]
    return flags


# -- shared helpers the host also needs --------------------------------------------------------

def file_sha256(path: Union[str, Path]) -> str:
    """Digest of a file read in blocks: the name a model has in the agent's cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def device_key(facts: Mapping[str, Any]) -> str:
    """A short key naming the kind of board (from ``device-agent info``), so boards of one
    kind can share a pool and a calibration."""
    model = (facts.get("cpu_model") or "unknown-cpu").lower()
    slug = "".join(ch if ch.isalnum() else "-" for ch in model)
    slug = "-".join(part for part in slug.split("-") if part)
    return f"{facts.get('architecture') or 'unknown-arch'}-{slug}-{facts.get('cores') or 0}c"
