"""A table run's stand-ins: the "training" executor, the "board" and the final phase, all look-ups.

``TableEvaluation`` is what the engine consults in a table run: whether the table knows a
proposal (``missing = "skip"`` leaves it out and counts it, ``"error"`` stops with one line
before it is journaled), the task of a candidate, the simulated seconds it costs and its
"measurement". ``TableExecutor`` honours the ``TrainingExecutor`` seam (``submit`` returns a
finished ``Future`` of the same plain result a training returns, without files), so the
schedulers run unchanged.

Training on: a candidate whose weights come from a candidate of the same network (a promotion,
``Proposal.retrain``) continues that training, so it has trained the parent's epochs plus its
own; its figure is the table's at that total and it costs only the seconds the extra epochs
add. Weights from another network (inheritance across a mutation) give no tabulated figure,
so such a candidate counts as trained from scratch for its own epochs. A total between two
tabulated trainings gets the shorter one's figure (all the table knows of it).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from hostside.errors import UserError
from hostside.journal import Journal
from hostside.search.config import SearchConfig
from hostside.search.table import Table, TableSettings, load_table
from hostside.spaces.base import SearchSpace

#: Journal meta key: the keys of the proposals the table lacked (``missing = "skip"``).
SKIPPED_META = "table_skipped"
TABLE_META = "table"
Progress = Callable[[str], None]


def open_table(config: SearchConfig, journal: Optional[Journal] = None) -> Table:
    """The run's table; on resume, checked to be the file it started with."""
    recorded = (journal.meta(TABLE_META) or {}) if journal is not None else {}
    return load_table(TableSettings.from_config(config.table), recorded.get("sha256"))


def check_space(table: Table, space: SearchSpace, rng: Any) -> None:
    """The space must name its genotypes by the table's key column (``genotype_summary``)."""
    summary = space.genotype_summary(space.sample(rng))
    if table.settings.key not in summary:
        given = ", ".join(sorted(summary)) or "nothing"
        raise UserError(f"--table: space {space.name!r} does not name its architectures by the table's key column "
                        f"{table.settings.key!r} (its genotype_summary gives {given}); choose a space that does "
                        f"(e.g. --space nasbench201) or set table.key")


