"""How the search master scales (one command: ``python3 benchmarks/cluster_scale.py``).

(a) ``--real``: the same search (digits, steady-state, objectives accuracy and params as
    MENNDL optimised accuracy; by default the random strategy, whose steady-state birth b draws
    from its own seeded generator, so both runs train the very same networks, while MENNDL's
    children depend on the order results arrive in: ``--strategy menndl``) on 1 and then 2 real
    local Dask workers (``dask scheduler`` +
    ``dask worker`` processes): candidates trained per minute over the search's training phase
    (from the first submission to the last finished training, both journaled in each
    candidate's ``timings``), and the ratio. Nothing the search judges by is measured on the
    board, so the steady-state scheduler measures after the last training and the workers are
    never held for the board (which shares this host); the time to measure every network then is
    printed apart, with the whole command's wall time. Print ``/proc/loadavg`` with it: on a
    shared machine the ratio says more about the other load than about the master.
(b) default: the master against a simulated cluster whose trainings are timed sleeps: N workers
    in flight (16 .. 256), the MENNDL strategy asks one child per freed slot (real space, real
    population selection over every record) and every result is journaled in SQLite (one
    transaction per arrival, as the journal does). Candidates scheduled and journaled per second
    and the master's CPU time per candidate (process CPU, timer threads included: conservative).
    The cluster starts in steady state: the trainings in flight at the start have residual times
    drawn uniformly from [0, 10 s], as on a cluster that has been running a while, so the rate
    over the whole window is not biased by the first wave all finishing together. Also printed:
    how long a freed worker slot waits for its next training (result arrival to relaunch), the
    direct measure of "keeps the workers busy".
    Target: 256 workers busy with 10 s trainings = 25.6 candidates/s, CPU < 20 ms per candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from statistics import median
from typing import Dict, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hostside.search.candidate import Candidate  # noqa: E402
from hostside.search.strategies import AskContext, StrategySettings, make_strategy  # noqa: E402
from hostside.spaces import make_space  # noqa: E402


def simulated(workers: int, train_s: float, duration_s: float, seed: int = 0) -> dict:
    space = make_space("menndl", (1, 28, 28), 10)
    settings = StrategySettings(objectives=("accuracy", "params"), budgets={}, population=32, epochs=1,
                                budget=10 ** 9, seed=seed, workers=workers)
    strategy = make_strategy("menndl", {}, settings)
    db = sqlite3.connect(Path(tempfile.mkdtemp()) / "journal.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE candidates (id INTEGER PRIMARY KEY, genotype TEXT, parents TEXT, status TEXT, metrics TEXT)")
    records: list = []
    in_flight: dict = {}
    rng = np.random.default_rng(seed)

    finished_at: dict = {}
    slot_idle_s: list = []

    def finish(future: Future, accuracy: float) -> None:
        finished_at[future] = time.perf_counter()
        future.set_result(accuracy)

    def launch(train_time_s: float) -> None:
        ctx = AskContext(space=space, records=tuple(records), rng=np.random.default_rng([seed, 1, len(records)]),
                         generation=0, exercises=len(records))
        proposal = strategy.ask(1, ctx)[0]
        space.decode(proposal.genotype)  # the master decodes (and repairs) before it ships a task
        with db:
            cid = db.execute("INSERT INTO candidates (genotype, parents, status) VALUES (?, ?, 'training')",
                             (json.dumps(proposal.genotype), json.dumps(list(proposal.parents)))).lastrowid
        future: Future = Future()
        threading.Timer(train_time_s, finish, [future, float(rng.uniform(0.5, 0.99))]).start()
        in_flight[future] = (cid, proposal)

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(workers):
        launch(train_s * rng.uniform(0.0, 1.0))  # residual time of a training already running
    while time.perf_counter() - started_wall < duration_s:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            cid, proposal = in_flight.pop(future)
            accuracy = future.result()
            with db:
                db.execute("UPDATE candidates SET status = 'measured', metrics = ? WHERE id = ?",
                           (json.dumps({"accuracy": accuracy}), cid))
            records.append(Candidate(id=cid, genotype=proposal.genotype, parents=proposal.parents,
                                     operator=proposal.operator, generation=0, status="measured", arch_hash=str(cid),
                                     objectives=(1.0 - accuracy, 1000.0), violation=0.0, metrics={"accuracy": accuracy},
                                     attrs={}, weights_path=None, weights_sha256=None, inherited_fraction=None,
                                     weights_from=()))
            strategy.tell([records[-1]], AskContext(space=space, records=tuple(records), rng=rng, generation=0,
                                                    exercises=len(records)))
            launch(train_s * rng.uniform(0.8, 1.2))
            slot_idle_s.append(time.perf_counter() - finished_at.pop(future))
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    finished = len(records)
    return {"workers": workers, "train_s": train_s, "journaled": finished, "per_s": finished / wall,
            "needed_per_s": workers / train_s, "cpu_ms_per_candidate": 1e3 * cpu / max(1, finished + workers),
            "slot_idle_ms_median": 1e3 * median(slot_idle_s), "slot_idle_ms_p95": 1e3 * float(np.percentile(slot_idle_s, 95))}


def training_phase(run_dir: Path) -> Tuple[int, float]:
    """(trainings, seconds from the first submission to the last finished training) of a run."""
    db = sqlite3.connect(run_dir / "journal.sqlite")
    try:
        timings = [json.loads(t) for (t,) in db.execute("SELECT timings FROM candidates WHERE status = 'measured'")]
    finally:
        db.close()
    return len(timings), max(t["finished_at"] for t in timings) - min(t["submitted_at"] for t in timings)


def real(workers: int, budget: int, epochs: int, calibration: Path, strategy: str) -> Dict[str, float]:
    """Candidates trained per minute by a search on ``workers`` real local Dask workers."""
    from hostside.search.loopback_cluster import LoopbackCluster, cluster_env

    env = cluster_env()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LoopbackCluster(Path(tmp))
        try:
            cluster.start(*(f"w{i}" for i in range(workers)))
            address = cluster.address
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--strategy", strategy, "--policy", "steady-state",
                            "--cluster", address,
                            "--objectives", "accuracy,params", "--budget", str(budget), "--population", "4",
                            "--epochs", str(epochs), "--final-epochs", "1", "--calibration", str(calibration),
                            "--out", str(Path(tmp) / "run")], env=env, check=True, capture_output=True)
            wall_s = time.perf_counter() - started
            trained, phase_s = training_phase(Path(tmp) / "run")
            return {"per_min": 60.0 * trained / phase_s, "phase_s": phase_s, "wall_s": wall_s}
        finally:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="(a): 1 vs 2 real local Dask workers")
    parser.add_argument("--calibration", type=Path, help="calibration.json for (a)")
    parser.add_argument("--budget", type=int, default=32, help="trainings per search in (a)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training in (a)")
    parser.add_argument("--strategy", default="random",
                        help="strategy of (a): 'random' (default) trains the very same networks on 1 and 2 workers; "
                             "'menndl' breeds from results in the order they arrive, so its two runs train different ones")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=30.0)
    args = parser.parse_args()
    print(f"load before: {open('/proc/loadavg').read().strip()} on {os.cpu_count()} cores")
    if args.real:
        runs = {n: [real(n, args.budget, args.epochs, args.calibration, args.strategy) for _ in range(args.repeats)] for n in (1, 2)}
        rates = {n: median(r["per_min"] for r in runs[n]) for n in runs}
        for n in runs:
            print(f"(a) {n} worker(s): {rates[n]:.1f} candidates trained/min (repeats "
                  f"{', '.join(format(r['per_min'], '.1f') for r in runs[n])}); training phase "
                  f"{median(r['phase_s'] for r in runs[n]):.1f} s, whole command {median(r['wall_s'] for r in runs[n]):.1f} s")
        print(f"(a) ratio {rates[2] / rates[1]:.2f}x (target >= 1.8x); {args.strategy}, budget {args.budget}, "
              f"{args.epochs} epochs per training; load after: {open('/proc/loadavg').read().strip()}")
        return
    for workers in (16, 64, 256):
        runs = [simulated(workers, 10.0, args.duration_s, seed) for seed in range(args.repeats)]
        r = runs[0]
        print(f"(b) {workers:>3} workers x 10 s trainings: {median(x['per_s'] for x in runs):.1f} candidates/s journaled "
              f"(needed {r['needed_per_s']:.1f}/s to keep them busy), master CPU "
              f"{median(x['cpu_ms_per_candidate'] for x in runs):.2f} ms/candidate (target < 20); a freed slot waits "
              f"{median(x['slot_idle_ms_median'] for x in runs):.1f} ms median, "
              f"{median(x['slot_idle_ms_p95'] for x in runs):.1f} ms p95 for its next training")
    print(f"load after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
