"""Training on an existing Dask distributed cluster (``hostside search --cluster tcp://HOST:PORT``).

The cluster is started with Dask's own commands (``dask scheduler``, ``dask worker ADDRESS``;
see docs/cluster.md); hostside only connects a client to it. What this module adds to a bare
``Client``:

* **Preflight, before anything is submitted**: a bounded wait for at least one worker, then every
  worker is asked (``Client.run``) for its hostside and torch versions and to load the run's
  dataset and return its fingerprint. Any mismatch is one line naming the worker and both
  versions; a worker that cannot read the dataset is one line naming the path.
* **Dataset: loaded by each worker from the source it is given, not scattered.** Why: the
  embedded default (``digits``) needs no file at all, and a real dataset (Fashion-MNIST,
  CIFAR) is read once per worker process from its own disk (``cached_dataset``), so the master
  never holds or sends hundreds of MB per worker, and a worker that restarts after a crash
  reloads it on its own instead of needing the master to re-scatter. The fingerprint check makes
  "the same path holds another file on that worker" an error, not a silent wrong result.
  No shared file system is needed: results (metrics, ONNX, weights) come back as bytes and the
  master alone writes the run directory and the journal.
* **Lost worker**: Dask re-runs a task whose worker died on another worker (up to
  ``distributed.scheduler.allowed-failures`` times); the master only sees the one result, so
  the candidate is journaled once.
* **Lost scheduler**: every in-flight future fails with :class:`ClusterLost`, a ``UserError``
  the engine does not journal as a failed training; the candidates stay ``training``, the run
  ends with one line and ``--resume`` re-trains exactly those.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Dict, Mapping, Optional

from hostside.errors import UserError

#: Seconds to wait for the first worker to join (``HOSTSIDE_CLUSTER_WAIT_S`` overrides).
WORKER_WAIT_S = 60.0
#: Seconds to wait for the scheduler to answer (``HOSTSIDE_CLUSTER_CONNECT_S`` overrides).
CONNECT_TIMEOUT_S = 10.0


class ClusterLost(UserError):
    """The scheduler went away: the in-flight trainings are not failures, they are re-run on resume."""


def versions() -> Dict[str, str]:
    """The versions master and workers must share (a pickled task is only valid between equals)."""
    import torch

    from hostside import __version__

    return {"hostside": __version__, "torch": torch.__version__.split("+")[0]}


def worker_report(dataset: str) -> Dict[str, Any]:
    """Runs on every worker: its versions and the fingerprint of the dataset as it reads it."""
    report: Dict[str, Any] = {"versions": versions(), "dataset_sha256": None, "dataset_error": None}
    try:
        from hostside.train.datasets import cached_dataset

        report["dataset_sha256"] = cached_dataset(dataset).fingerprint()
    except Exception as exc:  # noqa: BLE001 - any reason the worker cannot read it is reported in one line
        report["dataset_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return report


def check_workers(reports: Mapping[str, Mapping[str, Any]], master: Mapping[str, str], dataset: str,
                  dataset_sha256: Optional[str]) -> None:
    """One UserError line for the first worker that differs from the master or lacks the data."""
    for address, report in sorted(reports.items()):
        for name, mine in master.items():
            theirs = report["versions"].get(name)
            if theirs != mine:
                raise UserError(f"Dask worker {address} runs {name} {theirs}, this master runs {name} {mine}; "
                                f"install the same {name} version on every worker")
        if report["dataset_error"]:
            raise UserError(f"Dask worker {address} cannot read the dataset {dataset!r} ({report['dataset_error']}); "
                            f"copy it to the same path on every worker")
        if dataset_sha256 and report["dataset_sha256"] != dataset_sha256:
            raise UserError(f"Dask worker {address} reads another dataset at {dataset!r} (sha256 "
                            f"{str(report['dataset_sha256'])[:12]}, the master's is {dataset_sha256[:12]}); "
                            f"copy the master's files there")


def on_worker(function: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    """Run ``function`` on a Dask worker; a training result also records which worker trained
    it (``metrics.worker``: the journal then says where every network was trained)."""
    from dask.distributed import get_worker

    result = function(*args)
    if isinstance(result, dict) and isinstance(result.get("metrics"), dict):
        worker = get_worker()
        result["metrics"]["worker"] = str(worker.name or worker.address)
    return result


def _quiet_dask_logs() -> None:
    """Dask's config gives ``distributed.client`` etc. levels of their own, so each is set."""
    for name in ["distributed", "tornado", "asyncio", *logging.root.manager.loggerDict]:
        if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


