"""Boards: the inventory, ``local`` and SSH boards, and a pool of boards of one kind.

Other parts of the host call exactly this API::

    board = open_board("local")            # or a name from $HOSTSIDE_HOME/boards.toml
    result = board.measure("model.onnx", threads=1, runs=100)
    if result["error"] is None:
        result["latency_ms"]["median"]
    BoardPool([open_board("pi4-a"), open_board("pi4-b")]).measure_many(paths, runs=50)

A failed measurement never raises; its ``error`` is ``{"code", "message"}`` with a code from
``ERROR_CODES``. Only a board that cannot be reached or configured raises ``UserError``.
"""

import importlib

# Loaded on first use, so registering the CLI's commands does not import the SSH stack.
_EXPORTS = {
    "Board": "hostside.boards.board", "open_board": "hostside.boards.board",
    "BoardPool": "hostside.boards.pool", "ERROR_CODES": "device_agent.protocol",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
