"""The agent must run on a 1 GB Pi with Python 3.9: stdlib + numpy + onnxruntime only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import device_agent

PACKAGE = Path(device_agent.__file__).resolve().parent
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime"}
STDLIB = set(sys.stdlib_module_names)


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


def test_agent_imports_only_stdlib_numpy_onnxruntime():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for name in _imports(tree):
            assert name in STDLIB or name in ALLOWED_THIRD_PARTY or name == "device_agent", f"{path.name} imports {name}"


def test_agent_parses_as_python_3_9_and_uses_postponed_annotations():
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        tree = ast.parse(source, feature_version=(3, 9))
        assert not any(type(node).__name__ == "Match" for node in ast.walk(tree)), path.name
        if path.name not in ("__init__.py", "__main__.py"):
            assert "from __future__ import annotations" in source, path.name
