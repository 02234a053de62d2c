"""Constraint search over an elaborated population: pick, per budget, the few networks to train.

The paper separates finding architectures that strictly satisfy constraints from training:
the elaborated population (every network judged by cost and predicted latency) is filtered by
every budget, and only a training budget's worth of the survivors is trained and measured. The
picks are *spread*: accuracy grows with size, so they come from the top ``spread_decades`` of
the feasible params range, and farthest-point sampling over (log params, log MACs, log predicted
latency) keeps them different from one another, starting from the largest feasible network.

``hostside.search.constraint_grid`` repeats a narrow search per dataset and params constraint
(the paper's figure 8) with these picks.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

#: Budget name -> how to read it from a population row (rows hold the analytic cost and the
#: predicted latency; budgets judged only after training, such as accuracy, are not used here).
_ROW_BUDGETS: Dict[str, Callable[[Mapping[str, Any]], Optional[float]]] = {
    "params": lambda r: r["params"],
    "macs": lambda r: r["macs"],
    "activation_bytes": lambda r: r["activation_bytes"],
    "weight_bytes": lambda r: r["weight_bytes"]["fp32"],
    "latency_ms": lambda r: r.get("latency_ms"),
}


def feasible_rows(rows: Sequence[Mapping[str, Any]], budgets: Mapping[str, float]) -> List[Mapping[str, Any]]:
    """Rows meeting every budget the population can judge (an unknown latency is not judged here:
    the engine's pre-training filter, which has the board's calibration, judges it)."""
    kept = []
    for row in rows:
        ok = True
        for name, limit in budgets.items():
            read = _ROW_BUDGETS.get(name)
            value = read(row) if read else None
            if value is not None and value > limit:
                ok = False
                break
        if ok:
            kept.append(row)
    return kept


def spread_picks(rows: Sequence[Mapping[str, Any]], budgets: Mapping[str, float], spread_decades: float = 1.0
                 ) -> List[Dict[str, int]]:
    """Configurations of the feasible networks, best-spread first (see the module docstring)."""
    unique: Dict[str, Mapping[str, Any]] = {}
    for row in feasible_rows(rows, budgets):
        unique.setdefault(json.dumps(row["config"], sort_keys=True), row)
    candidates = list(unique.values())
    if not candidates:
        return []
    top = max(r["params"] for r in candidates)
    candidates = [r for r in candidates if r["params"] >= top / 10 ** spread_decades]
    columns = [[math.log10(max(r["params"], 1)) for r in candidates], [math.log10(max(r["macs"], 1)) for r in candidates]]
    if all(r.get("latency_ms") for r in candidates):
        columns.append([math.log10(r["latency_ms"]) for r in candidates])
    x = np.array(columns).T
    span = x.max(axis=0) - x.min(axis=0)
    x = (x - x.min(axis=0)) / np.where(span > 0, span, 1.0)
    first = int(np.argmax([r["params"] for r in candidates]))
    order = [first]
    distance = np.linalg.norm(x - x[first], axis=1)
    distance[first] = -1.0
    while len(order) < len(candidates):
        nxt = int(np.argmax(distance))
        order.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(x - x[nxt], axis=1))
        distance[order] = -1.0
    return [dict(candidates[i]["config"]) for i in order]
