"""``device-agent serve``: the long-running agent, reached from the host through SSH.

It listens on 127.0.0.1 or a Unix socket only: the host reaches it through an SSH channel,
so SSH authenticates the host. A loopback port is open to every local process of the board
as well, so a TCP connection must also present the daemon's token, a random secret written
at each start to a file only the agent's user (or, by ``--token-mode 0640``, its group) can
read; the host reads it over SSH. A Unix socket (mode 0600) is guarded by the kernel instead.
Requests are checked field by field (deploy/SECURITY.md): a malformed one gets a
``bad_request`` reply and the daemon keeps answering. Each measurement runs
in a child process (``python -m device_agent worker``, started ahead of time so its imports
are paid before the request arrives) with a time and memory limit, so a model that crashes
onnxruntime or does not fit in RAM becomes an error result and the daemon lives on.
Measurements are serialized (one at a time per board; others wait their turn) and models are
cached by sha256, so each model crosses the link once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from device_agent import __version__, store, system
from device_agent.config import AgentConfig, ConfigError, resolve_power
from device_agent.protocol import (
    PROTOCOL_VERSION,
    MEASURE_OPTIONS,
    ProtocolError,
    classify_exit,
    encode,
    error_result,
    read_message,
    validate_request,
)

DEFAULT_PORT = 47800
#: Extra seconds the daemon grants a child beyond its own alarm before killing its group.
KILL_GRACE_S = 5.0
#: Results kept by request id, so a request retried after a dropped link is answered once.
REPLAY_CACHE_SIZE = 64
TOKEN_FILE_NAME = "daemon.token"


@dataclass
class DaemonConfig:
    port: Optional[int] = None
    socket_path: Optional[str] = None
    timeout_s: float = 600.0
    memory_limit_mb: Optional[int] = None
    thermal_guard_c: Optional[float] = None
    thermal_guard_max_wait_s: float = 600.0
    thermal_poll_s: float = 2.0
    agent_config: AgentConfig = field(default_factory=AgentConfig)
    #: Where a TCP daemon writes its token (default ``$DEVICE_AGENT_HOME/daemon.token``).
    token_file: Optional[str] = None
    token_mode: int = 0o600


def worker_request(
    model: Path, request: Dict[str, Any], timeout_s: float, memory_limit_mb: Optional[int], power_spec: Optional[str]
) -> Dict[str, Any]:
    """What a worker is told: the cached model's path and the power source's spec (both chosen
    here from the board's own state, never by the client), the options and the limits."""
    options = {k: request[k] for k in MEASURE_OPTIONS if request.get(k) is not None and k != "power"}
    return {**options, "power": power_spec, "model": str(model), "timeout_s": timeout_s, "memory_limit_mb": memory_limit_mb}


def start_worker() -> subprocess.Popen:
    """A measuring child in its own process group, importing onnxruntime while it waits."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("DEVICE_AGENT_REPORT_PGID", None)
    env.pop("DEVICE_AGENT_EXIT_WITH_STDIN", None)  # a worker's stdin closes once it has its request
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent", "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def run_worker(worker: subprocess.Popen, request: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
    """Hand one request to a worker and wait for its result; always returns a result dict."""
    killed_for_time = False
    payload = (json.dumps(request) + "\n").encode("utf-8")
    try:
        stdout, stderr = worker.communicate(payload, timeout=timeout_s + KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        killed_for_time = True
        os.killpg(worker.pid, signal.SIGKILL)
        stdout, stderr = worker.communicate()
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    if lines and not killed_for_time:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    result = error_result("runtime_error", "no result")
    result["error"] = classify_exit(worker.returncode, killed_for_time)
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    if tail:
        result["stderr_tail"] = tail
    return result


class Agent:
    """Request handling, independent of the socket type so tests can drive it directly."""

    def __init__(self, config: DaemonConfig, token: Optional[str] = None) -> None:
        self.config = config
        #: The secret a TCP client must present; None where the transport is trusted (Unix socket).
        self.token = token
        self.memory_limit_mb = config.memory_limit_mb or system.default_memory_limit_mb()
        self._measure_lock = threading.Lock()
        self._finished: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
        self._spare: Optional[subprocess.Popen] = None

    def prestart(self) -> None:
        """Start the first worker now, so even the first measurement finds one warm."""
        self._spare = start_worker()

    def _take_worker(self) -> subprocess.Popen:
        """The pre-started worker if it is still waiting, else a fresh one."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is None:
            return spare
        return start_worker()

    def close(self) -> None:
        """Stop the spare worker (it would otherwise wait on its stdin forever)."""
        if self._spare is not None and self._spare.poll() is None:
            os.killpg(self._spare.pid, signal.SIGKILL)
            self._spare.wait()
        self._spare = None

    def authenticates(self, request: Dict[str, Any]) -> bool:
        """Whether a request carries the daemon's token (always true without one)."""
        if self.token is None:
            return True
        offered = request.get("token")
        return isinstance(offered, str) and hmac.compare_digest(offered.encode("utf-8"), self.token.encode("utf-8"))

    def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """One reply for one request, whatever it holds: a bug while handling it becomes a
        ``runtime_error`` reply rather than a closed connection."""
        refusal = validate_request(request)
        if refusal:
            return error_result("bad_request", refusal)
        try:
            return self._dispatch(request)
        except Exception as exc:  # the daemon must outlive any request; the reply says what broke
            return error_result("runtime_error", f"the agent failed on this request: {type(exc).__name__}: {str(exc)[:200]}")

    def _dispatch(self, request: Dict[str, Any]) -> Dict[str, Any]:
        op = request["op"]
        if op == "hello":
            return {"agent_version": __version__, "protocol_version": PROTOCOL_VERSION, "pid": os.getpid(), "error": None}
        if op == "info":
            return {**system.info(), "error": None}
        if op == "has_model":
            return {"cached": store.has_model(request["sha256"]), "error": None}
        if op == "upload":
            return self._upload(request)
        return self._measure(request)

    def _upload(self, request: Dict[str, Any]) -> Dict[str, Any]:
        try:
            data = base64.b64decode(request["data_b64"], validate=True)
            store.store_model(request["sha256"], data)
        except (ValueError, binascii.Error) as exc:
            return error_result("upload_error", str(exc))
        except OSError as exc:
            return error_result("upload_error", f"cannot write the model cache {store.models_dir()}: {exc}")
        return {"cached": True, "size_bytes": len(data), "error": None}

    def _wait_until_cool(self) -> Optional[float]:
        """Thermal guard: block until the CPU is below the threshold; returns seconds waited."""
        limit = self.config.thermal_guard_c
        if limit is None:
            return None
        start = time.perf_counter()
        while time.perf_counter() - start < self.config.thermal_guard_max_wait_s:
            temp = system.temperature_c(system.system_root())
            if temp is None or temp < limit:
                break
            time.sleep(self.config.thermal_poll_s)
        return time.perf_counter() - start

    def _measure(self, request: Dict[str, Any]) -> Dict[str, Any]:
        power_spec = None
        if request.get("power") is not None:
            try:
                power_spec = resolve_power(request["power"], self.config.agent_config)
            except ConfigError as exc:
                return error_result("bad_request", str(exc))
        model = store.model_path(request["sha256"])
        if not model.is_file():
            return error_result("upload_error", f"model {request['sha256'][:12]} is not in the agent's cache; upload it first")
        timeout_s = min(float(request.get("timeout_s") or self.config.timeout_s), self.config.timeout_s)
        queued = time.perf_counter()
        request_id = request.get("id")
        with self._measure_lock:
            queue_wait_s = time.perf_counter() - queued
            if isinstance(request_id, str) and request_id in self._finished:
                # The host lost its link while this request ran and asked again: hand back the
                # result already measured instead of measuring (and counting) it twice.
                return {**self._finished[request_id], "replayed": True}
            cooled_s = self._wait_until_cool()
            worker = self._take_worker()
            job = worker_request(model, request, timeout_s, self.memory_limit_mb, power_spec)
            result = run_worker(worker, job, timeout_s)
            self._spare = start_worker()  # warms up after, not during, the measurement
            if isinstance(request_id, str):
                self._finished[request_id] = result
                while len(self._finished) > REPLAY_CACHE_SIZE:
                    self._finished.popitem(last=False)
        result["queue_wait_s"] = queue_wait_s + float(result.get("queue_wait_s") or 0.0)
        result["thermal_guard_wait_s"] = cooled_s
        return result


class _Handler(socketserver.StreamRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        """Serve one connection. A malformed line is answered and the next one read; a
        connection whose first request lacks the token is answered ``unauthorized`` and closed."""
        agent = self.server.agent
        authenticated = agent.token is None
        while True:
            try:
                request = read_message(self.rfile)
            except ProtocolError as exc:
                if not self._reply(error_result("bad_request", str(exc))) or exc.fatal:
                    return
                continue
            except OSError:
                return
            if request is None:
                return
            if not authenticated:
                if not agent.authenticates(request):
                    self._reply(error_result(
                        "unauthorized",
                        "this daemon answers only clients that present its token (the file "
                        f"{TOKEN_FILE_NAME} in the agent's home, readable by the agent's user); see deploy/SECURITY.md",
                    ))
                    return
                authenticated = True
            response = agent.handle(request)
            if isinstance(request.get("id"), str):
                response["id"] = request["id"]
            if not self._reply(response):
                return

    def _reply(self, response: Dict[str, Any]) -> bool:
        try:
            self.wfile.write(encode(response))
            self.wfile.flush()
            return True
        except OSError:
            return False


class _Server:
    agent: Agent


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer, _Server):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer, _Server):
    daemon_threads = True


