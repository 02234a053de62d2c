"""What a search run is asked to do: one validated, JSON-ready settings object.

The same ``SearchConfig`` comes from the embedded default, a TOML file (``--config``) and
command-line flags (flags win), and is stored in the journal, so ``--resume`` continues with
exactly the settings the run started with. Every bad key or value is a ``UserError`` naming
the key and what is allowed. A config file looks like::

    dataset = "digits"
    board = "pi4-a,pi4-b"          # a pool of boards of one kind
    strategy = "nsga2"             # or "random", "ea4cnn", ... (or a [strategy] table, below);
                                   # unset: surrogate-hv over nasbench201, nsga2 elsewhere
    policy = "generational"        # or "steady-state" (no generation barrier)
    space = "layer_list"
    objectives = ["accuracy", "measured_latency", "params"]
    budget = 60                    # training exercises (a retrained survivor counts again)
    population = 10
    epochs = 5
    final_epochs = 30
    final_models = 4               # re-train at most 4 front models (0: all)
    final_data = "train+val"       # re-train them on the validation part too (default "train")
    screen_models = 8              # first train the 8 most accurate 5 epochs on everything (0: off)
    filter_rule = "interval"       # or "predicted", "conservative"

    [budgets]                      # hard limits; latency_ms is also judged before training
    latency_ms = 2.5
    params = 50000

    [train]                        # passed to the training loop
    batch_size = 64

    [space_options]
    max_layers = 6

    [strategy]                     # instead of strategy = "...": the name and its options
    name = "nsga2"
    immigrant_rate = 0.2
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hostside.errors import UserError
from hostside.search.objectives import BUDGETS, OBJECTIVES, load_extensions
from hostside.train.splits import TRAINING_DATA

#: How evaluations are scheduled (``hostside.search.scheduler``).
POLICIES = ("generational", "steady-state")
#: What ``budget`` counts: training exercises (a retrained survivor counts again), epochs trained,
#: or (table runs only) the simulated training seconds the table's fidelities stand for.
BUDGET_UNITS = ("exercises", "epochs", "train_seconds")
#: Epochs of a candidate's, the final and the screening trainings when the config names none
#: (a table run uses its table's longest fidelity instead, ``hostside.search.table``).
DEFAULT_EPOCHS = {"epochs": 5, "final_epochs": 30, "screen_epochs": 5}
#: How the filter judges predicted latency: the point prediction; only rejecting when the whole
#: 90% prediction interval is over the budget (fewest false rejects); or rejecting unless the
#: whole interval is under it (every accepted model surely fits).
FILTER_RULES = ("interval", "predicted", "conservative")
#: First objectives that longer training changes, so screening can rank candidates on them.
SCREENED_OBJECTIVES = ("val_accuracy", "accuracy")
TRAIN_KEYS = ("batch_size", "optimizer", "weight_decay", "momentum", "cosine", "crop_padding", "hflip")


def default_strategy(space: Optional[str]) -> str:
    """The strategy a run gets when its config names none: ``surrogate-hv`` where the space has
    categorical genes (it needs them; on NAS-Bench-201 it found better fronts than random search
    and Optuna's TPE), ``nsga2`` otherwise (any space)."""
    if isinstance(space, str):
        from hostside.spaces.base import SearchSpace, registered_spaces

        cls = registered_spaces().get(space)
        if cls is not None and cls.categorical_genes is not SearchSpace.categorical_genes:
            return "surrogate-hv"
    return "nsga2"


@dataclass
class SearchConfig:
    """Settings of one search run; see ``docs`` in ``hostside search --help``."""

    dataset: str = "digits"
    board: str = "local"
    budget: int = 40
    population: int = 8
    #: None: ``surrogate-hv`` over a space of categorical genes (it found the best NAS-Bench-201
    #: fronts, benchmarks/search_quality_nb201.py), ``nsga2`` elsewhere.
    strategy: Optional[str] = None
    strategy_options: Dict[str, Any] = field(default_factory=dict)
    policy: Optional[str] = None
    budget_unit: str = "exercises"
    #: Wall-clock limit of the search phase in minutes (0: none); the budget still caps it.
    search_minutes: float = 0.0
    #: The ``[stop]`` rules as ``"name: condition"`` strings; checked by the scheduler with any strategy.
    stop: List[str] = field(default_factory=list)
    space: Optional[str] = None
    space_options: Dict[str, Any] = field(default_factory=dict)
    objectives: List[str] = field(default_factory=lambda: ["accuracy", "measured_latency"])
    budgets: Dict[str, float] = field(default_factory=dict)
    use_filter: bool = True
    filter_rule: str = "interval"
    #: None: 5, or a table run's longest fidelity (``DEFAULT_EPOCHS``).
    epochs: Optional[int] = None
    final_epochs: Optional[int] = None
    final_models: int = 0
    #: What the front is re-trained on: the train part, or "train+val" (the whole training
    #: part, as published figures are; the re-trained models then have no validation accuracy).
    final_data: str = "train"
    #: Before the front is chosen, the most accurate feasible candidates (this many, 0: none)
    #: are trained ``screen_epochs`` on the whole training part (``hostside.search.screening``).
    screen_models: int = 0
    screen_epochs: Optional[int] = None
    train: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    workers: int = 2
    cluster: Optional[str] = None
    measure_threads: int = 1
    power: Optional[str] = None
    spot_checks: int = 8
    calibration: Optional[str] = None
    drift_tolerance: float = 0.15
    precision: Optional[str] = None
    #: The ``[table]`` section: with a ``path`` (``--table FILE.csv``), candidates are looked up
    #: in that table instead of trained and measured (``hostside.search.table``).
    table: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        load_extensions()
        from hostside.search.table import TableSettings

        table = TableSettings.from_config(self.table) if self.table else None
        for key, default in DEFAULT_EPOCHS.items():
            if getattr(self, key) is None:
                setattr(self, key, default if table is None else table.final_fidelity)
        _positive_int("budget", self.budget)
        _positive_int("population", self.population)
        _positive_int("epochs", self.epochs)
        _positive_int("final_epochs", self.final_epochs)
        if not isinstance(self.final_models, int) or isinstance(self.final_models, bool) or self.final_models < 0:
            raise UserError(f"config key 'final_models': {self.final_models!r} is not allowed; give an integer >= 0 "
                            f"(0 re-trains the whole front)")
        if self.final_data not in TRAINING_DATA:
            raise UserError(f"config key 'final_data': {self.final_data!r} is not allowed; choose one of "
                            f"{', '.join(TRAINING_DATA)}")
        if not isinstance(self.screen_models, int) or isinstance(self.screen_models, bool) or self.screen_models < 0:
            raise UserError(f"config key 'screen_models': {self.screen_models!r} is not allowed; give an integer >= 0 "
                            f"(0: no screening)")
        _positive_int("screen_epochs", self.screen_epochs)
        _positive_int("workers", self.workers)
        if (isinstance(self.search_minutes, bool) or not isinstance(self.search_minutes, (int, float))
                or not math.isfinite(self.search_minutes) or self.search_minutes < 0):
            raise UserError(f"config key 'search_minutes': {self.search_minutes!r} is not allowed; give a number of "
                            f"minutes >= 0 (0: no time limit)")
        _positive_int("measure_threads", self.measure_threads)
        if not isinstance(self.spot_checks, int) or isinstance(self.spot_checks, bool) or self.spot_checks < 0:
            raise UserError(f"config key 'spot_checks': {self.spot_checks!r} is not allowed; give an integer >= 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise UserError(f"config key 'seed': {self.seed!r} is not allowed; give an integer")
        if self.strategy is None:
            self.strategy = default_strategy(self.space)
        if not isinstance(self.strategy, str):
            raise UserError(f"config key 'strategy': {self.strategy!r} is not allowed; give a strategy name")
        from hostside.search.strategies import parse_options, strategy_class

        strategy = strategy_class(self.strategy)
        if self.space is None:  # the strategy's own space (ea4cnn's genotype) unless one is named
            self.space = strategy.default_space
        if self.policy is None:
            self.policy = strategy.default_policy
        if self.policy not in POLICIES:
            raise UserError(f"config key 'policy': {self.policy!r} is not allowed; choose one of {', '.join(POLICIES)}")
        if self.budget_unit not in BUDGET_UNITS:
            raise UserError(f"config key 'budget_unit': {self.budget_unit!r} is not allowed; "
                            f"choose one of {', '.join(BUDGET_UNITS)}")
        if self.budget_unit == "train_seconds" and table is None:
            raise UserError("config key 'budget_unit': \"train_seconds\" counts the simulated training of a table "
                            "run; give --table FILE.csv, or count exercises or epochs")
        if table is not None:
            table.check_run(self)
        parse_options(strategy.Options, self.strategy_options, f"strategy {self.strategy!r}")
        from hostside.search.stop_rules import check_measurable

        from hostside.search.stop_rules import parse_rules

        if not isinstance(self.stop, list):
            raise UserError('config key \'stop\': give a table of named rules, e.g. [stop] fast = "latency_ms <= 2"')
        parse_rules(self.stop)
        check_measurable(self.stop, self.power)
        if self.precision is not None:
            from hostside.precision.formats import parse_format

            if not isinstance(self.precision, str):
                raise UserError(f"config key 'precision': {self.precision!r} is not allowed; give a format name, e.g. fx16")
            parse_format(self.precision)
        for key in ("dataset", "board", "space"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise UserError(f"config key {key!r}: {getattr(self, key)!r} is not allowed; give a non-empty string")
        if not isinstance(self.objectives, list) or len(self.objectives) < 2:
            raise UserError(f"config key 'objectives': {self.objectives!r} is not allowed; give at least two of "
                            f"{', '.join(OBJECTIVES)}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise UserError(f"config key 'objectives': {name!r} is not allowed; choose from {', '.join(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise UserError(f"config key 'objectives': {self.objectives!r} names an objective twice; list each once")
        if self.screen_models and self.objectives[0] not in SCREENED_OBJECTIVES:
            raise UserError(f"config key 'screen_models': screening trains the best candidates in the first objective "
                            f"longer, so it must be one of {', '.join(SCREENED_OBJECTIVES)} (it is "
                            f"{self.objectives[0]!r}); put it first or set screen_models = 0")
        if not isinstance(self.budgets, dict):
            raise UserError("config key 'budgets': give a table of limits, e.g. [budgets] latency_ms = 0.5")
        for name, value in self.budgets.items():
            if name not in BUDGETS:
                raise UserError(f"config key 'budgets.{name}' is unknown; allowed budgets: {', '.join(BUDGETS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"config key 'budgets.{name}': {value!r} is not allowed; give a positive number")
        for name in ("accuracy", "val_accuracy"):
            if self.budgets.get(name, 0) > 1:
                raise UserError(f"config key 'budgets.{name}': {self.budgets[name]!r} is not allowed; "
                                f"give the minimum accuracy as a fraction in (0, 1]")
        if not isinstance(self.train, dict):
            raise UserError("config key 'train': give a table of training settings")
        for name in self.train:
            if name not in TRAIN_KEYS:
                raise UserError(f"config key 'train.{name}' is unknown; allowed keys: {', '.join(TRAIN_KEYS)}")
        from hostside.train.loop import TrainConfig

        TrainConfig(**self.train)  # every [train] value checked now, not after each candidate failed on it
        if not isinstance(self.space_options, dict):
            raise UserError("config key 'space_options': give a table, e.g. [space_options] max_layers = 6")
        for key in ("cluster", "power", "calibration"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise UserError(f"config key {key!r}: {value!r} is not allowed; give a non-empty string or leave it out")
        if isinstance(self.drift_tolerance, bool) or not isinstance(self.drift_tolerance, (int, float)) \
                or not math.isfinite(self.drift_tolerance) or self.drift_tolerance < 0:
            raise UserError(f"config key 'drift_tolerance': {self.drift_tolerance!r} is not allowed; give a fraction "
                            f">= 0 (0.15 = ±15 %; 0 skips the board's drift check)")
        if self.filter_rule not in FILTER_RULES:
            raise UserError(f"config key 'filter_rule': {self.filter_rule!r} is not allowed; choose one of {', '.join(FILTER_RULES)}")
        for key in ("use_filter",):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"config key {key!r}: {getattr(self, key)!r} is not allowed; give true or false")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Optional[str] = None) -> "SearchConfig":
        """Settings from a mapping; ``where`` (a file name) prefixes any error."""
        prefix = f"{where}: " if where else ""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise UserError(f"{prefix}config key {key!r} is unknown; allowed keys: {', '.join(known)}")
        values = dict(data)
        if isinstance(values.get("stop"), Mapping):  # the [stop] table: named rules; a journal has the list
            from hostside.search.stop_rules import table_to_option

            values["stop"] = table_to_option(values["stop"])
        if isinstance(values.get("strategy"), dict):  # the [strategy] table: name plus options
            table = dict(values["strategy"])
            if "name" not in table:
                raise UserError(f"{prefix}config table [strategy] needs a name, e.g. name = \"nsga2\"")
            values["strategy"] = table.pop("name")
            values["strategy_options"] = {**dict(values.get("strategy_options") or {}), **table}
        options = dict(values.get("strategy_options") or {})
        if "stop" in options:  # a journal from when stop rules were spea2's option
            values["stop"] = list(values.get("stop") or []) + list(options.pop("stop") or [])
            values["strategy_options"] = options
        if isinstance(values.get("objectives"), str):
            values["objectives"] = split_list(values["objectives"])
        try:
            return cls(**values)
        except UserError as exc:
            raise UserError(f"{prefix}{exc}") from None

    @property
    def board_names(self) -> List[str]:
        """``board`` may list several boards of one kind, comma-separated: they form a pool."""
        return split_list(self.board)


def split_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"config key {key!r}: {value!r} is not allowed; give an integer >= 1")


def load_toml(path: Path) -> Dict[str, Any]:
    """The settings in a TOML file (top-level keys plus [budgets], [train], [space_options], [strategy])."""
    from hostside import safe_io

    return safe_io.load_toml(path, "search config")


def build_config(file_values: Optional[Mapping[str, Any]], flag_values: Mapping[str, Any],
                 where: Optional[str] = None) -> SearchConfig:
    """Default <- file <- flags (flags that were not given are None and leave the value alone)."""
    merged: Dict[str, Any] = dict(file_values or {})
    for key, value in flag_values.items():
        if value is None:
            continue
        if key.startswith(("budgets.", "table.")):
            section, name = key.split(".", 1)
            table = dict(merged.get(section) or {})
            table[name] = value
            merged[section] = table
        else:
            merged[key] = value
    return SearchConfig.from_dict(merged, where)
