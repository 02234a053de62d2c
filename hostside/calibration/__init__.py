"""Per-board latency calibration: measure a suite once, predict untrained architectures offline.

Public API (the search and notebooks call these; the CLI is a shell over them):

- ``load_calibration(path) -> Calibration``; ``Calibration.predict(spec_or_onnx_path)``,
  ``Calibration.predict_many(specs)``, ``Calibration.board``, ``Calibration.provenance``
- ``Budgets``, ``CandidateFilter(budgets, calibration=None, conservative=False).check(spec)``
- ``calibrate(boards, out_dir, ...)`` and ``calibration_for_board(board, threads=1, quick=True)``
"""

import importlib

# Every name is loaded on first use: the CLI imports this package to register its commands,
# and numpy (the fitted models) or torch (the measuring side) would slow every command's start.
_EXPORTS = {
    "Calibration": "artifact", "Prediction": "artifact", "load_calibration": "artifact",
    "Budgets": "filter", "CandidateFilter": "filter", "FilterDecision": "filter",
    "calibrate": "calibrate", "calibration_for_board": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
