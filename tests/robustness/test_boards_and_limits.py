"""Board inventory and measurement limits as a careless user meets them: a memory limit too
small to start, a key file that is not there, a removed board that stayed connected, and a
daemon whose token file vanished."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from robustness_helpers import assert_one_error_line, processes_matching, run_cli, wait_for


def _load_board_fixtures():
    """tests/boards/conftest.py, loaded by path (tests/ is not a package): its loopback sshd,
    installed board and daemon are the ones the remove and check tests need."""
    spec = importlib.util.spec_from_file_location("board_fixtures", Path(__file__).parents[1] / "boards" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BOARDS = _load_board_fixtures()
sshd, home, board_config, installed_board, daemon = (
    _BOARDS.sshd, _BOARDS.home, _BOARDS.board_config, _BOARDS.installed_board, _BOARDS.daemon,
)


# -- a memory limit too small to start ---------------------------------------------------------


def _suggested_limit(message: str) -> int:
    found = re.search(r"--memory-limit-mb to at least (\d+)", message)
    assert found, message
    return int(found.group(1))


def test_device_agent_calls_a_too_small_memory_limit_out_of_memory(conv_model, tmp_path):
    env = {"DEVICE_AGENT_HOME": str(tmp_path / "agent")}
    done = run_cli(["measure", str(conv_model), "--runs", "3", "--memory-limit-mb", "20", "--json"], env=env, program="device_agent")
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "out_of_memory", error
    assert "--memory-limit-mb 20" in error["message"] and "onnxruntime cannot be imported" not in error["message"]
    suggested = _suggested_limit(error["message"])
    # The suggested limit is one that works.
    ok = run_cli(["measure", str(conv_model), "--runs", "3", "--memory-limit-mb", str(suggested), "--json"], env=env, program="device_agent")
    assert ok.returncode == 0 and json.loads(ok.stdout)["error"] is None, ok.stdout[-500:]
    plain = run_cli(["measure", str(conv_model), "--runs", "3", "--memory-limit-mb", "20"], env=env, program="device_agent")
    assert_one_error_line(plain, "--memory-limit-mb 20", "at least", "or drop it")


def test_the_local_board_reports_a_too_small_memory_limit_as_out_of_memory(conv_model, tmp_path):
    done = run_cli(["measure", "--board", "local", str(conv_model), "--runs", "3", "--memory-limit-mb", "20"],
                   env={"HOSTSIDE_HOME": str(tmp_path / "h")})
    line = assert_one_error_line(done, "[out_of_memory]", "--memory-limit-mb 20", "at least", "or drop it")
    assert "agent_missing" not in line and line.startswith("hostside: error: ")


def test_an_import_that_hit_the_memory_limit_is_not_a_missing_agent():
    from hostside.boards.board import Board
    from hostside.boards.transport import ExecResult

    stderr = ("ImportError: libscipy_openblas64_.so: failed to map segment from shared object\n"
              "ModuleNotFoundError: No module named 'numpy._core._multiarray_umath'\n")
    run = ExecResult(returncode=1, stdout="", stderr=stderr)
    board = Board("pi", None)
    assert board._agent_missing(run) is None
    error = board._no_result_error(run, 20)
    assert error["code"] == "out_of_memory" and "--memory-limit-mb 20" in error["message"]
    really_missing = ExecResult(returncode=1, stdout="", stderr="ModuleNotFoundError: No module named 'numpy'\n")
    assert "lacks numpy or onnxruntime" in str(board._agent_missing(really_missing))


# -- a key file that is not there --------------------------------------------------------------


def test_boards_add_refuses_a_key_file_that_does_not_exist(tmp_path):
    home_dir = tmp_path / "h"
    env = {"HOSTSIDE_HOME": str(home_dir)}
    add = ["boards", "add", "pi", "--host", "10.0.0.7", "--user", "pi", "--key"]
    assert_one_error_line(run_cli([*add, str(tmp_path / "id_missing")], env=env), "id_missing", "does not exist", "--key")
    assert_one_error_line(run_cli([*add, str(tmp_path)], env=env), "is a directory")
    assert not (home_dir / "boards.toml").exists()
    key = tmp_path / "id_pi"
    key.write_text("a private key\n")
    added = run_cli([*add, str(key)], env=env)
    assert added.returncode == 0, added.stderr
    assert str(key) in (home_dir / "boards.toml").read_text()


# -- a removed board that stayed connected -----------------------------------------------------


def _ssh_sessions_to(port: int) -> int:
    """Established client connections to 127.0.0.1:``port`` on this machine (/proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                count += 1
    return count


@pytest.mark.ssh
def test_boards_remove_ends_the_boards_control_process_and_ssh_session(daemon, home, sshd, conv_model):
    env = {"HOSTSIDE_HOME": str(home), "HOSTSIDE_CONTROL_IDLE_S": "600"}  # no idling out during the test
    measured = run_cli(["measure", "--board", "loop", str(conv_model), "--runs", "3"], env=env)
    assert measured.returncode == 0, measured.stderr
    assert wait_for(lambda: list((home / "control").glob("loop-*.sock")), 30.0), "no control process started"
    control = ("hostside.boards.control", "serve", "loop", str(home))
    assert processes_matching(*control)
    assert wait_for(lambda: _ssh_sessions_to(sshd.port) >= 1, 5.0)
    removed = run_cli(["boards", "remove", "loop"], env=env)
    assert removed.returncode == 0, removed.stderr
    assert wait_for(lambda: not processes_matching(*control), 3.0), "the control process outlived boards remove"
    assert wait_for(lambda: _ssh_sessions_to(sshd.port) == 0, 3.0), "an SSH session outlived boards remove"
    assert not list((home / "control").glob("loop-*.sock"))


def test_stop_controls_leaves_other_boards_alone(home):
    from hostside.boards import control

    directory = control.control_dir()
    own, other = directory / "pi-0123456789ab.sock", directory / "pi-2-0123456789ab.sock"
    own.touch()
    other.touch()
    assert control.stop_controls("pi") == 0  # nothing listened on the stale socket
    assert not own.exists() and other.exists()


# -- a daemon whose token file vanished --------------------------------------------------------


@pytest.mark.ssh
def test_check_gives_one_verdict_when_the_daemon_token_file_is_gone(daemon, home):
    env = {"HOSTSIDE_HOME": str(home), "HOSTSIDE_NO_CONTROL": "1"}
    (Path(daemon.config.agent_dir) / "daemon.token").unlink()
    done = run_cli(["boards", "check", "loop"], env=env)
    assert done.returncode == 0, done.stderr
    assert "not running" not in done.stdout, done.stdout
    assert "daemon listening, but its token file is missing" in done.stdout
    finding = next(line for line in done.stdout.splitlines() if "a daemon listens" in line)
    assert "token file is missing" in finding and "restart" in finding and "device-agent serve" in finding
    report = json.loads(run_cli(["boards", "check", "loop", "--json"], env=env).stdout)
    assert report["daemon"] is None and report["daemon_state"].startswith("listening")
    assert sum("daemon" in f for f in report["findings"]) == 1
