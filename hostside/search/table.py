"""A table of known figures (``--table FILE.csv``) in place of training and measuring.

A tabular benchmark (NAS-Bench-201 with HW-NAS-Bench's latencies: ``data/nb201/``) holds, for
every architecture of a space, the validation accuracy after one or more training lengths
(fidelities), the test accuracy and a measured latency. Running a search against it costs
seconds instead of GPU-days, so strategies can be compared over many seeds on the same
ground truth. The run goes through the same engine, journal, filter, resume and reports; only
the training executor and the board are replaced (``hostside.search.table_run``).

The ``[table]`` config section maps the CSV's columns to the figures (``TableSettings``;
every key has the NB201 table's default, so ``--table data/nb201/nb201_hw.csv`` alone works).
Accuracies are stored as fractions, as the engine uses them: ``accuracy_unit = "auto"`` reads
a column as percent when any of its values is over 1 (NB201's are percent), else as a fraction.

Why a simulated training time per fidelity (``train_seconds``): a multi-fidelity search is
judged by what it would have cost to train, so a budget in ``train_seconds`` compares it with
single-fidelity searches at equal cost. Between the given points the seconds are interpolated
linearly in epochs (through 0 s at 0 epochs) and extended beyond the last at its rate.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hostside.errors import UserError

#: The NB201 table's columns (``data/nb201/README.md``): CIFAR-10 validation accuracy after 200
#: and 12 epochs, the test accuracy of the 200-epoch training, Raspberry Pi 4 latency.
NB201_DEFAULTS: Dict[str, Any] = {
    "key": "arch_str",
    "val_accuracy": "c10valid_val_acc_200ep",
    "test_accuracy": "c10valid_test_acc_200ep",
    "epochs": 200,
    "latency_ms": "raspi4_latency_ms",
    "energy_mj": None,
    "fidelities": {12: "c10valid_val_acc_12ep"},
    "accuracy_unit": "auto",
    "missing": "error",
    "input_shape": [3, 32, 32],
    "num_classes": 10,
}
#: Simulated training seconds per epoch where ``train_seconds`` names no figure at all.
DEFAULT_SECONDS_PER_EPOCH = 10.0
ACCURACY_UNITS = ("auto", "percent", "fraction")
MISSING_RULES = ("error", "skip")
KEYS = ("path", "key", "val_accuracy", "test_accuracy", "epochs", "latency_ms", "energy_mj", "fidelities",
        "train_seconds", "accuracy_unit", "missing", "input_shape", "num_classes")


def _bad(key: str, value: Any, allowed: str) -> UserError:
    return UserError(f"config key 'table.{key}': {value!r} is not allowed; {allowed}")


def _column(key: str, value: Any, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(key, value, "give the name of a column of the table")
    return value


def _epochs(key: str, value: Any) -> int:
    """An epoch count; TOML table keys are strings (``{ 12 = ... }`` gives ``"12"``)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad(key, value, "give a number of epochs >= 1")
    return value


