"""Is this calibration the board's own? One line when it was made on another CPU, ISA or runtime.

Why warn rather than refuse: predicting a Raspberry Pi's latencies on a laptop from the Pi's
calibration is the point of calibrating; but using a Cortex-A72 calibration to judge
candidates measured on an x86 server gives numbers that are off by a factor and rules that do
not apply (NCHWc blocks on x86, none on ARM), and nothing said so. The line names both sides so
the user sees at once whether that was meant.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from hostside.calibration.artifact import Calibration
from hostside.calibration.rules import board_runtime_isa


def _facts(board: Mapping[str, Any]) -> Mapping[str, Optional[str]]:
    info = board.get("info", board)
    runtime, isa = board_runtime_isa(board)
    return {"cpu": board.get("cpu_model") or info.get("cpu_model"), "isa": isa, "runtime": runtime}


def foreign_warning(calibration: Any, board_info: Mapping[str, Any]) -> Optional[str]:
    """One line naming what differs between the calibration's board and ``board_info`` (an
    agent's ``info``: ``cpu_model``, ``architecture``, ``onnxruntime``), or None when they
    match. A fact unknown on either side (a calibration fitted on measurements from elsewhere
    records only its rule set's ISA and runtime) is not a difference; neither is anything
    about a latency source that is not a calibration file (a benchmark's table)."""
    if not isinstance(calibration, Calibration):
        return None
    rules = calibration.rules
    ours = dict(_facts(calibration.board))
    ours["isa"] = ours["isa"] or rules.isa
    ours["runtime"] = ours["runtime"] or rules.runtime
    theirs = _facts(board_info)
    differ = [k for k in ("cpu", "isa", "runtime") if ours[k] and theirs[k] and ours[k] != theirs[k]]
    if not differ:
        return None
    name = calibration.board.get("name") or calibration.board.get("key")

    def side(facts: Mapping[str, Optional[str]]) -> str:
        return ", ".join(f"{k} {facts[k]}" for k in ("cpu", "isa", "runtime") if facts[k])

    where = f" ({calibration.path})" if calibration.path else ""
    return (f"foreign calibration{where}: made on {name!r} ({side(ours)}), this board is {side(theirs)}; "
            f"its latencies are the other board's (calibrate this board for its own)")