class TableEvaluation:
    """The engine's view of the table for one run."""

    def __init__(self, table: Table, space: SearchSpace, journal: Journal, progress: Progress):
        self.table = table
        self.settings = table.settings
        self.space = space
        self.journal = journal
        self.progress = progress
        self.skipped = set(journal.meta(SKIPPED_META) or [])

    def key(self, genotype: Mapping[str, Any]) -> str:
        return str(self.space.genotype_summary(dict(genotype))[self.settings.key])

    def admits(self, genotype: Mapping[str, Any]) -> bool:
        """Whether the table has the proposal's architecture; one line or a count when not."""
        key = self.key(genotype)
        if self.table.figures(key) is not None:
            return True
        if self.settings.missing == "error":
            raise UserError(f"table {self.table.path} has no row with {self.settings.key} = {key!r}; add it, or set "
                            f"table.missing = \"skip\" to leave such architectures out (they are counted)")
        if key not in self.skipped:
            self.skipped.add(key)
            self.journal.set_meta(SKIPPED_META, sorted(self.skipped))
        return False

    def start_epochs(self, row: Mapping[str, Any]) -> int:
        """Epochs the candidate has already trained: its source's total when it is the same network."""
        for source in (row.get("exercise") or {}).get("weights_from", []):
            if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
                parent = self.journal.candidate(int(source))
                if parent["arch_hash"] == row["arch_hash"]:
                    return int(((parent.get("train_metrics") or {}).get("total_epochs")) or 0)
        return 0

    def exercise_epochs(self, row: Mapping[str, Any], default: int) -> int:
        return int((row.get("exercise") or {}).get("epochs", default))

    def cost_seconds(self, row: Mapping[str, Any], default_epochs: int) -> float:
        """Simulated seconds of the candidate's training (what the budget charges)."""
        start = self.start_epochs(row)
        return self.settings.seconds(start + self.exercise_epochs(row, default_epochs)) - self.settings.seconds(start)

    def task(self, row: Mapping[str, Any], default_epochs: int) -> Dict[str, Any]:
        """The look-up a candidate stands for: key, epochs trained in all, epochs it started from."""
        start = self.start_epochs(row)
        return {"key": self.key(row["genotype"]), "total_epochs": start + self.exercise_epochs(row, default_epochs),
                "from_epochs": start}

    def evaluate(self, task: Mapping[str, Any]) -> Dict[str, Any]:
        """The plain result a training returns: validation figures at the task's fidelity, no files."""
        figures = self.table.figures(task["key"])
        if figures is None:  # the table was consulted when the candidate was proposed
            raise UserError(f"table {self.table.path} has no row {task['key']!r}")
        fidelity = self.settings.fidelity_for(task["total_epochs"])
        accuracy = figures.val_accuracy[fidelity]
        seconds = self.settings.seconds(task["total_epochs"]) - self.settings.seconds(task["from_epochs"])
        # No test accuracy: it is read for the final front only (``final_from_table``).
        return {"metrics": {"accuracy": None, "val_accuracy": accuracy, "train_seconds": seconds,
                            "table_epochs": fidelity, "total_epochs": task["total_epochs"],
                            "from_epochs": task["from_epochs"], "table_key": task["key"]},
                "files": {}}

    def measure(self, rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        """Board-like results (``engine.measurement_fields`` reads them) from the latency column."""
        results = []
        for row in rows:
            figures = self.table.figures(self.key(row["genotype"]))
            if figures is None:
                results.append({"error": {"code": "not_in_table", "message": "the table has no row for it"}})
                continue
            power = {} if figures.energy_mj is None else {"energy_per_inference_mj": figures.energy_mj}
            results.append({"latency_ms": {"median": figures.latency_ms}, "power": power,
                            "protocol": {"source": "table", "column": self.settings.latency_ms}})
        return results


class TableExecutor:
    """The ``TrainingExecutor`` seam for a table run: each "training" is a look-up done at once."""

    def __init__(self, evaluation: TableEvaluation, slots: int):
        self.evaluation = evaluation
        self.slots = slots

    def __enter__(self) -> "TableExecutor":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        return None

    def submit(self, task: Mapping[str, Any], function: Optional[Callable[..., Dict[str, Any]]] = None) -> Future:
        future: Future = Future()
        try:
            future.set_result(self.evaluation.evaluate(task))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as a worker's failure is
            future.set_exception(exc)
        return future

    def restart(self) -> None:
        return None

    def describe(self) -> str:
        return f"table {self.evaluation.table.path} (looked up, nothing trained)"


def final_from_table(journal: Journal, config: SearchConfig, evaluation: TableEvaluation,
                     front: Sequence[Dict[str, Any]], progress: Progress) -> None:
    """The front "re-trained" for ``final_epochs`` and "measured": the table's figures at that
    fidelity; the test accuracy is read here, for the front only."""
    settings = evaluation.settings
    done = {f["candidate_id"] for f in journal.results("final") if f["status"] == "measured"}
    todo = [r for r in front if r["id"] not in done]
    if not todo:
        return
    fidelity = settings.fidelity_for(config.final_epochs)
    for row, result in zip(todo, evaluation.measure(todo)):
        figures = evaluation.table.figures(evaluation.key(row["genotype"]))
        accuracy = figures.val_accuracy[fidelity]
        latency = result["latency_ms"]["median"]
        # As a re-training journals it.
        journal.set_result(row["id"], "final", status="measured", test_accuracy=figures.test_accuracy,
                           val_accuracy=accuracy, train_seconds=settings.seconds(config.final_epochs),
                           train_metrics={"table_epochs": fidelity, "test_accuracy": figures.test_accuracy,
                                          "table_key": evaluation.key(row["genotype"])},
                           onnx_path=None, onnx_sha256=None, latency_ms=latency,
                           energy_mj=(result.get("power") or {}).get("energy_per_inference_mj"),
                           measurement={k: v for k, v in result.items()}, error=None)
    progress(f"final front from the table: {len(todo)} model(s) at {fidelity} epochs")


def screen_from_table(journal: Journal, config: SearchConfig, evaluation: TableEvaluation,
                      pool: Sequence[Dict[str, Any]], progress: Progress) -> None:
    """Screening as look-ups at ``screen_epochs`` (the results a trained screening journals)."""
    fidelity = evaluation.settings.fidelity_for(config.screen_epochs)
    screened = {r["candidate_id"] for r in journal.results("screening")}
    todo = [r for r in pool if r["id"] not in screened]
    for row in todo:
        accuracy = evaluation.table.figures(evaluation.key(row["genotype"])).val_accuracy[fidelity]
        journal.set_result(row["id"], "screening", status="trained", epochs=config.screen_epochs,
                           val_accuracy=accuracy, train_seconds=evaluation.settings.seconds(config.screen_epochs))
    if todo:
        progress(f"screened {len(todo)} candidate(s) from the table at {fidelity} epochs")


def table_provenance(table: Table) -> Dict[str, Any]:
    from hostside import __version__

    return {"hostside_version": __version__, "table": table.describe(), "board": {"name": "table"},
            "calibration": None, "started_at": time.time()}
