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
import signal
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable, Dict, Mapping, Optional

from hostside.errors import UserError


class TrainingExecutor:
    """A context manager handing out an ``Executor``; ``restart`` replaces a broken local pool."""

    def __init__(self, workers: int, cluster: Optional[str] = None):
        self.workers = workers
        self.cluster = cluster
        self._client = None
        self.executor: Optional[Executor] = None

    def __enter__(self) -> "TrainingExecutor":
        self.executor = self._open()
        return self

    def _open(self) -> Executor:
        if self.cluster is None:
            return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_ignore_sigint)
        from dask.distributed import Client

        if self._client is None:
            try:
                self._client = Client(self.cluster, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise UserError(f"cannot reach the Dask scheduler at {self.cluster!r} ({exc}); "
                                f"check the address (tcp://HOST:PORT) and that the scheduler runs") from None
        return self._client.get_executor()

    @property
    def slots(self) -> int:
        """How many trainings may run at once (Dask: the cluster's worker threads, at least 1)."""
        if self._client is None:
            return self.workers
        threads = sum(w.get("nthreads", 1) for w in self._client.scheduler_info().get("workers", {}).values())
        return max(1, threads)

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
        if self._client is not None:
            self.executor.shutdown(wait=not interrupted)
            self._client.close()
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


def _ignore_sigint() -> None:
    """Training workers leave Ctrl-C to the master (which journals and stops them), so the
    terminal shows one line, not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
