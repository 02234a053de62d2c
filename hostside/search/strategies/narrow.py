"""The narrow constraint search: propose the best-spread networks of an elaborated population
that satisfy every budget, so only those are trained and measured.

The elaborated population (``hostside.laws.elaborate``: laws learned for a grid of params targets,
every sample judged by cost and, with a calibration, predicted latency) is a pure function of the
space, the options and the seed; it is memoised per process and otherwise recomputed, or read
from ``population_file`` (the output of ``hostside laws elaborate``). Which picks were tried is
read from the run's records, so the strategy keeps no state and a resumed run continues.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Dict, List

from hostside.errors import UserError
from hostside.options import setting
from hostside.search.candidate import Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy

_POPULATIONS: Dict[str, List[Dict[str, Any]]] = {}


def _say(message: str) -> None:
    """Elaboration progress (minutes with the defaults) on stderr, where the search reports too;
    the strategy API has no progress channel of its own."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] narrow elaboration: {message}", file=sys.stderr, flush=True)


@dataclass
class NarrowOptions:
    """Defaults are the paper's: tau = 10^3..10^6, GA 100 + 900 laws x 10 samples, k = 10, n_val = 100."""

    decades: List[int] = setting(default_factory=lambda: [3, 4, 5, 6], help="the target grid: tau = 10^d for each "
                                 "d, windows over [tau, 2tau, 5tau, 10tau]")
    n_init: int = setting(100, "initial GA population of laws", minimum=1)
    n_steps: int = setting(900, "GA steps", minimum=0)
    n_eval: int = setting(10, "samples per law evaluation (at least 2)", minimum=2)
    k: int = setting(10, "laws kept per target window (spectral clusters)", minimum=1)
    n_val: int = setting(100, "samples per law in the elaboration", minimum=1)
    spread_decades: float = setting(1.0, "how far apart (in decades of params) the trained picks are spread",
                                    minimum=0, above_minimum=True)
    calibration: str = setting("", "a `calibration.json` that predicts latency for every sample (needed for a "
                               "`latency_ms` budget)")
    population_file: str = setting("", "an elaborated population from `hostside laws elaborate` to pick from "
                                   "instead of computing it")

    def validate(self) -> None:
        if not self.decades or not all(0 <= d <= 9 for d in self.decades):
            raise UserError(f"option 'decades': {self.decades!r} is not allowed; give integers 0..9, e.g. [3, 4, 5]")


@register_strategy("narrow")
class NarrowSearch(Strategy):
    Options = NarrowOptions

    def population(self, ctx: AskContext) -> List[Dict[str, Any]]:
        from hostside.laws.elaborate import elaborate, load_population, target_grid, windows_of
        from hostside.laws.ga import GASettings

        space = ctx.space
        if not space.name.startswith("narrow:"):
            raise UserError(f"--strategy narrow searches a narrow space; give --space narrow:<family> "
                            f"(got {space.name!r})")
        o = self.options
        key = json.dumps([space.describe(), vars(o), self.settings.seed, sorted(self.settings.budgets.items())],
                         sort_keys=True, default=str)
        if key not in _POPULATIONS:
            if o.population_file:
                data = load_population(o.population_file)
                if data.get("space") != space.describe():
                    raise UserError(f"{o.population_file}: elaborated for {data.get('space')}, not for "
                                    f"{space.describe()}; elaborate this space and input")
                rows = data["population"]
            else:
                calibration = None
                if o.calibration:
                    from hostside.calibration.artifact import load_calibration

                    calibration = load_calibration(o.calibration)
                limit = self.settings.budgets.get("params")
                decades = list(o.decades)
                if limit is not None and limit <= 10.0 ** min(decades):
                    # A budget at the bottom of the grid: add the decade below it, so the
                    # population holds networks that satisfy it.
                    decades.append(max(int(math.floor(math.log10(limit))) - 1, 0))
                windows = [w for w in windows_of(target_grid(decades)) if limit is None or w[0] < limit]
                settings = GASettings(n_init=o.n_init, n_steps=o.n_steps, n_eval=o.n_eval, k=o.k,
                                      seed=self.settings.seed)
                rows = elaborate(space, calibration, windows, settings, o.n_val, say=_say)["population"]
            _POPULATIONS[key] = rows
        return _POPULATIONS[key]

    def picks(self, ctx: AskContext) -> List[Dict[str, int]]:
        from hostside.laws.constraint import spread_picks

        return spread_picks(self.population(ctx), self.settings.budgets, self.options.spread_decades)

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        """The next ``n`` picks whose network was not tried yet. Networks are compared by content
        hash, not genotype: variables of unused repetitions do not change the network."""
        space = ctx.space
        tried = {space.spec(dict(c.genotype)).content_hash() for c in ctx.records + ctx.in_flight}
        fresh: List[Dict[str, int]] = []
        for config in self.picks(ctx):
            digest = space.spec(config).content_hash()
            if digest not in tried:
                fresh.append(config)
                tried.add(digest)
            if len(fresh) == n:
                break
        return [Proposal(config, "narrow_pick") for config in fresh]