class ClusterExecutor:
    """``submit(fn, task) -> concurrent.futures.Future`` on a Dask cluster, with the checks above."""

    def __init__(self, address: str, dataset: Optional[str] = None, dataset_sha256: Optional[str] = None,
                 wait_s: Optional[float] = None):
        self.address = address
        self.wait_s = float(os.environ.get("HOSTSIDE_CLUSTER_WAIT_S", WORKER_WAIT_S)) if wait_s is None else wait_s
        self.client = self._connect()
        self._lock = threading.Lock()
        self._pending: Dict[Any, Future] = {}
        try:
            self._wait_for_workers()
            if dataset is not None:
                reports = self.client.run(worker_report, dataset)
                check_workers(reports, versions(), dataset, dataset_sha256)
        except BaseException:
            self.client.close()
            raise

    def _connect(self):
        from dask.distributed import Client

        # Why silence distributed's own log: a lost connection makes it log a warning per retry
        # and per future; the user gets one line from ClusterLost instead (--debug still raises).
        _quiet_dask_logs()

        try:
            timeout_s = float(os.environ.get("HOSTSIDE_CLUSTER_CONNECT_S", CONNECT_TIMEOUT_S))
            return Client(self.address, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot reach the Dask scheduler at {self.address!r} ({reason}); check the address "
                            f"(tcp://HOST:PORT) and that `dask scheduler` runs there") from None

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while not self.client.scheduler_info().get("workers"):
            if time.monotonic() >= deadline:
                raise UserError(f"the Dask scheduler at {self.address} has no workers after {self.wait_s:g} s; start "
                                f"some with `dask worker {self.address}`")
            time.sleep(0.2)

    @property
    def slots(self) -> int:
        """Worker threads the cluster has now (at least 1): as many trainings are kept in flight."""
        try:
            workers = self.client.scheduler_info().get("workers", {})
        except Exception:  # noqa: BLE001 - a lost scheduler shows up on the futures; keep one slot meanwhile
            return 1
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, function: Callable[..., Dict[str, Any]], *args: Any) -> Future:
        """A plain ``concurrent.futures.Future`` of ``function(*args)`` run on some worker."""
        result: Future = Future()
        result.set_running_or_notify_cancel()
        try:
            # Keyed by the task's own name, so Dask's dashboard and task stream show trainings as such.
            remote = self.client.submit(on_worker, function, *args, pure=False,
                                        key=f"{function.__name__}-{uuid.uuid4().hex}")
        except Exception as exc:  # noqa: BLE001 - the scheduler is gone already
            result.set_exception(self._lost(exc))
            return result
        with self._lock:
            self._pending[remote.key] = result
        remote.add_done_callback(self._settle)
        return result

    def _settle(self, remote) -> None:
        with self._lock:
            result = self._pending.pop(remote.key, None)
        if result is None or result.done():
            return
        if remote.status == "finished":
            try:
                result.set_result(remote.result())
            except Exception as exc:  # noqa: BLE001 - e.g. the result could not be fetched: scheduler gone
                result.set_exception(self._lost(exc))
        elif remote.status == "cancelled":
            result.set_exception(self._lost(None))
        else:
            result.set_exception(remote.exception())

    def _lost(self, exc: Optional[BaseException]) -> ClusterLost:
        detail = f" ({str(exc).splitlines()[0]})" if exc is not None and str(exc) else ""
        return ClusterLost(f"lost the Dask scheduler at {self.address}{detail}; the finished candidates are saved: "
                           f"restart the scheduler and workers, then `hostside search --resume RUN`")

    def shutdown(self, wait: bool = True) -> None:
        """Close the client; trainings still in flight are abandoned (they stay ``training`` in
        the journal, so a resume re-runs them)."""
        try:
            self.client.close(timeout=5 if wait else 1)
        except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone must not hide the real error
            pass
