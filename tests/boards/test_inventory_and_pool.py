"""Inventory commands, the local board, and the board pool (with a real SSH board)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hostside.boards import Board, BoardPool, ERROR_CODES, open_board
from hostside.cli import main
from hostside.errors import UserError


def test_boards_add_list_remove(home, capsys, tmp_path):
    key = tmp_path / "id_pi"
    key.write_text("not checked beyond existing: the board is never contacted here\n")
    assert main(["boards", "add", "pi4", "--host", "10.0.0.7", "--user", "pi", "--key", str(key)]) == 0
    assert "boards trust pi4" in capsys.readouterr().out
    assert main(["boards", "add", "pi4", "--host", "10.0.0.8", "--user", "pi"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["boards", "list"]) == 0
    listing = capsys.readouterr().out
    assert "local" in listing and "pi@10.0.0.7:22" in listing
    assert open_board("pi4").config.key == str(key)
    assert main(["boards", "remove", "pi4"]) == 0
    assert main(["boards", "remove", "pi4"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "unknown board 'pi4'" in err


def test_unknown_board_lists_known_names(home):
    with pytest.raises(UserError, match="known boards: local"):
        open_board("nope")


def test_malformed_inventory_is_a_clear_error(home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "boards.toml").write_text("[boards.x\nhost = 1")
    with pytest.raises(UserError, match="boards.toml is not valid TOML"):
        open_board("x")


def test_local_board_measures_through_the_runner(home, conv_model, not_onnx_file):
    with open_board("local") as board:
        assert board.name == "local" and board.key.endswith("c")
        result = board.measure(conv_model, runs=10)
        failed = board.measure(not_onnx_file, runs=10)
    assert result["error"] is None and result["host"]["path"] == "local"
    assert set(result["host"]) >= {"upload_s", "queue_wait_s", "total_s", "attempts"}
    assert failed["error"]["code"] == "invalid_model" and failed["error"]["code"] in ERROR_CODES


@pytest.mark.ssh
def test_pool_redispatches_a_failed_boards_work(home, installed_board, conv_model, slow_model, tmp_path):
    from hostside.boards import inventory

    inventory.add(dataclasses.replace(installed_board, name="dead", port=1, retries=0))
    boards = [open_board("dead"), open_board("loop"), open_board("local")]
    models = [conv_model, slow_model, conv_model, slow_model]
    seen = []
    results = BoardPool(boards).measure_many(models, progress=lambda done, total: seen.append((done, total)), runs=5)
    assert [r["error"] for r in results] == [None] * 4
    assert [r["model"]["sha256"] for r in results] == [r["model"]["sha256"] for r in results[:2]] * 2
    assert {r["host"]["board"] for r in results} <= {"loop", "local"}
    assert seen[-1] == (4, 4) and len(seen) == 4
    for board in boards:
        board.close()


def test_pool_with_only_dead_boards_reports_connection_errors(home, conv_model):
    from hostside.boards import inventory

    inventory.add(inventory.BoardConfig(name="dead", host="127.0.0.1", port=1, user="root", retries=0))
    results = BoardPool([open_board("dead")]).measure_many([conv_model, conv_model], runs=5)
    assert [r["error"]["code"] for r in results] == ["connection_error", "connection_error"]
    assert "connection refused" in results[1]["error"]["message"]


def test_pool_refuses_mixed_kinds(home):
    from hostside.boards import inventory

    inventory.add(inventory.BoardConfig(name="a", host="h", user="u", device_key="aarch64-pi4"))
    inventory.add(inventory.BoardConfig(name="b", host="h", user="u", device_key="armv7l-a15"))
    pool = BoardPool([open_board("a"), open_board("b")])
    with pytest.raises(UserError, match="one kind"):
        pool.check_same_kind()
    assert isinstance(pool.boards[0], Board)


def test_systemd_unit_rendered_for_a_users_agent_dir():
    from hostside.boards.install import DEPLOY_DIR, render_unit

    template = (DEPLOY_DIR / "device-agent.service").read_text()
    unit = render_unit(template, user="pi", agent_dir="/home/pi/.device-agent", python="/home/pi/agent-venv/bin/python", port=47801)
    assert "User=pi\n" in unit and "Group=" not in unit
    assert "Environment=PYTHONPATH=/home/pi/.device-agent/lib" in unit
    assert "ExecStart=/home/pi/agent-venv/bin/python -m device_agent serve --port 47801\n" in unit
    assert "/etc/device-agent" not in unit.split("ExecStart=")[1].splitlines()[0]
    assert "ReadWritePaths=/home/pi/.device-agent" in unit and "/opt/device-agent" not in unit
    assert "Restart=on-failure" in unit


def test_measure_cli_writes_a_latency_plot(home, conv_model, tmp_path, capsys):
    png = tmp_path / "latency.png"
    assert main(["measure", str(conv_model), "--runs", "40", "--plot", str(png), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["samples_ms"]) == 40 and min(result["samples_ms"]) == result["latency_ms"]["min"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
