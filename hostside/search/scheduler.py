"""Evaluation slots and the order of work: ``generational`` or ``steady-state``.

``generational`` (the classic loop, with a barrier): ask a whole population, train it in
parallel, measure it, tell the strategy, next generation. ``steady-state`` (asynchronous,
no barrier): keep every training slot busy; as soon as one training finishes, journal it,
measure it, tell the strategy about it and ask for ONE new candidate.

Both run on any ``TrainingExecutor`` (local process pool or Dask) and both resume from the
journal alone: unfinished candidates are trained again (generational: as one batch before
the next generation; steady-state: they simply fill the first slots), trained ones are
measured, finished ones the strategy was not told about are told.

Measurement and training do not overlap on a board that shares this host: steady-state then
holds new submissions while a result waits for the board, lets the running trainings
finish, measures every waiting result and refills the slots. Results whose network was
measured before (a survivor retrained) need no board and are told at once. When the run
judges by nothing a board measures (no measured-latency or energy objective, budget or stop
rule: MENNDL's accuracy-driven search), holding would idle every worker for figures the
strategy does not read, so steady-state tells the strategy each result once it is trained and
measures all of them on the shared board after the last training.

Random generators: generation g draws from ``default_rng([seed, g])``; steady-state birth b
(the b-th journaled candidate) from ``default_rng([seed, 1, b])``, so a resumed run draws
what the uninterrupted one would have drawn for what it has yet to ask.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait
from typing import Dict, List, Sequence

import numpy as np

from hostside.search.config import POLICIES
from hostside.search.engine import ASK_ATTEMPTS_PER_SLOT, UNFINISHED, SearchEngine
from hostside.search.executors import TrainingExecutor


def run_search(engine: SearchEngine, executor: TrainingExecutor, policy: str) -> None:
    """Run the search phase under ``policy`` until the budget is spent or nothing new is left."""
    engine.strategy.prepare(engine.run_dir, engine.space)
    if policy == "generational":
        Generational(engine, executor).run()
    elif policy == "steady-state":
        SteadyState(engine, executor).run()
    else:
        raise ValueError(f"unknown scheduling policy {policy!r}; choose one of {', '.join(POLICIES)}")


class Generational:
    def __init__(self, engine: SearchEngine, executor: TrainingExecutor):
        self.engine = engine
        self.executor = executor

    def rng(self, generation: int) -> np.random.Generator:
        return np.random.default_rng([self.engine.config.seed, generation])

    def run(self) -> None:
        engine = self.engine
        self.recover()
        while engine.remaining() > 0:
            generation = engine.journal.last_generation() + 1
            started = time.perf_counter()
            rng = self.rng(generation)
            ids = engine.ask(generation, engine.config.population, rng)
            if not ids:
                if not engine.strategy_finished:
                    engine.progress(f"generation {generation}: no new candidate passed the filter in "
                                    f"{ASK_ATTEMPTS_PER_SLOT * engine.config.population} proposals; "
                                    f"stopping the search early")
                self.tell_untold()
                break
            self.train(ids)
            engine.measure(engine.journal.candidates(["trained"]))
            self.tell_untold()
            engine.write_live_report()
            engine.report_progress(f"generation {generation}",
                                   [r for r in engine.journal.candidates() if r["generation"] == generation],
                                   time.perf_counter() - started)

    def recover(self) -> None:
        """Finish what a killed run left half done (nothing finished is redone)."""
        engine = self.engine
        unfinished = engine.journal.candidates(UNFINISHED)
        if unfinished:
            engine.progress(f"resuming: re-training {len(unfinished)} candidate(s) left unfinished")
            self.train([r["id"] for r in unfinished])
        engine.measure(engine.journal.candidates(["trained"]))
        self.tell_untold()

    def tell_untold(self) -> None:
        """Tell the strategy, one generation at a time, what it has not been told yet."""
        by_generation: Dict[int, List[dict]] = {}
        for row in self.engine.untold():
            by_generation.setdefault(row["generation"], []).append(row)
        for generation in sorted(by_generation):
            self.engine.tell(by_generation[generation], self.rng(generation), generation)

    def train(self, ids: Sequence[int]) -> None:
        """Train candidates in parallel (the barrier); each ends ``trained`` or ``failed``."""
        futures = {self.engine.submit(candidate_id, self.executor): candidate_id for candidate_id in ids}
        broken = False
        for future in as_completed(futures):
            broken |= self.engine.finish_training(futures[future], future)
        if broken:
            self.executor.restart()


class SteadyState:
    def __init__(self, engine: SearchEngine, executor: TrainingExecutor):
        self.engine = engine
        self.executor = executor
        self.in_flight: Dict[Future, int] = {}
        self.reported_at = 0
        self.measure_at_end = engine.measure_shares_host and not engine.judges_by_board

    def generation(self) -> int:
        """Nominal generation of the next birth: finished trainings per population."""
        engine = self.engine
        return len(engine.journal.candidates(["trained", "measured", "failed"])) // engine.config.population

    def rng(self) -> np.random.Generator:
        birth = len(self.engine.journal.candidates())
        return np.random.default_rng([self.engine.config.seed, 1, birth])

    def run(self) -> None:
        engine = self.engine
        started = time.perf_counter()
        if self.measure_at_end:
            engine.progress("steady-state: the board shares this host and nothing the search judges by is measured "
                            "on it, so the networks are measured after the last training")
        for row in engine.journal.candidates(UNFINISHED):  # resume: unfinished ones take the first slots
            self.in_flight[engine.submit(row["id"], self.executor)] = row["id"]
        self.settle()
        exhausted = False
        while True:
            if not exhausted and not self.holding():
                exhausted = self.fill()
            if not self.in_flight:
                break
            done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            broken = False
            for future in sorted(done, key=lambda f: self.in_flight[f]):
                broken |= engine.finish_training(self.in_flight.pop(future), future)
            if broken:
                self._restart()
            finished = self.settle()
            if finished - self.reported_at >= engine.config.population:
                self.reported_at = finished
                engine.write_live_report()
        if exhausted and not engine.strategy_finished:
            engine.progress(f"steady-state: no new candidate passed the filter in {ASK_ATTEMPTS_PER_SLOT} "
                            f"proposals; stopping the search early")
        self.settle(last=True)
        engine.report_progress("steady-state search", engine.journal.candidates(), time.perf_counter() - started)

    def fill(self) -> bool:
        """Ask one candidate per free slot; True when the strategy or space has nothing new."""
        engine = self.engine
        while len(self.in_flight) < self.executor.slots and engine.remaining() > 0:
            ids = engine.ask(self.generation(), 1, self.rng())
            if not ids:
                return True
            self.in_flight[engine.submit(ids[0], self.executor)] = ids[0]
        return False

    def holding(self) -> bool:
        """Results wait for a board that shares this host: let the running trainings drain first."""
        engine = self.engine
        return (engine.measure_shares_host and not self.measure_at_end
                and any(engine.needs_board(r) for r in engine.journal.candidates(["trained"])))

    def settle(self, last: bool = False) -> int:
        """Measure what may be measured now, then tell the strategy every newly finished candidate;
        returns how many trainings have finished so far. ``last``: no training is left to run."""
        engine = self.engine
        trained = engine.journal.candidates(["trained"])
        if (self.measure_at_end and not last) or (engine.measure_shares_host and self.in_flight):
            trained = [r for r in trained if not engine.needs_board(r)]
        engine.measure(trained)
        untold = engine.untold(trained_too=self.measure_at_end)
        if untold:
            engine.tell(untold, self.rng(), self.generation())
        return len(engine.journal.candidates(["trained", "measured", "failed"]))

    def _restart(self) -> None:
        """A local worker died: every other future of that pool is lost too; re-submit them."""
        lost = dict(self.in_flight)
        self.in_flight.clear()
        self.executor.restart()
        for candidate_id in lost.values():
            self.in_flight[self.engine.submit(candidate_id, self.executor)] = candidate_id

