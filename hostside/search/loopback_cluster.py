"""A real Dask cluster on loopback: ``dask scheduler`` and ``dask worker`` as separate processes,
started with Dask's own commands exactly as docs/cluster.md tells a user to.

Why in the package: the cluster tests, the MENNDL experiment and the cluster scaling benchmark
all need the same cluster, started the way a user starts one, and a user can try ``hostside
search --cluster`` on one machine with it before renting nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional


#: The directory holding the ``hostside`` package: workers import it from there.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def cluster_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of the cluster's processes and of a search driving them: one thread per
    worker (the workers are the parallelism), and workers that may start processes of their own
    (the engine's training subprocesses)."""
    return {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "OMP_NUM_THREADS": "1",
            "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(extra or {})}


class LoopbackCluster:
    """Scheduler + named workers; ``kill_worker`` SIGKILLs one, ``stop_scheduler`` ends the scheduler."""

    def __init__(self, root: Path):
        self.root = root
        self.scheduler_file = root / "scheduler.json"
        self.scheduler: Optional[subprocess.Popen] = None
        self.workers: Dict[str, subprocess.Popen] = {}
        self.address = ""

    def start_scheduler(self, port: int = 0) -> str:
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard", "--scheduler-file", str(self.scheduler_file)],
            env=cluster_env(), stdout=subprocess.DEVNULL, stderr=open(self.root / "scheduler.log", "ab"),
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.scheduler_file.is_file() or not self.scheduler_file.read_text().strip():
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {(self.root / 'scheduler.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        return self.address

    def start_worker(self, name: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--name", name, "--local-directory", str(self.root / name)],
            env=cluster_env(env), stdout=subprocess.DEVNULL, stderr=open(self.root / f"{name}.log", "ab"),
            start_new_session=True)
        self.workers[name] = worker
        return worker

    def start(self, *workers: str) -> None:
        """A scheduler and the named workers, each its own process, once all have joined."""
        self.start_scheduler()
        for name in workers:
            self.start_worker(name)
        self.wait_for_workers(len(workers))

    def wait_for_workers(self, n: int, timeout_s: float = 90) -> None:
        from dask.distributed import Client

        with Client(self.address, timeout="20s", set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout_s)

    def kill_worker(self, name: str) -> None:
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(10)

    def stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait(10)

    def close(self) -> None:
        processes: List[subprocess.Popen] = list(self.workers.values())
        if self.scheduler is not None:
            processes.append(self.scheduler)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
