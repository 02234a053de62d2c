"""Where trainings run: a local process pool by default, a Dask cluster with ``--cluster``.

Both are ``concurrent.futures.Executor``s, so the engine has one code path: ``submit(task)``
ships a plain-data training task (``hostside.search.tasks``) and returns a
``concurrent.futures.Future`` of its plain-data result; results (metrics and files as bytes)
come back to the master, which alone writes the run directory and the journal. Another
backend (a remote cluster) only has to honour that seam. Local workers are started with
``spawn``: the parent may already hold torch's thread pools, which a ``fork`` would copy in a
broken state.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Collection, Dict, Iterator, Mapping, Optional


class TrainingExecutor:
    """A context manager handing out an ``Executor``; ``restart`` replaces a broken local pool."""

    def __init__(self, workers: int, cluster: Optional[str] = None, dataset: Optional[str] = None,
                 dataset_sha256: Optional[str] = None):
        self.workers = workers
        self.cluster = cluster
        self.dataset = dataset  # checked on every Dask worker before the first task (search.cluster)
        self.dataset_sha256 = dataset_sha256
        self.executor: Optional[Executor] = None

    def __enter__(self) -> "TrainingExecutor":
        self.executor = self._open()
        return self

    def _open(self) -> Executor:
        if self.cluster is None:
            return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_prepare_worker, initargs=(os.getpid(),))
        from hostside.search.cluster import ClusterExecutor

        return ClusterExecutor(self.cluster, self.dataset, self.dataset_sha256)

    @property
    def slots(self) -> int:
        """How many trainings may run at once (Dask: the cluster's worker threads, at least 1)."""
        if self.cluster is None:
            return self.workers
        return self.executor.slots

    def submit(self, task: Mapping[str, Any], function: Optional[Callable[..., Dict[str, Any]]] = None) -> Future:
        """Run one training task (``tasks.run_training_task`` unless ``function`` is given)."""
        from hostside.search.tasks import run_training_task

        return self.executor.submit(function or run_training_task, dict(task))

    def restart(self) -> None:
        """Replace a pool whose worker died (e.g. killed for memory); Dask heals itself."""
        if self.cluster is None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._open()

    def describe(self) -> str:
        return f"Dask cluster {self.cluster}" if self.cluster else f"{self.workers} local worker process(es)"

    def __exit__(self, kind, value, traceback) -> None:
        interrupted = kind is KeyboardInterrupt  # Ctrl-C: leave now, the journal re-queues the work
        if self.cluster is not None and self.executor is not None:
            self.executor.shutdown(wait=not interrupted)
        elif self.executor is not None:
            if interrupted:
                _stop_workers(self.executor)
            self.executor.shutdown(wait=not interrupted, cancel_futures=True)


def _stop_workers(executor: Executor) -> None:
    """Terminate a local pool's workers (they ignore SIGINT): otherwise the interpreter's exit
    joins them until their trainings finish, minutes after Ctrl-C. ``_processes`` is the
    pool's own record of its workers (CPython's ProcessPoolExecutor has no public handle)."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


#: How often a local worker checks that the master is still there.
MASTER_CHECK_S = 1.0


def _prepare_worker(master_pid: int) -> None:
    """Training workers leave Ctrl-C to the master (which journals and stops them), so the
    terminal shows one line, not a traceback per worker; and they end when the master does.
    The master passes its pid: a worker still starting when the master dies would otherwise
    take its new parent for the master."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without_master, args=(master_pid,), name="exit-without-master", daemon=True).start()


def _exit_without_master(master_pid: int) -> None:
    """End this worker once its master is gone (killed with SIGKILL or by the OOM killer, which
    leave no chance to stop it): otherwise it trains on for minutes, its result lost, and slows
    the next run on the same cores. An orphan is re-parented, so its parent id changes; torch
    releases the GIL in its kernels, so this thread runs during a training too."""
    while os.getppid() == master_pid:
        time.sleep(MASTER_CHECK_S)
    os._exit(1)


def as_completed_with_heartbeat(futures: Collection[Future], started: float, progress: Callable[[str], None],
                                every_s: float, what: str) -> Iterator[Future]:
    """Each future as it finishes; every ``every_s`` seconds without one, a line saying how many
    of ``what`` are done, so an hour of training does not look like a hang."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=every_s, return_when=FIRST_COMPLETED)
        if not done:
            minutes = (time.perf_counter() - started) / 60
            progress(f"  {what}: {len(futures) - len(pending)}/{len(futures)} finished after {minutes:.0f} min")
        yield from done