@dataclass(frozen=True)
class TableSettings:
    """The ``[table]`` section, checked; ``fidelities`` maps epochs to validation columns,
    the final fidelity (``epochs``: the training ``val_accuracy`` and ``test_accuracy`` stand
    for) included."""

    path: Optional[str]
    key: str
    val_accuracy: str
    test_accuracy: Optional[str]
    epochs: int
    latency_ms: str
    energy_mj: Optional[str]
    fidelities: Dict[int, str]
    train_seconds: Dict[int, float]
    accuracy_unit: str
    missing: str
    input_shape: Tuple[int, int, int]
    num_classes: int

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> "TableSettings":
        if not isinstance(table, Mapping):
            raise UserError("config key 'table': give a table, e.g. [table] key = \"arch_str\"")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise UserError(f"config key 'table.{unknown[0]}' is unknown; allowed keys: {', '.join(KEYS)}")
        values = {**NB201_DEFAULTS, **table}
        if "val_accuracy" in table and "fidelities" not in table:
            values["fidelities"] = {}  # NB201's 12-epoch column belongs with NB201's 200-epoch one only
        path = values.get("path")
        if path is not None and (not isinstance(path, str) or not path):
            raise _bad("path", path, "give the CSV file's path (or --table FILE.csv)")
        epochs = _epochs("epochs", values["epochs"])
        lower = values["fidelities"]
        if not isinstance(lower, Mapping):
            raise _bad("fidelities", lower, "give a table of epochs -> column, e.g. { 12 = \"val_acc_12ep\" }")
        fidelities = {_epochs(f"fidelities.{k}", k): _column(f"fidelities.{k}", v) for k, v in lower.items()}
        if epochs in fidelities or any(e > epochs for e in fidelities):
            raise _bad("fidelities", dict(lower), f"list only trainings shorter than table.epochs = {epochs} "
                                                  f"(its column is table.val_accuracy)")
        fidelities[epochs] = _column("val_accuracy", values["val_accuracy"])
        fidelities = dict(sorted(fidelities.items()))
        seconds = values.get("train_seconds")
        if seconds is None:
            seconds = {e: DEFAULT_SECONDS_PER_EPOCH * e for e in fidelities}
        if not isinstance(seconds, Mapping):
            raise _bad("train_seconds", seconds, "give a table of epochs -> seconds, e.g. { 12 = 120.0, 200 = 2000.0 }")
        train_seconds: Dict[int, float] = {}
        for k, v in seconds.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise _bad(f"train_seconds.{k}", v, "give the positive seconds that training stands for")
            train_seconds[_epochs(f"train_seconds.{k}", k)] = float(v)
        if set(train_seconds) != set(fidelities):
            raise _bad("train_seconds", dict(seconds), f"give the seconds of exactly the fidelities "
                                                       f"{', '.join(map(str, fidelities))} (epochs)")
        ordered = [train_seconds[e] for e in fidelities]
        if any(b < a for a, b in zip(ordered, ordered[1:])):
            raise _bad("train_seconds", dict(seconds), "a longer training cannot take fewer seconds")
        if values["accuracy_unit"] not in ACCURACY_UNITS:
            raise _bad("accuracy_unit", values["accuracy_unit"], f"choose one of {', '.join(ACCURACY_UNITS)}")
        if values["missing"] not in MISSING_RULES:
            raise _bad("missing", values["missing"], "choose \"error\" (stop at an architecture the table lacks) "
                                                     "or \"skip\" (leave it out and count it)")
        shape = values["input_shape"]
        if (not isinstance(shape, (list, tuple)) or len(shape) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise _bad("input_shape", shape, "give [channels, height, width], e.g. [3, 32, 32]")
        classes = values["num_classes"]
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
            raise _bad("num_classes", classes, "give the number of classes (>= 2)")
        return cls(path, _column("key", values["key"]), fidelities[epochs],
                   _column("test_accuracy", values["test_accuracy"], optional=True), epochs,
                   _column("latency_ms", values["latency_ms"]), _column("energy_mj", values["energy_mj"], optional=True),
                   fidelities, train_seconds, values["accuracy_unit"], values["missing"],
                   (int(shape[0]), int(shape[1]), int(shape[2])), classes)

    @property
    def final_fidelity(self) -> int:
        return self.epochs

    def check_run(self, config: Any) -> None:
        """The run's other settings against the table: what it cannot give is one line now."""
        allowed = ", ".join(map(str, self.fidelities))
        for key in ("epochs", "final_epochs", "screen_epochs"):
            if getattr(config, key) not in self.fidelities:
                raise UserError(f"config key {key!r}: {getattr(config, key)!r} is not allowed in a table run; "
                                f"the table has figures after {allowed} epochs")
        from hostside.search.objectives import objective

        for name in config.objectives:
            column = objective(name).column
            if column == "predicted_latency_ms":
                raise UserError(f"objective {name!r}: a table run predicts nothing (it has no calibration); "
                                f"use latency_ms, which the table's {self.latency_ms!r} column gives")
            if column == "energy_mj" and self.energy_mj is None:
                raise UserError(f"objective {name!r}: the table has no energy column; name one as table.energy_mj")
        if "energy_mj" in config.budgets and self.energy_mj is None:
            raise UserError("config key 'budgets.energy_mj': the table has no energy column; name one as table.energy_mj")
        for key in ("precision", "cluster"):
            if getattr(config, key) is not None:
                raise UserError(f"config key {key!r}: a table run trains nothing, so it has no use for {key}; "
                                f"leave it out")

    def seconds(self, epochs: float) -> float:
        """Simulated training seconds of ``epochs`` (linear between the given points, from 0)."""
        points = [(0, 0.0), *self.train_seconds.items()]
        for (e0, s0), (e1, s1) in zip(points, points[1:]):
            if epochs <= e1:
                return s0 + (s1 - s0) * (epochs - e0) / (e1 - e0)
        (e0, s0), (e1, s1) = points[-2], points[-1]
        return s1 + (s1 - s0) / (e1 - e0) * (epochs - e1)

    def fidelity_for(self, epochs: int) -> int:
        """The longest tabulated training not longer than ``epochs`` (what is known of it)."""
        known = [e for e in self.fidelities if e <= epochs]
        if not known:
            raise UserError(f"a candidate was asked for {epochs} epochs, shorter than the table's shortest "
                            f"training ({min(self.fidelities)} epochs); ask for one of "
                            f"{', '.join(map(str, self.fidelities))}")
        return max(known)


@dataclass(frozen=True)
class Figures:
    """One architecture's row: validation accuracy per fidelity, test accuracy, latency, energy."""

    val_accuracy: Dict[int, float]
    test_accuracy: Optional[float]
    latency_ms: float
    energy_mj: Optional[float]


@dataclass
class Table:
    """A loaded table: figures by key, and the file's sha256 (a resume checks it is the same)."""

    settings: TableSettings
    path: Path
    sha256: str
    rows: Dict[str, Figures] = field(default_factory=dict)

    def figures(self, key: str) -> Optional[Figures]:
        return self.rows.get(key)

    def describe(self) -> Dict[str, Any]:
        """Journaled as the run's provenance."""
        return {"path": str(self.path), "sha256": self.sha256, "rows": len(self.rows),
                "columns": {"key": self.settings.key, "val_accuracy": dict(self.settings.fidelities),
                            "test_accuracy": self.settings.test_accuracy, "latency_ms": self.settings.latency_ms,
                            "energy_mj": self.settings.energy_mj}}


def load_table(settings: TableSettings, expected_sha256: Optional[str] = None) -> Table:
    """Read and check the CSV; a bad file is one line naming the row and column."""
    from hostside import safe_io

    if settings.path is None:
        raise UserError("a [table] section needs the CSV file: give --table FILE.csv or table.path")
    path = Path(settings.path)
    data = safe_io.read_bytes(path, "table")
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise UserError(f"table {path} is not the file this run started with (sha256 differs); restore that file "
                        f"to resume, or start a new run")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"table {path} is not UTF-8 text (offset {exc.start}); give a CSV file") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise UserError(f"table {path} is empty; give a CSV file with a header row")
    header = [name.strip() for name in header]
    accuracy_columns = list(settings.fidelities.values()) + ([settings.test_accuracy] if settings.test_accuracy else [])
    wanted = [settings.key, *accuracy_columns, settings.latency_ms] + ([settings.energy_mj] if settings.energy_mj else [])
    where = {name: i for i, name in enumerate(header)}
    for name in wanted:
        if name not in where:
            raise UserError(f"table {path} has no column {name!r} (named in the [table] section); its columns: "
                            f"{', '.join(header)}")
    numeric = list(dict.fromkeys(wanted[1:]))
    values: Dict[str, List[float]] = {name: [] for name in numeric}
    keys: List[str] = []
    first_line: Dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise UserError(f"table {path} line {line} has {len(cells)} cells, the header {len(header)}; "
                            f"fix that row")
        key = cells[where[settings.key]].strip()
        if not key:
            raise UserError(f"table {path} line {line}: the key column {settings.key!r} is empty")
        if key in first_line:
            raise UserError(f"table {path} line {line} repeats key {key!r} of line {first_line[key]} "
                            f"(column {settings.key!r}); keep one row per architecture")
        first_line[key] = line
        keys.append(key)
        for name in numeric:
            cell = cells[where[name]].strip()
            try:
                value = float(cell)
            except ValueError:
                value = float("nan")
            if not math.isfinite(value):
                raise UserError(f"table {path} line {line} column {name!r}: {cell!r} is not a number; fix the cell "
                                f"or name another column in [table]")
            values[name].append(value)
    if not keys:
        raise UserError(f"table {path} has a header but no rows")
    scale = {name: _accuracy_scale(settings.accuracy_unit, values[name]) for name in accuracy_columns}
    rows = {}
    for i, key in enumerate(keys):
        rows[key] = Figures(
            {e: values[c][i] * scale[c] for e, c in settings.fidelities.items()},
            values[settings.test_accuracy][i] * scale[settings.test_accuracy] if settings.test_accuracy else None,
            values[settings.latency_ms][i],
            values[settings.energy_mj][i] if settings.energy_mj else None)
    return Table(settings, path.resolve(), sha256, rows)


def _accuracy_scale(unit: str, column: Sequence[float]) -> float:
    """Factor to the fraction the engine uses: percent columns are divided by 100."""
    if unit == "percent" or (unit == "auto" and max(column) > 1.0):
        return 0.01
    return 1.0
