"""A board as the rest of the host sees it: ``info()`` and ``measure()``, never raising for a
failed measurement.

Like TVM's runner, a measurement returns a result with an error code rather than raising:
only a board that cannot be reached or configured at all raises :class:`UserError`. A link
that drops mid-measurement is reconnected and the measurement retried; the daemon answers a
retried request id with the result it already has, so a result is reported exactly once.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

from device_agent.protocol import (agent_flags, classify_exit, device_key, error, error_result,
                                   file_sha256, request_fields, with_defaults)
from hostside.boards.daemon_client import DaemonClient
from hostside.boards.inventory import LOCAL, BoardConfig
from hostside.boards.transport import CommandTimeout, ExecResult, LinkDown, LocalTransport, Transport
from hostside.errors import UserError
from hostside.paths import hostside_home
from hostside.safe_io import check_file

#: Seconds granted beyond the agent's own time limit before the host gives up on a command.
HOST_GRACE_S = 30.0
RETRY_BACKOFF_S = (1.0, 2.0, 4.0)
#: Models above this size go over SFTP rather than inline in a protocol line.
INLINE_UPLOAD_MAX_BYTES = 64 * 1024 * 1024


#: What a process that ran into its address-space limit prints: a shared object it could not
#: map or an allocation that failed. Under ``--memory-limit-mb`` an import fails this way too,
#: which must not be read as a missing package.
_OUT_OF_MEMORY_MARKERS = ("failed to map segment", "cannot allocate memory", "memoryerror", "bad_alloc", "out of memory")


def looks_out_of_memory(text: str) -> bool:
    """True when an agent's output says it ran out of (limited) memory."""
    lowered = text.lower()
    return any(marker in lowered for marker in _OUT_OF_MEMORY_MARKERS)


def _last_json(text: str) -> Optional[Dict[str, Any]]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _token_file_missing(transport: Transport, problem: str) -> bool:
    """Whether the daemon's token could not be read because no candidate file exists (the
    SSH transport's ``token_problem`` then starts with "no daemon token"), rather than for
    lack of permission: the two need different fixes."""
    return bool(getattr(transport, "token_candidates", None)) and problem.startswith("no daemon token")


