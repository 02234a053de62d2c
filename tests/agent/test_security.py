"""The agent as a hostile local process or a careless host would use it.

A real ``device-agent serve`` on a loopback port: a request can never bring a command, the
TCP listener answers only clients holding its token, and every malformed request gets a
``bad_request`` reply while the daemon keeps answering.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from device_agent.daemon import Agent, DaemonConfig
from hostside.boards.loopback_sshd import free_port, wait_for_port


class Daemon:
    def __init__(self, home: Path, extra: List[str]) -> None:
        self.home = home
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "serve", "--port", str(self.port), "--memory-limit-mb", "2048",
             "--timeout-s", "60", *extra],
            env={**os.environ, "DEVICE_AGENT_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.port)
        self.token = (home / "daemon.token").read_text().strip()

    def connect(self, token: bool = True) -> "Conn":
        return Conn(self.port, self.token if token else None)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Conn:
    def __init__(self, port: int, token: Any) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.stream = self.sock.makefile("rwb")
        self.token = token

    def raw(self, line: bytes) -> Dict[str, Any]:
        self.stream.write(line.rstrip(b"\n") + b"\n")
        self.stream.flush()
        reply = self.stream.readline()
        assert reply, "the daemon closed the connection without a reply"
        return json.loads(reply)

    def send(self, message: Dict[str, Any]) -> Dict[str, Any]:
        body = {"v": 1, **message}
        if self.token is not None:
            body.setdefault("token", self.token)
        return self.raw(json.dumps(body).encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def daemon(agent_home: Path) -> Iterator[Daemon]:
    process = Daemon(agent_home, ["--power-source", f"meter=cmd:{sys.executable} -c print(2.5)"])
    yield process
    process.stop()


def _upload(conn: Conn, model: Path) -> str:
    data = model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert conn.send({"op": "upload", "sha256": digest, "data_b64": base64.b64encode(data).decode()})["cached"] is True
    return digest


def test_a_request_cannot_bring_a_power_command(daemon, conv_model, tmp_path):
    """The reported exploit: ``"power": "cmd:sh -c 'id > /tmp/x; echo 1.0'"`` ran as the agent's user."""
    marker = tmp_path / "pwned"
    conn = daemon.connect()
    digest = _upload(conn, conv_model)
    for power in (f"cmd:sh -c 'id > {marker}; echo 1.0'", f"cmd:touch {marker}", "meter; touch x", "../meter"):
        reply = conn.send({"op": "measure", "sha256": digest, "runs": 3, "power": power})
        assert reply["error"]["code"] == "bad_request", reply
        assert "never brings a command" in reply["error"]["message"] or "at most 64" in reply["error"]["message"]
    assert not marker.exists()
    unknown = conn.send({"op": "measure", "sha256": digest, "runs": 3, "power": "othermeter"})
    assert unknown["error"]["code"] == "bad_request" and "declares: meter" in unknown["error"]["message"]
    declared = conn.send({"op": "measure", "sha256": digest, "runs": 3, "power": "meter", "idle_s": 0.2})
    assert declared["error"] is None, declared["error"]
    assert declared["power"]["source"] == f"cmd:{sys.executable}" and declared["power"]["idle_w"] == pytest.approx(2.5, rel=0.2)
    conn.close()


def test_tcp_clients_without_the_token_are_refused(daemon):
    mode = stat.S_IMODE((daemon.home / "daemon.token").stat().st_mode)
    assert mode == 0o600
    assert len(daemon.token) == 64
    for token in (None, "0" * 64, 12345):
        conn = daemon.connect(token=False)
        message: Dict[str, Any] = {"op": "info"}
        if token is not None:
            message["token"] = token
        reply = conn.send(message)
        assert reply["error"]["code"] == "unauthorized", reply
        assert conn.stream.readline() == b""  # and the connection is closed
        conn.close()
    conn = daemon.connect()
    assert conn.send({"op": "hello"})["error"] is None
    assert conn.raw(b'{"v":1,"op":"hello"}')["error"] is None  # authenticated once per connection
    conn.close()


def test_a_second_daemon_on_a_busy_port_keeps_the_live_token(daemon, agent_home):
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "serve", "--port", str(daemon.port)],
        env={**os.environ, "DEVICE_AGENT_HOME": str(agent_home)}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "cannot listen" in done.stderr
    assert (agent_home / "daemon.token").read_text().strip() == daemon.token


