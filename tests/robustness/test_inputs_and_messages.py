"""On this machine (no SSH): bad files and flags give one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from robustness_helpers import assert_one_error_line, run_cli


def _symbolic_spatial_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def test_a_symbolic_spatial_size_is_named_not_an_onnxruntime_shape_error(tmp_path):
    model = _symbolic_spatial_model(tmp_path / "symbolic.onnx")
    done = run_cli(["measure", str(model), "--runs", "3", "--json"], program="device_agent", env={"DEVICE_AGENT_HOME": str(tmp_path / "a")})
    result = json.loads(done.stdout)
    assert done.returncode == 1 and result["error"]["code"] == "invalid_model"
    assert "symbolic size 'H' at axis 2" in result["error"]["message"]
    line = assert_one_error_line(run_cli(["measure", str(model), "--runs", "3"], env={"HOSTSIDE_HOME": str(tmp_path / "h")}), "[invalid_model]")
    assert "Invalid input shape" not in line and "axis 2" in line


def test_a_directory_as_the_model_is_called_a_directory(tmp_path):
    assert_one_error_line(run_cli(["measure", str(tmp_path)], env={"HOSTSIDE_HOME": str(tmp_path / "h")}), "is a directory")
    assert_one_error_line(run_cli(["measure", str(tmp_path / "nope.onnx")], env={"HOSTSIDE_HOME": str(tmp_path / "h")}), "does not exist")


def test_a_binary_board_inventory_is_one_line(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "boards.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert_one_error_line(run_cli(["boards", "list"], env={"HOSTSIDE_HOME": str(home)}), "boards.toml", "not a text file")
    (home / "boards.toml").write_text("[boards.x]\nhost = \n")
    assert_one_error_line(run_cli(["boards", "list"], env={"HOSTSIDE_HOME": str(home)}), "not valid TOML")


def test_usage_errors_are_one_line(tmp_path):
    for args in (["measure"], ["measure", "m.onnx", "--runs", "x"], ["boards", "add", "b"], ["no-such-command"]):
        assert_one_error_line(run_cli(args, env={"HOSTSIDE_HOME": str(tmp_path)}), "error:", "--help")


def test_a_missing_key_file_is_named_not_blamed_on_the_network(tmp_path):
    home = tmp_path / "h"
    env = {"HOSTSIDE_HOME": str(home)}
    added = run_cli(["boards", "add", "pi", "--host", "127.0.0.1", "--port", "1", "--user", "pi", "--key", str(tmp_path / "no_key")], env=env)
    assert_one_error_line(added, "no_key", "does not exist", "--key")
    assert not (home / "boards.toml").exists()  # refused, nothing written
    # A hand-edited inventory can still name a missing key: its first use names the file.
    home.mkdir()
    (home / "boards.toml").write_text(f'[boards.pi]\nhost = "127.0.0.1"\nport = 1\nuser = "pi"\nkey = "{tmp_path / "no_key"}"\n')
    line = assert_one_error_line(run_cli(["boards", "check", "pi"], env=env), "no_key", "does not exist")
    assert "network" not in line


def test_wrongly_typed_board_settings_are_named(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    env = {"HOSTSIDE_HOME": str(home)}
    for table, needle in (('port = "abc"', "port = 'abc'"), ("connect_timeout_s = nan", "connect_timeout_s = nan"),
                          ("retries = -5", "retries = -5"), ('host = "a b"', "host = 'a b'")):
        (home / "boards.toml").write_text(f'[boards.b]\nhost = "127.0.0.1"\nuser = "u"\n{table}\n'.replace('host = "127.0.0.1"\n', "", table.startswith("host") and 1 or 0))
        assert_one_error_line(run_cli(["boards", "check", "b"], env=env), needle)
    (home / "boards.toml").write_text("boards = 5\n")
    assert_one_error_line(run_cli(["boards", "list"], env=env), "[boards.NAME]")
    (home / "boards.toml").unlink()
    assert_one_error_line(run_cli(["boards", "add", "b", "--host", "h", "--user", "u", "--port", "99999"], env=env), "port = 99999")
    assert not (home / "boards.toml").exists()  # nothing written
