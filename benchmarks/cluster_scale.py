"""Issue 14 item 5: how the master scales (one command: ``python3 benchmarks/cluster_scale.py``).

(a) ``--real``: the same MENNDL search (digits, steady-state) on 1 and then 2 real local Dask
    workers (``dask scheduler`` + ``dask worker`` processes): candidates trained per minute and
    the ratio. Print ``/proc/loadavg`` with it: on a shared machine the ratio says more about the
    other load than about the master.
(b) default: the master against a simulated cluster whose trainings are timed sleeps: N workers
    in flight (16 .. 256), the MENNDL strategy asks one child per freed slot (real space, real
    population selection over every record) and every result is journaled in SQLite (one
    transaction per arrival, as the journal does). Candidates scheduled and journaled per second
    and the master's CPU time per candidate (process CPU, timer threads included: conservative).
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

    def launch() -> None:
        ctx = AskContext(space=space, records=tuple(records), rng=np.random.default_rng([seed, 1, len(records)]),
                         generation=0, exercises=len(records))
        proposal = strategy.ask(1, ctx)[0]
        space.decode(proposal.genotype)  # the master decodes (and repairs) before it ships a task
        with db:
            cid = db.execute("INSERT INTO candidates (genotype, parents, status) VALUES (?, ?, 'training')",
                             (json.dumps(proposal.genotype), json.dumps(list(proposal.parents)))).lastrowid
        future: Future = Future()
        threading.Timer(train_s * rng.uniform(0.8, 1.2), future.set_result, [float(rng.uniform(0.5, 0.99))]).start()
        in_flight[future] = (cid, proposal)

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(workers):
        launch()
    warm_s = 1.2 * train_s  # the rate is taken once the first wave has finished (steady state)
    at_warm = None
    while time.perf_counter() - started_wall < duration_s:
        if at_warm is None and time.perf_counter() - started_wall >= warm_s:
            at_warm = (time.perf_counter(), len(records))
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
            launch()
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    finished = len(records)
    busy_target = workers / train_s
    rate = (finished - at_warm[1]) / (time.perf_counter() - at_warm[0]) if at_warm else finished / wall
    return {"workers": workers, "train_s": train_s, "journaled": finished, "per_s": rate,
            "needed_per_s": busy_target, "cpu_ms_per_candidate": 1e3 * cpu / max(1, finished + workers)}


def real(workers: int, budget: int, calibration: Path) -> float:
    """Candidates trained per minute by a MENNDL search on ``workers`` real local Dask workers."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        sched_file = Path(tmp) / "s.json"
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            while not sched_file.is_file() or not sched_file.read_text().strip():
                time.sleep(0.1)
            address = json.loads(sched_file.read_text())["address"]
            for i in range(workers):
                procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                               "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--strategy", "menndl", "--cluster", address,
                            "--budget", str(budget), "--population", "4", "--epochs", "3", "--final-epochs", "1",
                            "--calibration", str(calibration), "--out", str(Path(tmp) / "run")], env=env, check=True,
                           capture_output=True)
            return budget / ((time.perf_counter() - started) / 60.0)
        finally:
            for p in procs:
                p.kill()
                p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="(a): 1 vs 2 real local Dask workers")
    parser.add_argument("--calibration", type=Path, help="calibration.json for (a)")
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=30.0)
    args = parser.parse_args()
    print(f"load before: {open('/proc/loadavg').read().strip()} on {os.cpu_count()} cores")
    if args.real:
        rates = {n: median(real(n, args.budget, args.calibration) for _ in range(args.repeats)) for n in (1, 2)}
        print(f"(a) candidates/min: 1 worker {rates[1]:.2f}, 2 workers {rates[2]:.2f}, ratio {rates[2] / rates[1]:.2f}x "
              f"(target >= 1.8x); load after: {open('/proc/loadavg').read().strip()}")
        return
    for workers in (16, 64, 256):
        runs = [simulated(workers, 10.0, args.duration_s, seed) for seed in range(args.repeats)]
        r = runs[0]
        print(f"(b) {workers:>3} workers x 10 s trainings: {median(x['per_s'] for x in runs):.1f} candidates/s journaled "
              f"(needed {r['needed_per_s']:.1f}/s to keep them busy), master CPU "
              f"{median(x['cpu_ms_per_candidate'] for x in runs):.2f} ms/candidate (target < 20)")
    print(f"load after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