class Board:
    """One board (or this machine, ``local``) reached through one transport."""

    def __init__(self, name: str, config: Optional[BoardConfig]) -> None:
        self.name = name
        self.config = config
        self._transport: Optional[Transport] = None
        self._info: Optional[Dict[str, Any]] = None
        #: Why a daemon that listens could not be used (its token unreadable or refused), or None.
        self.daemon_problem: Optional[str] = None
        #: Whether something accepted a connection on the daemon's port (usable or not).
        self.daemon_listens = False
        #: Whether that daemon's token file is absent (deleted, or the daemon keeps it elsewhere).
        self.daemon_token_missing = False

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> Transport:
        if self._transport is not None and self._transport.is_alive():
            return self._transport
        self._drop()
        if self.config is None:
            self._transport = LocalTransport(hostside_home() / "local-agent")
        else:
            from hostside.boards.ssh import SSHTransport  # paramiko only when a remote board is used

            self._transport = SSHTransport(self.config)
        return self._transport

    def _drop(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception:  # closing a broken connection may fail in many ways; it is gone anyway
                pass
            self._transport = None

    def connect(self) -> None:
        """Open the connection now rather than at the first request (UserError if unreachable)."""
        self._connect()

    def call_off(self) -> None:
        """From another thread: end the measurement running now, whose asker is gone (the
        control process's client died); ``measure`` then raises ``Cancelled``."""
        transport = self._transport
        if transport is not None and transport.cancelled is not None:
            transport.cancelled.set()

    def close(self) -> None:
        self._drop()

    def transport_alive(self) -> bool:
        return self._transport is not None and self._transport.is_alive()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Board({self.name!r})"

    # -- facts ------------------------------------------------------------------------------

    def _agent_missing(self, result: ExecResult) -> Optional[UserError]:
        """A UserError when the board lacks Python or the agent, None otherwise."""
        text = result.stderr + result.stdout
        if looks_out_of_memory(text):
            return None  # the memory limit made an import fail; the package is there
        python = self.config.python if self.config else "python"
        if result.returncode == 127 or "not found" in text and python in text:
            return UserError(
                f"board {self.name!r} has no Python at {python!r}; install python3 (sudo apt install python3) "
                f"or set python = \"/path/to/python3\" for this board in boards.toml"
            )
        if "No module named device_agent" in text or "No module named 'device_agent'" in text:
            return UserError(f"board {self.name!r} has no device agent; run `hostside boards install {self.name}`")
        if "No module named" in text and ("numpy" in text or "onnxruntime" in text):
            return UserError(
                f"board {self.name!r} lacks numpy or onnxruntime ({text.strip().splitlines()[-1]}); "
                f"`hostside boards install {self.name}` says how to install them"
            )
        return None

    def info(self) -> Dict[str, Any]:
        """The board's ``device-agent info`` JSON (cached for this object's lifetime)."""
        if self._info is None:
            self._info = self._with_retries(self._info_once)
        return self._info

    def _info_once(self) -> Dict[str, Any]:
        result = self._connect().run_agent(["info", "--json"], timeout_s=60.0)
        facts = _last_json(result.stdout)
        if result.returncode != 0 or facts is None:
            raise self._agent_missing(result) or UserError(
                f"board {self.name!r}: `device-agent info` failed ({result.stderr.strip()[-300:]}); "
                f"reinstall the agent with `hostside boards install {self.name}`"
            )
        return facts

    def daemon(self) -> Optional[Dict[str, Any]]:
        """The daemon's hello (version, pid) when one listens on the board, else None."""
        if self.config is None:
            return None
        client = self._daemon_client(self._connect())
        if client is None:
            return None
        try:
            hello = client.request({"op": "hello"}, 30.0)
        finally:
            client.close()
        if (hello.get("error") or {}).get("code") == "unauthorized":
            self.daemon_problem = f"the daemon on {self.name} refused the token: {hello['error']['message']}"
            return None
        return hello

    def _daemon_client(self, transport: Transport) -> Optional[DaemonClient]:
        """An authenticated connection to the board's daemon, or None when none listens or
        its token cannot be read (then ``daemon_problem`` says why)."""
        port = self.config.daemon_port if self.config is not None else None
        stream = transport.open_daemon(port) if port else None
        self.daemon_listens = stream is not None
        self.daemon_token_missing = False
        if stream is None:
            return None
        token = transport.daemon_token()
        if token is None:
            self.daemon_problem = getattr(transport, "token_problem", None) or "the daemon's token cannot be read"
            self.daemon_token_missing = _token_file_missing(transport, self.daemon_problem)
            stream.close()
            return None
        return DaemonClient(stream, transport.is_alive, self.name, token)

    @property
    def key(self) -> str:
        """Device kind (architecture, CPU model, cores): boards with one key can share a pool."""
        if self.config is not None and self.config.device_key:
            return self.config.device_key
        return device_key(self.info())

    def _with_retries(self, operation: Any) -> Any:
        retries = self.config.retries if self.config is not None else 0
        for attempt in range(retries + 1):
            try:
                return operation()
            except LinkDown as exc:
                self._drop()
                if attempt == retries:
                    raise UserError(f"board {self.name!r}: connection lost ({exc}); check the board and network") from None
                time.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
        raise AssertionError("unreachable")

    # -- measuring --------------------------------------------------------------------------

    def measure(self, model_path: Any, **options: Any) -> Dict[str, Any]:
        """Measure one ONNX model on this board: the agent's JSON plus ``host`` timings.

        ``options`` are the measurement options and limits of
        ``device_agent.protocol.MEASURE_OPTION_TABLE`` / ``LIMIT_OPTION_TABLE`` (threads, warmup,
        runs or min_time_s, power, idle_s, spinning, seed, keep_samples, batch, timeout_s,
        memory_limit_mb); what is not given takes the declared default.

        ``batch`` other than 1 needs a model with a dynamic batch axis; a latency is then one
        run of ``batch`` images. It is sent only when not 1, so batch-1 measurements still work
        with an agent older than the option.

        A failed measurement comes back with ``error = {"code", "message"}``; the codes are
        ``device_agent.protocol.ERROR_CODES``. A dropped link is retried (``host.attempts``).
        """
        path = check_file(model_path, "model file")
        from hostside.onnx.load import self_contained

        with self_contained(path) as whole:  # external data travels inside a private one-file copy
            if whole != path:
                result = self.measure(whole, **options)
                if result.get("error"):
                    message = result["error"]["message"].replace(str(whole), str(path))
                    result["error"] = {**result["error"], "message": message}
                return result
        if self._transport is not None and self._transport.cancelled is not None:
            self._transport.cancelled.clear()  # a call-off meant for an earlier measurement
        options = with_defaults(options)
        sha256 = file_sha256(path)
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        retries = self.config.retries if self.config is not None else 0
        attempts = 0
        last_link_error = ""
        result: Optional[Dict[str, Any]] = None
        for attempt in range(retries + 1):
            attempts += 1
            try:
                result = self._measure_once(path, sha256, request_id, options)
                break
            except CommandTimeout as exc:  # the board is up but did not answer in time
                result = error_result("timeout", str(exc))
                break
            except LinkDown as exc:
                last_link_error = str(exc)
                self._drop()
            except UserError:
                if attempt == 0:
                    raise  # the board cannot be reached or configured at all
                self._drop()  # it was reachable a moment ago: count the failed reconnect as a link error
                last_link_error = f"reconnecting to {self.name} failed"
            if attempt < retries:
                time.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
        if result is None:
            result = error_result(
                "connection_error",
                f"lost the connection to board {self.name!r} {attempts} times ({last_link_error}); check the board and network",
            )
            result["host"] = {}
        if result.get("error"):
            # Name the user's file, not its cache name on the board.
            message = re.sub(r"\S*" + sha256 + r"\.onnx", str(path), result["error"]["message"])
            result["error"] = {**result["error"], "message": message}
        host = result.setdefault("host", {})
        host.update(board=self.name, attempts=attempts, total_s=time.perf_counter() - started)
        host.setdefault("upload_s", 0.0)
        host["queue_wait_s"] = float(result.get("queue_wait_s") or 0.0)
        return result

    def _measure_once(self, path: Path, sha256: str, request_id: str, options: Dict[str, Any]) -> Dict[str, Any]:
        transport = self._connect()
        for fresh_token in (False, True):
            if fresh_token:
                # The daemon restarted with a new token since it was read: read it once more.
                transport.daemon_token(refresh=True)
            client = self._daemon_client(transport)
            if client is None:
                break
            try:
                result = self._measure_with_daemon(client, path, sha256, request_id, options)
            finally:
                client.close()
            if (result.get("error") or {}).get("code") != "unauthorized":
                return result
            self.daemon_problem = f"the daemon on {self.name} refused the token: {result['error']['message']}"
        return self._measure_one_shot(transport, path, sha256, options)

    def _measure_with_daemon(
        self, client: DaemonClient, path: Path, sha256: str, request_id: str, options: Dict[str, Any]
    ) -> Dict[str, Any]:
        upload_s = 0.0
        cached = client.request({"op": "has_model", "sha256": sha256}, 30.0)
        if (cached.get("error") or {}).get("code") == "unauthorized":
            return cached
        if not cached.get("cached"):
            size = path.stat().st_size
            if size > INLINE_UPLOAD_MAX_BYTES:
                return error_result("upload_error", f"{path.name} is {size} bytes; the daemon accepts models up to {INLINE_UPLOAD_MAX_BYTES}")
            started = time.perf_counter()
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            reply = client.request({"op": "upload", "sha256": sha256, "data_b64": data}, 300.0)
            upload_s = time.perf_counter() - started
            if reply.get("error"):
                return {**reply, "host": {"path": "daemon", "upload_s": upload_s}}
        request = {"op": "measure", "sha256": sha256, "id": request_id}
        request.update(request_fields(options))
        timeout_s = float(options["timeout_s"])
        result = client.request(request, 2 * timeout_s + HOST_GRACE_S)
        result.pop("id", None)
        result["host"] = {"path": "daemon", "upload_s": upload_s}
        return result

    def _measure_one_shot(self, transport: Transport, path: Path, sha256: str, options: Dict[str, Any]) -> Dict[str, Any]:
        remote_model = f"{transport.agent_dir.rstrip('/')}/models/{sha256}.onnx"
        upload_s = 0.0
        args = ["measure", remote_model, "--json", *agent_flags(options)]
        timeout_s = float(options["timeout_s"])
        try:
            run = transport.run_agent_on_file(args, remote_model, timeout_s + HOST_GRACE_S)
            if run is None:  # not cached on the board yet
                started = time.perf_counter()
                transport.put_file(path, remote_model)
                upload_s = time.perf_counter() - started
                run = transport.run_agent(args, timeout_s + HOST_GRACE_S)
        except CommandTimeout as exc:
            result = error_result("timeout", str(exc))
        else:
            result = _last_json(run.stdout)
            if result is None and run.returncode == 128 + signal.SIGHUP:
                raise LinkDown(f"the SSH session on {self.name} hung up during the measurement")
            if result is None:
                missing = self._agent_missing(run)
                if missing is not None:
                    raise missing
                result = error_result("runtime_error", "no result")
                result["error"] = self._no_result_error(run, options.get("memory_limit_mb"))
                result["stderr_tail"] = run.stderr.strip().splitlines()[-3:]
        result["host"] = {"path": "local" if self.config is None else "one-shot", "upload_s": upload_s}
        return result

    def _no_result_error(self, run: ExecResult, memory_limit_mb: Optional[int]) -> Dict[str, str]:
        """Why a one-shot agent printed no result: its memory limit, or how it exited."""
        if looks_out_of_memory(run.stderr + run.stdout):
            last = (run.stderr.strip().splitlines() or [""])[-1][-200:]
            limit = f"--memory-limit-mb {memory_limit_mb}" if memory_limit_mb else "the default memory limit (80% of RAM)"
            return error(
                "out_of_memory",
                f"the agent on {self.name} ran out of memory under {limit} ({last}); "
                "raise --memory-limit-mb or drop it (0: no limit)",
            )
        return classify_exit(run.returncode, killed_for_time=False)


def open_board(name: str) -> Board:
    """``local`` (this machine, no SSH) or a board from ``$HOSTSIDE_HOME/boards.toml``.

    Connects lazily: the first ``info``/``measure`` raises UserError if the board is unreachable.
    """
    from hostside.boards import inventory

    if name == LOCAL:
        return Board(LOCAL, None)
    return Board(name, inventory.get(name))