def token_path(config: DaemonConfig) -> Path:
    return Path(config.token_file) if config.token_file else store.agent_home() / TOKEN_FILE_NAME


def write_token(path: Path, mode: int) -> str:
    """A fresh random token, written atomically with ``mode`` from the first byte (never
    briefly world-readable), replacing the previous start's."""
    token = secrets.token_hex(32)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed the group bit of 0640
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.replace(partial, path)
    return token


def make_server(config: DaemonConfig) -> socketserver.BaseServer:
    """Bind 127.0.0.1:port or a Unix socket (mode 0600); never any other address. A TCP server
    gets a fresh token, written once the port is bound (a second daemon failing to bind must
    not replace the live one's token) and before it listens."""
    token = None
    if config.socket_path:
        path = Path(config.socket_path)
        if path.is_socket():
            path.unlink()
        old_umask = os.umask(0o177)  # the socket is created 0600, with no window of a wider mode
        try:
            server: Any = _UnixServer(str(path), _Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
    else:
        address = ("127.0.0.1", config.port if config.port is not None else DEFAULT_PORT)
        server = _TcpServer(address, _Handler, bind_and_activate=False)
        try:
            server.server_bind()
            token = write_token(token_path(config), config.token_mode)
            server.server_activate()  # listen only now: whoever finds the port open finds the token
        except OSError:
            server.server_close()
            raise
    server.agent = Agent(config, token)
    server.agent.prestart()
    return server


def _listen_problem(config: DaemonConfig) -> Optional[str]:
    if config.port is not None and not 1 <= config.port <= 65535:
        return f"--port {config.port} is not a TCP port; choose one from 1 to 65535 (default {DEFAULT_PORT})"
    for name, value in (("--timeout-s", config.timeout_s), ("--thermal-guard-c", config.thermal_guard_c)):
        if value is not None and not (value == value and abs(value) != float("inf") and value > 0):
            return f"{name} {value} must be a positive finite number"
    if config.memory_limit_mb is not None and config.memory_limit_mb < 0:
        return f"--memory-limit-mb {config.memory_limit_mb} must be 0 (no limit) or more"
    return None


def serve(config: DaemonConfig) -> int:
    problem = _listen_problem(config)
    if problem:
        print(f"device-agent: error: {problem}", file=sys.stderr)
        return 2
    try:
        server = make_server(config)
    except OSError as exc:
        where = config.socket_path or f"127.0.0.1:{config.port if config.port is not None else DEFAULT_PORT}"
        print(
            f"device-agent: error: cannot listen on {where} or write its token ({exc.strerror or exc}); is another "
            "agent running (systemctl status device-agent)? choose another --port or --socket",
            file=sys.stderr,
        )
        return 2
    where = config.socket_path or "127.0.0.1:%d" % server.server_address[1]
    auth = "" if config.socket_path else f", token in {token_path(config)}"
    print(f"device-agent {__version__} serving on {where} (protocol {PROTOCOL_VERSION}{auth})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.agent.close()
    return 0