MALFORMED_LINES = [
    b'{"v":1,"op":"measure","sha256":"SHA","timeout_s":"abc"}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":NaN}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":Infinity}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":-Infinity}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":1e400}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":-1}',
    b'{"v":1,"op":"measure","sha256":"SHA","min_time_s":"2"}',
    b'{"v":1,"op":"measure","sha256":"SHA","idle_s":NaN}',
    b'{"v":1,"op":"measure","sha256":"SHA","timeout_s":0}',
    b'{"v":1,"op":"measure","sha256":"SHA","seed":"x"}',
    b'{"v":1,"op":"measure","sha256":"SHA","seed":-1}',
    b'{"v":1,"op":"measure","sha256":"SHA","seed":1.5}',
    b'{"v":1,"op":"measure","sha256":"SHA","seed":' + b"9" * 5000 + b"}",
    b'{"v":1,"op":"measure","sha256":"SHA","runs":true}',
    b'{"v":1,"op":"measure","sha256":"SHA","runs":0}',
    b'{"v":1,"op":"measure","sha256":"SHA","runs":100000000000}',
    b'{"v":1,"op":"measure","sha256":"SHA","threads":0}',
    b'{"v":1,"op":"measure","sha256":"SHA","warmup":[1]}',
    b'{"v":1,"op":"measure","sha256":"SHA","spinning":"yes"}',
    b'{"v":1,"op":"measure","sha256":"SHA","power":{"cmd":"id"}}',
    b'{"v":1,"op":"measure","sha256":"SHA","surprise":1}',
    b'{"v":1,"op":"measure","sha256":"SHA","id":{"a":1}}',
    b'{"v":1,"op":"upload","sha256":"SHA","data_b64":5}',
    b'{"v":1,"op":["measure"]}',
    b'{"v":1,"op":"measure","sha256":"SHA","x":' + b"[" * 100000 + b"]" * 100000 + b"}",
    b"[" * 100000,
    b'{"v":1,"op":"hello"' + b"\xff\xfe" + b"}",
    b"null",
    b"garbage",
]


def test_every_malformed_request_gets_a_bad_request_reply_and_the_daemon_answers_on(daemon, conv_model):
    conn = daemon.connect()
    digest = _upload(conn, conv_model).encode()
    for line in MALFORMED_LINES:
        body = line.replace(b"SHA", digest)
        if body.startswith(b'{"v":1,') and b"\xff" not in body:
            body = body.replace(b'{"v":1,', b'{"v":1,"token":"' + daemon.token.encode() + b'",', 1)
        reply = conn.raw(body)
        assert reply["error"]["code"] in ("bad_request", "unauthorized"), (body[:80], reply)
        if reply["error"]["code"] == "unauthorized":  # the line could not carry a token: reconnect
            conn.close()
            conn = daemon.connect()
        assert "Traceback" not in json.dumps(reply)
    assert conn.send({"op": "measure", "sha256": digest.decode(), "runs": 3})["error"] is None
    conn.close()
    assert daemon.process.poll() is None


def test_the_agent_checks_every_field_before_measuring():
    agent = Agent(DaemonConfig(memory_limit_mb=1024))
    sha = "a" * 64
    for request in (
        {"op": "measure", "sha256": sha, "timeout_s": "abc"},
        {"op": "measure", "sha256": sha, "min_time_s": float("nan")},
        {"op": "measure", "sha256": sha, "min_time_s": float("inf")},
        {"op": "measure", "sha256": sha, "seed": "7"},
        {"op": "measure", "sha256": sha, "keep_samples": 1},
        {"op": "has_model", "sha256": sha, "data_b64": ""},
        {"op": "hello", "id": "x" * 1000},
    ):
        reply = agent.handle(request)
        assert reply["error"]["code"] == "bad_request", request


def test_one_shot_measure_refuses_non_finite_numbers_and_commands(conv_model, tmp_path):
    marker = tmp_path / "pwned"
    for flags in (["--min-time", "nan"], ["--min-time", "inf"], ["--min-time", "-1"], ["--timeout-s", "nan"],
                  ["--idle-s", "inf"], ["--seed", "-3"], ["--runs", "x"]):
        done = subprocess.run([sys.executable, "-m", "device_agent", "measure", str(conv_model), *flags],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, flags
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "measure", str(conv_model), "--json", "--runs", "3", "--power", f"cmd:touch {marker}"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and json.loads(done.stdout)["error"]["code"] == "bad_request"
    assert not marker.exists()


def test_one_shot_measure_uses_sources_the_board_config_declares(conv_model, agent_home):
    agent_home.mkdir(parents=True, exist_ok=True)
    (agent_home / "agent.json").write_text(json.dumps({"power_sources": {"bench": f"cmd:{sys.executable} -c print(4.0)"}}))
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "measure", str(conv_model), "--json", "--runs", "3", "--power", "bench", "--idle-s", "0.2"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DEVICE_AGENT_HOME": str(agent_home)},
    )
    result = json.loads(done.stdout)
    assert result["error"] is None, result["error"]
    assert result["power"]["idle_w"] == pytest.approx(4.0, rel=0.2)
    (agent_home / "agent.json").write_text('{"power_sources": {"cmd:x": "cmd:id"}}')
    bad = subprocess.run([sys.executable, "-m", "device_agent", "serve", "--port", str(free_port())], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "DEVICE_AGENT_HOME": str(agent_home)})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is not valid" in bad.stderr


def test_serve_refuses_an_impossible_port_in_one_line():
    done = subprocess.run([sys.executable, "-m", "device_agent", "serve", "--port", "99999"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "1 to 65535" in done.stderr


def test_a_measuring_child_dies_when_its_stdin_ends(slow_model, agent_home):
    """What the host relies on: its own death (or its SSH session's) ends the agent's stdin."""
    child = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "measure", str(slow_model), "--runs", "100000", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DEVICE_AGENT_HOME": str(agent_home), "DEVICE_AGENT_EXIT_WITH_STDIN": "1", "DEVICE_AGENT_REPORT_PGID": "1"},
    )
    time.sleep(1.5)
    assert child.poll() is None
    child.stdin.close()
    assert child.wait(timeout=10) != 0
    from device_agent.store import measurement_lock

    with measurement_lock() as waited_s:  # the board's lock is free again at once
        assert waited_s < 1.0
