"""Between the search and the final re-training: the most accurate candidates trained longer.

With ``screen_models`` > 0, the best feasible candidates in the first objective (an accuracy)
are trained again for ``screen_epochs`` on the whole training part, and their screening
figures stand for them when the front is chosen (``hostside.search.final``) and reported.

Why: a search proxy's noise is as large as the differences between its best candidates, and
the maximum over many near-copies of one lineage is its luckiest draw, not the best network.
Measured on Fashion-MNIST (proxy: 3 epochs on 30% of the training part, two data seeds): a
24,314-param network scored 0.858 and 0.865 validation, a 19,978-param one 0.854 and 0.864,
and in a search the second won at 0.872; after 30 epochs they reached 0.923 and 0.909 test
accuracy, and after 5 epochs on everything 0.914 and 0.907 validation, which already ranks
them as the long training does. Screening costs ``screen_models`` x ``screen_epochs`` epochs,
not the whole front at full length.

The pool holds at most ``PER_LINEAGE`` descendants of one first ancestor while other lineages
have feasible candidates left: mutation-only evolution fills the proxy's top places with
near-copies of its best lineages, whose differences the proxy cannot resolve, so another
lineage tells the choice more than one more copy.

Results are the journal's ``screening`` results (``epochs``, ``val_accuracy``,
``train_seconds``, or an ``error``), journaled as each training finishes, so a resumed run
does not screen a candidate twice. Screening reads no test split: it helps choose
the front.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Sequence

from hostside.journal import Journal
from hostside.search.config import SearchConfig
from hostside.search.executors import TrainingExecutor, as_completed_with_heartbeat
from hostside.search.objectives import objective
from hostside.search.pareto import violation
from hostside.search.tasks import training_task
from hostside.spaces.base import SearchSpace

#: Screened descendants of one first ancestor, while other lineages have candidates left.
PER_LINEAGE = 2
#: How often a screening that has not finished says it is still going.
HEARTBEAT_S = 120.0


def with_screening(rows: Sequence[Dict[str, Any]], journal: Journal) -> List[Dict[str, Any]]:
    """The rows, a screened candidate's with its screening validation accuracy in place of its
    search-time one (the ``accuracy`` objective reads validation accuracy too)."""
    screened = {r["candidate_id"]: r["val_accuracy"] for r in journal.results("screening")
                if r.get("val_accuracy") is not None}
    return [{**row, "val_accuracy": screened[row["id"]]} if row["id"] in screened else row for row in rows]


def feasible_candidates(journal: Journal, config: SearchConfig) -> List[Dict[str, Any]]:
    """Measured candidates meeting every budget, with screening figures where there are some."""
    measured = with_screening(journal.candidates(["measured"]), journal)
    return [r for r in measured if violation(r, config.budgets) == 0]


def lineage_roots(rows: Sequence[Dict[str, Any]]) -> Dict[int, int]:
    """Each candidate's first ancestor: followed through first parents to one that has none
    (a sample or an immigrant); a parent missing from ``rows`` ends the walk there."""
    parents = {r["id"]: list(r.get("parents") or []) for r in rows}
    roots: Dict[int, int] = {}
    for candidate_id in parents:
        seen = [candidate_id]
        node = candidate_id
        while parents.get(node) and parents[node][0] in parents and parents[node][0] not in seen:
            node = parents[node][0]
            seen.append(node)
        roots[candidate_id] = node
    return roots


def pick_diverse(ranked: Sequence[Dict[str, Any]], roots: Dict[int, int], size: int, per_lineage: int,
                 same: Callable[[Dict[str, Any]], Any]) -> List[Dict[str, Any]]:
    """The first ``size`` rows of ``ranked``, one per ``same(row)`` key and at most ``per_lineage``
    per root; when lineages run out, the best of the rest fill the remaining places."""
    distinct: Dict[Any, Dict[str, Any]] = {}
    for row in ranked:
        distinct.setdefault(same(row), row)
    within_cap: List[Dict[str, Any]] = []
    over_cap: List[Dict[str, Any]] = []
    per_root: Counter = Counter()
    for row in distinct.values():
        root = roots.get(row["id"], row["id"])
        (within_cap if per_root[root] < per_lineage else over_cap).append(row)
        per_root[root] += 1
    chosen = within_cap[:size] + over_cap[:max(0, size - len(within_cap))]
    position = {row["id"]: i for i, row in enumerate(distinct.values())}
    return sorted(chosen, key=lambda row: position[row["id"]])


def screening_pool(journal: Journal, config: SearchConfig, space: SearchSpace) -> List[Dict[str, Any]]:
    """The ``screen_models`` best feasible candidates in the first objective on their search-time
    figures, one per network and training setting (a survivor trained again is one network), at
    most ``PER_LINEAGE`` per lineage while others have candidates left."""
    everyone = journal.candidates()
    feasible = [r for r in everyone if r["status"] == "measured" and violation(r, config.budgets) == 0]
    first = objective(config.objectives[0])  # an accuracy (config.SCREENED_OBJECTIVES): larger is better
    ranked = sorted((r for r in feasible if first.value(r) is not None), key=lambda r: (-first.value(r), r["id"]))
    return pick_diverse(ranked, lineage_roots(everyone), config.screen_models, PER_LINEAGE,
                        lambda r: (r["arch_hash"], json.dumps(space.training_overrides(r["genotype"]), sort_keys=True)))


def screen_best(journal: Journal, config: SearchConfig, space: SearchSpace, split_dict: Dict[str, Any],
                executor: TrainingExecutor, progress: Callable[[str], None]) -> None:
    """Train the screening pool for ``screen_epochs`` on the whole training part, in parallel."""
    if not config.screen_models:
        return
    screened = {r["candidate_id"] for r in journal.results("screening")}
    todo = [r for r in screening_pool(journal, config, space) if r["id"] not in screened]
    if not todo:
        return
    progress(f"screening the {len(todo)} most accurate candidate(s): {config.screen_epochs} epochs each "
             f"on the whole training part")
    started = time.perf_counter()
    futures = {}
    for row in todo:
        train_config = {**config.train, "epochs": config.screen_epochs, "seed": config.seed,
                        **space.training_overrides(row["genotype"]), "evaluate_test": False}  # the front is not chosen yet
        futures[executor.submit(training_task(row["spec"], config.dataset, split_dict, train_config,
                                              precision=config.precision))] = row
    for future in as_completed_with_heartbeat(futures, started, progress, HEARTBEAT_S, "screening"):
        row = futures[future]
        # Journaled as each finishes; an interrupt journals nothing for the training it cut
        # short, so --resume screens that one again.
        result: Dict[str, Any] = {"epochs": config.screen_epochs, "status": "failed"}
        try:
            metrics = future.result()["metrics"]
            if metrics.get("val_accuracy") is None:
                result["error"] = "screening training diverged (accuracy is not finite)"
            else:
                result.update(status="trained", val_accuracy=metrics["val_accuracy"],
                              train_seconds=metrics.get("train_seconds"))
        except Exception as exc:  # noqa: BLE001 - one failed model keeps its search-time figures
            result["error"] = f"screening failed: {type(exc).__name__}: {exc}"
        journal.set_result(row["id"], "screening", **result)
        if result.get("error"):
            progress(f"  screened {row['id']}: {result['error']}")
        else:
            searched = "" if row["val_accuracy"] is None else f" (search {row['val_accuracy']:.3f})"
            progress(f"  screened {row['id']}: val accuracy {result['val_accuracy']:.3f} after "
                     f"{config.screen_epochs} epochs{searched}")


def screened_summaries(journal: Journal) -> List[Dict[str, Any]]:
    """One entry per screened candidate for the report: search-time and screening figures."""
    rows = {r["id"]: r for r in journal.candidates()}
    out = []
    for result in journal.results("screening"):
        row = rows.get(result["candidate_id"])
        if row is None:
            continue
        out.append({"id": row["id"], "epochs": result["epochs"],
                    "search_val_accuracy": row["val_accuracy"], "val_accuracy": result.get("val_accuracy"),
                    "train_seconds": result.get("train_seconds"), "error": result["error"],
                    "params": row["params"], "latency_ms": row["latency_ms"]})
    return sorted(out, key=lambda e: (e["val_accuracy"] is None, -(e["val_accuracy"] or 0.0), e["id"]))
