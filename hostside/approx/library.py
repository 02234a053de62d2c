"""The approximate 8-bit unsigned multipliers (EvoApproxLib) shipped as package data.

``data/evoapprox8u.npz`` holds one complete 256 x 256 ``uint16`` product table per circuit
(``lut[a, b]`` = the circuit's product of unsigned ``a`` and ``b``), ``data/evoapprox8u.json``
its error metrics and its energy per multiplication (PDK45 power x delay). The tables are the
circuits: every product an approximate convolution computes is read from them.

A library is a list of circuit names (a search's multiplier gene indexes it). It must hold the
exact circuit ``mul8u_1JFF``: it is the reference every approximate circuit is compared with
and scenario S4 of the CGP NAS paper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hostside.errors import UserError

DATA_DIR = Path(__file__).resolve().parent / "data"
TABLES_FILE = DATA_DIR / "evoapprox8u.npz"
METRICS_FILE = DATA_DIR / "evoapprox8u.json"
EXACT = "mul8u_1JFF"
#: The 9 circuits whose results table 2 of the CGP NAS paper reports (exact 1JFF among them).
PAPER_TABLE2 = ("mul8u_QJD", "mul8u_7C1", "mul8u_NGR", "mul8u_DM1", "mul8u_185Q", "mul8u_1JFF",
                "mul8u_QKX", "mul8u_12N4", "mul8u_18DU")
#: The default library: the paper's nine plus five more spreading the energy range
#: (0.0002 .. 0.56 pJ), in increasing energy.
DEFAULT_LIBRARY = ("mul8u_17C8", "mul8u_QKX", "mul8u_18DU", "mul8u_FTA", "mul8u_12N4", "mul8u_19DB",
                   "mul8u_185Q", "mul8u_DM1", "mul8u_NGR", "mul8u_7C1", "mul8u_QJD", "mul8u_KEM",
                   "mul8u_125K", EXACT)
TABLE_SHAPE = (256, 256)


@dataclass(frozen=True)
class Multiplier:
    """One circuit: its product table and what the library publishes about it."""

    name: str
    table: np.ndarray            # (256, 256) uint16, read-only
    energy_per_mult_pj: float
    mae_pct: float
    wce_pct: float
    exact: bool

    def describe(self) -> Dict[str, object]:
        return {"multiplier": self.name, "energy_per_mult_pj": self.energy_per_mult_pj,
                "mae_pct": self.mae_pct, "wce_pct": self.wce_pct, "exact": self.exact}


@lru_cache(maxsize=1)
def circuit_metrics() -> Mapping[str, Mapping[str, object]]:
    """Per circuit name: the published error and energy figures (JSON, no tables)."""
    try:
        body = json.loads(METRICS_FILE.read_text(encoding="utf-8"))
        return body["multipliers"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"multiplier metrics {METRICS_FILE} cannot be read ({exc}); reinstall hostside") from None


def circuit_names() -> List[str]:
    """Every circuit of the shipped library, in increasing energy per multiplication."""
    metrics = circuit_metrics()
    return sorted(metrics, key=lambda n: (float(metrics[n]["energy_per_mult_pj"]), n))


def check_table(name: str, table: np.ndarray, source: str) -> np.ndarray:
    """``table`` if it is a 256 x 256 unsigned 16-bit product table, else one UserError line."""
    if table.shape != TABLE_SHAPE or table.dtype != np.uint16:
        raise UserError(f"multiplier {name!r} in {source}: table has shape {list(table.shape)} and dtype "
                        f"{table.dtype}; a product table must be 256x256 uint16 (lut[a, b] = a*b by the circuit)")
    return table


def load_tables(path: Path, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The named tables of an ``.npz`` file (``allow_pickle=False``), each shape/dtype-checked."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [n for n in names if n not in npz.files]
            if missing:
                raise UserError(f"multiplier table file {path} lacks {', '.join(missing)}")
            tables = {n: check_table(n, npz[n], str(path)) for n in names}
    except (OSError, ValueError) as exc:
        raise UserError(f"multiplier table file {path} cannot be read as .npz ({exc})") from None
    for table in tables.values():
        table.setflags(write=False)
    return tables


def check_names(names: Sequence[str]) -> Tuple[str, ...]:
    """``names`` as a library: known circuits, no repeats, the exact one among them."""
    known = circuit_metrics()
    if not names:
        raise UserError(f"the multiplier library is empty; name circuits such as {EXACT}")
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise UserError(f"multiplier {name!r} is unknown; choose among: {', '.join(circuit_names())}")
    if len(set(names)) != len(names):
        raise UserError(f"the multiplier library names a circuit twice: {list(names)}")
    if EXACT not in names:
        raise UserError(f"the multiplier library {list(names)} lacks the exact circuit {EXACT}; add it "
                        f"(it is the reference the approximate ones are compared with)")
    return tuple(names)


@lru_cache(maxsize=64)
def get_multiplier(name: str, tables_file: Optional[str] = None) -> Multiplier:
    """One circuit with its table (loaded once per process)."""
    known = circuit_metrics()
    if name not in known:
        raise UserError(f"multiplier {name!r} is unknown; choose among: {', '.join(circuit_names())}")
    table = load_tables(Path(tables_file) if tables_file else TABLES_FILE, [name])[name]
    m = known[name]
    return Multiplier(name, table, float(m["energy_per_mult_pj"]), float(m["mae_pct"]), float(m["wce_pct"]),
                      bool(m["exact"]))


def energy_per_mult_pj(name: str) -> float:
    """The circuit's energy of one multiplication (pJ), from the metrics file alone."""
    known = circuit_metrics()
    if name not in known:
        raise UserError(f"multiplier {name!r} is unknown; choose among: {', '.join(circuit_names())}")
    return float(known[name]["energy_per_mult_pj"])
