"""Measure many models across several boards of one kind, one model per board at a time.

Each board gets a worker thread that takes the next model from a shared queue (the queue per
device key of TVM's tracker, in-process). A board that fails (unreachable, or its link keeps
dropping) stops taking work and its model goes back in the queue for the others; only when
no board is left does a model get a ``connection_error`` result. Results come back in input
order.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

from device_agent.protocol import error_result
from hostside.boards.board import Board
from hostside.errors import UserError

#: Error codes that say "this board is unwell", not "this model is bad": the model is re-dispatched.
BOARD_FAILURE_CODES = ("connection_error",)


class BoardPool:
    def __init__(self, boards: Sequence[Board]) -> None:
        if not boards:
            raise UserError("a board pool needs at least one board; add boards with `hostside boards add`")
        names = [b.name for b in boards]
        if len(set(names)) != len(names):
            raise UserError(f"a board appears twice in the pool ({', '.join(names)}); list each board once")
        self.boards = list(boards)

    def check_same_kind(self) -> str:
        """The common device key; UserError when the boards are of different kinds."""
        keys = {board.name: board.key for board in self.boards}
        if len(set(keys.values())) > 1:
            listing = ", ".join(f"{name}={key}" for name, key in keys.items())
            raise UserError(f"pooled boards must be of one kind, got {listing}; pool only boards with the same key")
        return next(iter(keys.values()))

    def measure_many(
        self,
        model_paths: Sequence[Any],
        *,
        progress: Optional[Callable[[int, int], None]] = None,
        **measure_kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """``Board.measure`` for every model; ``progress(done, total)`` after each result."""
        total = len(model_paths)
        results: List[Optional[Dict[str, Any]]] = [None] * total
        work: "queue.Queue[int]" = queue.Queue()
        for index in range(total):
            work.put(index)
        lock = threading.Lock()
        done = [0]
        healthy = [len(self.boards)]
        failures: List[str] = []

        def finish(index: int, result: Dict[str, Any]) -> None:
            with lock:
                results[index] = result
                done[0] += 1
                count = done[0]
            if progress is not None:
                progress(count, total)

        def worker(board: Board) -> None:
            while True:
                with lock:
                    if done[0] == total:
                        return
                try:
                    index = work.get(timeout=0.1)
                except queue.Empty:
                    continue
                try:
                    result = board.measure(model_paths[index], **measure_kwargs)
                except UserError as exc:
                    result = error_result("connection_error", str(exc))
                code = (result.get("error") or {}).get("code")
                if code in BOARD_FAILURE_CODES:
                    with lock:
                        healthy[0] -= 1
                        failures.append(f"{board.name}: {result['error']['message']}")
                        last_board = healthy[0] == 0
                    if last_board:
                        finish(index, result)
                        self._fail_remaining(work, finish, failures)
                    else:
                        work.put(index)  # another board takes it
                    return
                finish(index, result)

        threads = [threading.Thread(target=worker, args=(board,), name=f"pool-{board.name}", daemon=True) for board in self.boards]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self._fill(results, failures)

    @staticmethod
    def _fail_remaining(work: "queue.Queue[int]", finish: Callable[[int, Dict[str, Any]], None], failures: List[str]) -> None:
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            finish(index, error_result("connection_error", "every board in the pool failed: " + "; ".join(failures)))

    @staticmethod
    def _fill(results: List[Optional[Dict[str, Any]]], failures: List[str]) -> List[Dict[str, Any]]:
        """Results in input order; a hole (none left to measure it) becomes a connection error."""
        message = "every board in the pool failed: " + "; ".join(failures)
        return [r if r is not None else error_result("connection_error", message) for r in results]
