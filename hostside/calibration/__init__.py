"""Per-board latency calibration: measure a suite once, predict untrained architectures offline.

Public API (the search and notebooks call these; the CLI is a shell over them):

- ``load_calibration(path) -> Calibration``; ``Calibration.predict(spec_or_onnx_path)``,
  ``Calibration.predict_many(specs)``, ``Calibration.board``, ``Calibration.provenance``
- ``Budgets``, ``CandidateFilter(budgets, calibration=None, conservative=False).check(spec)``
- ``calibrate(boards, out_dir, ...)`` and ``calibration_for_board(board, threads=1, quick=True)``
"""

from hostside.calibration.artifact import Calibration, Prediction, load_calibration
from hostside.calibration.filter import Budgets, CandidateFilter, FilterDecision

__all__ = ["Budgets", "Calibration", "CandidateFilter", "FilterDecision", "Prediction", "calibrate",
           "calibration_for_board", "load_calibration"]


def __getattr__(name: str):
    # The measuring side imports the board and export code (torch); load it only when asked.
    if name == "calibrate":
        from hostside.calibration.calibrate import calibrate

        return calibrate
    if name == "calibration_for_board":
        from hostside.calibration.registry import calibration_for_board

        return calibration_for_board
    raise AttributeError(name)
