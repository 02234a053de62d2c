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

from device_agent.protocol import ERROR_CODES
from hostside.boards.board import Board, open_board
from hostside.boards.pool import BoardPool

__all__ = ["Board", "BoardPool", "ERROR_CODES", "open_board"]
