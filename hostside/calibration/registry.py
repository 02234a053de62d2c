"""Which calibration to use for a board when the user named none.

Why a lookup before measuring: a calibration is a property of the board kind, the runtime
and the thread count, not of one search. A matching set shipped in ``hostside/calibration_data/`` or
one measured earlier and cached under ``$HOSTSIDE_HOME/calibrations/`` is reused; only when
neither exists is the quick suite measured now (about a minute on a desktop core) and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

from hostside.calibration.artifact import Calibration, load_calibration
from hostside.errors import UserError
from hostside.paths import hostside_home

#: The measured calibration sets shipped with the package (one directory each; package data,
#: so an installed wheel finds them too).
CALIBRATION_DATA = Path(__file__).resolve().parents[1] / "calibration_data"


def cache_dir() -> Path:
    return hostside_home() / "calibrations"


def _candidates(roots: List[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from sorted(root.glob("*/calibration.json"))


def find_calibration(board_key: str, threads: int, onnxruntime_version: Optional[str] = None,
                     roots: Optional[List[Path]] = None) -> Optional[Calibration]:
    """A stored calibration for this board kind and thread count, or None.

    Files that do not load (old format, other feature set, corrupted) are skipped: they are
    a reason to recalibrate, not to stop. With several matches, one made with the board's
    onnxruntime version wins, then the one fitted on the most measurements.
    """
    matches = []
    for path in _candidates(roots if roots is not None else [CALIBRATION_DATA, cache_dir()]):
        try:
            calibration = load_calibration(path)
        except UserError:
            continue
        if calibration.board.get("key") == board_key and calibration.threads == threads:
            same_runtime = calibration.provenance.get("onnxruntime_version") == onnxruntime_version
            matches.append((same_runtime, calibration.provenance.get("measured_models", 0), str(path), calibration))
    if not matches:
        return None
    return max(matches, key=lambda m: m[:3])[3]


def calibration_for_board(board: Union[str, Any], threads: int = 1, quick: bool = True,
                          progress: Optional[Callable[[int, int], None]] = None,
                          roots: Optional[List[Path]] = None) -> Calibration:
    """The calibration the search should use for ``board`` (a Board or a board name).

    A stored one matching the board's device key and ``threads`` if any (searched in
    ``roots``, by default ``hostside/calibration_data/`` and the cache); otherwise the suite (quick by
    default) is measured on the board now into the cache, resumably.
    """
    from hostside.boards.board import open_board
    from hostside.calibration.calibrate import calibrate

    if isinstance(board, str):
        board = open_board(board)
    info = board.info()
    ort_version = (info.get("onnxruntime") or {}).get("version")
    found = find_calibration(board.key, threads, ort_version, roots)
    if found is not None:
        return found
    out_dir = cache_dir() / f"{board.key}-threads{threads}{'-quick' if quick else ''}"
    return calibrate([board], out_dir, threads=threads, quick=quick, progress=progress)
