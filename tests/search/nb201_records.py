"""NAS-Bench-201 figures as Candidate records, for strategy tests that need a real landscape.

Validation accuracy (CIFAR-10, 200 epochs) and the Raspberry Pi 4 latency of every cell come
from the table the repository ships (``data/nb201/nb201_hw.csv``), so a strategy's choices
are judged on the benchmark itself rather than on invented numbers.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from hostside.arch.ops.base import SpecError
from hostside.search.candidate import Candidate, Proposal, record_from_row
from hostside.search.strategies import AskContext, Strategy, StrategySettings
from hostside.spaces.nasbench201 import Nasbench201Space

TABLE = Path(__file__).resolve().parents[2] / "data" / "nb201" / "nb201_hw.csv"
OBJECTIVES = ("val_accuracy", "latency_ms")


@functools.lru_cache(maxsize=1)
def figures() -> Dict[str, Tuple[float, float]]:
    """arch string -> (validation accuracy as a fraction, Raspberry Pi 4 latency in ms)."""
    with TABLE.open() as f:
        return {row["arch_str"]: (float(row["c10valid_val_acc_200ep"]) / 100, float(row["raspi4_latency_ms"]))
                for row in csv.DictReader(f)}


def space() -> Nasbench201Space:
    return Nasbench201Space((3, 32, 32), 10)


def settings(population: int = 10, budgets=None, objectives: Sequence[str] = OBJECTIVES) -> StrategySettings:
    return StrategySettings(tuple(objectives), dict(budgets or {}), population, epochs=200, budget=300, seed=0)


def record(space_: Nasbench201Space, candidate_id: int, proposal: Proposal, settings_: StrategySettings,
           arch_hash: str) -> Candidate:
    """The measured record the engine would journal for ``proposal``."""
    accuracy, latency_ms = figures()[space_.genotype_summary(dict(proposal.genotype))["arch_str"]]
    row = {"id": candidate_id, "genotype": dict(proposal.genotype), "parents": list(proposal.parents),
           "operator": proposal.operator, "generation": candidate_id, "status": "measured",
           "arch_hash": arch_hash, "val_accuracy": accuracy, "latency_ms": latency_ms}
    return record_from_row(row, dict(proposal.attrs), settings_.objectives, settings_.budgets)


def drive(strategy: Strategy, space_: Nasbench201Space, evaluations: int, seed: int, batch: int = 1,
          records: Sequence[Candidate] = ()) -> List[Candidate]:
    """Ask and evaluate until ``evaluations`` records exist, one generator per ask as the engine
    does; a proposal the space cannot build (an unconnected cell) or whose network is already
    in the records is dropped, as the engine drops it (by the network's structure hash)."""
    records = list(records)
    seen = {r.arch_hash for r in records}
    step = len(records)
    while len(records) < evaluations:
        ctx = AskContext(space_, tuple(records), np.random.default_rng([seed, step]), step, len(records))
        proposals = strategy.ask(min(batch, evaluations - len(records)), ctx)
        assert proposals, "the strategy stopped proposing"
        for proposal in proposals:
            try:
                arch_hash = space_.decode(dict(proposal.genotype)).structure_hash()
            except SpecError:
                continue
            if arch_hash in seen:
                continue
            seen.add(arch_hash)
            records.append(record(space_, len(records) + 1, proposal, strategy.settings, arch_hash))
        step += 1
    return records
