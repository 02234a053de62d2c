"""The search's view of its journal: candidate rows and attributes read once, then kept current.

Why: the engine and scheduler look at every candidate several times per generation (records
for the strategy, the committed budget, what is untold, the front), and each full read decodes
every row's JSON columns (spec, cost, genotype, metrics). That is quadratic in the run's size:
a 300-candidate table run spent 90 % of ten minutes decoding rows. During the search phase the
master is the only writer of candidates and attributes, and it writes them through this view,
so the cached rows stay the journal's: each write goes to SQLite first (autocommit, as before),
then into a new copy of the cached row, JSON columns as the journal would decode them. Rows
are never changed in place, so the dicts handed out are shared and must be treated as
read-only (as the engine always has). Everything else is passed to the journal.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterable, List, Optional

from hostside.journal import JSON_COLUMNS, Journal


def _as_decoded(column: str, value: Any) -> Any:
    """The value as the journal gives it back (a tuple as a list, integer keys as strings)."""
    if column in JSON_COLUMNS and value is not None:
        return json.loads(json.dumps(value))
    return value


class CachedJournal:
    """A ``Journal`` whose candidate reads come from memory; ``version(id)`` changes on each write."""

    def __init__(self, journal: Journal):
        self._journal = journal
        self._rows: Optional[Dict[int, Dict[str, Any]]] = None
        self._attrs: Optional[Dict[int, Dict[str, Any]]] = None
        self._versions: Dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    def _all_rows(self) -> Dict[int, Dict[str, Any]]:
        if self._rows is None:
            self._rows = {r["id"]: r for r in self._journal.candidates()}
        return self._rows

    def _changed(self, candidate_id: int) -> None:
        self._versions[candidate_id] = self._versions.get(candidate_id, 0) + 1

    def version(self, candidate_id: int) -> int:
        return self._versions.get(candidate_id, 0)

    def candidates(self, statuses: Optional[Iterable[str]] = None) -> List[Dict[str, Any]]:
        wanted = None if statuses is None else set(statuses)
        return [r for r in self._all_rows().values() if wanted is None or r["status"] in wanted]

    def candidate(self, candidate_id: int) -> Dict[str, Any]:
        rows = self._all_rows()
        if candidate_id not in rows:
            return self._journal.candidate(candidate_id)  # raises as the journal does
        return rows[candidate_id]

    def add_candidate(self, **fields: Any) -> int:
        candidate_id = self._journal.add_candidate(**fields)
        self._all_rows()[candidate_id] = self._journal.candidate(candidate_id)
        self._changed(candidate_id)
        return candidate_id

    def update(self, candidate_id: int, **fields: Any) -> None:
        self._journal.update(candidate_id, **fields)
        rows = self._all_rows()
        if candidate_id in rows:
            rows[candidate_id] = {**rows[candidate_id], **{k: _as_decoded(k, v) for k, v in fields.items()},
                                  "updated_at": time.time()}
        else:
            rows[candidate_id] = self._journal.candidate(candidate_id)
        self._changed(candidate_id)

    def all_attrs(self) -> Dict[int, Dict[str, Any]]:
        if self._attrs is None:
            self._attrs = self._journal.all_attrs()
        return {k: dict(v) for k, v in self._attrs.items()}

    def attrs(self, candidate_id: int) -> Dict[str, Any]:
        return dict(self.all_attrs().get(candidate_id, {}))

    def set_attrs(self, candidate_id: int, attrs: Dict[str, Any]) -> None:
        self._journal.set_attrs(candidate_id, attrs)
        if self._attrs is not None:
            self._attrs.setdefault(candidate_id, {}).update(self._journal.attrs(candidate_id))
        self._changed(candidate_id)
