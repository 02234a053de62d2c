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
    objectives = ["val_accuracy", "latency_ms", "params"]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hostside.errors import UserError
from hostside.options import canonical_names, check_fields, setting, split_list
from hostside.search.objectives import BUDGETS, OBJECTIVES, canonical, load_extensions
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
SCREENED_OBJECTIVES = ("val_accuracy",)
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


def _absolute_path(text: str) -> str:
    """``--table FILE.csv`` journaled absolute: a resume from another directory finds the same file."""
    return str(Path(text).resolve())


@dataclass
class SearchConfig:
    """Settings of one search run: each field is the one declaration of its setting (type,
    default, range, flag, help; ``hostside.options``), from which validation, the flags of
    ``hostside search`` and the table of docs/config.md come."""

    dataset: str = setting(
        "digits", "dataset source", flag="--dataset",
        doc="dataset source: `digits` (embedded), or a path (IDX folder, CIFAR batches, `.npz` with `x`/`y`, image "
            "folder; prefix `idx:`, `cifar:`, `npz:`, `images:` to force a format; append `?subset=N` for a seeded "
            "N-example subset, e.g. `/usr/share/datasets/fashion-mnist?subset=6000`)")
    board: str = setting(
        "local", "board name, or several of one kind comma-separated", flag="--board",
        doc="board name from the inventory (`hostside boards list`), or several of one kind comma-separated: they "
            "measure in parallel as a pool")
    budget: int = setting(
        40, "what the search may spend, in budget_unit (training exercises by default: a retrained survivor counts "
            "again)", minimum=1, flag="--budget",
        doc="how many training exercises the search may spend (a survivor trained again counts again; see "
            "`budget_unit`)")
    budget_unit: str = setting(
        "exercises", "what budget counts", choices=BUDGET_UNITS,
        doc="what `budget` counts: `exercises` (trainings) or `epochs` (sum of epochs trained; for comparisons at "
            "equal training cost), or in a table run `train_seconds`: the simulated training seconds of the table's "
            "fidelities (`[table] train_seconds`; a promoted candidate pays only for its extra epochs; the last "
            "candidate asked may go past the budget by its own cost)")
    search_minutes: float = setting(
        0.0, "wall-clock limit of the search phase", unit="min", minimum=0, note="0: no time limit",
        doc="wall-clock limit of the search phase in minutes (0: none): once passed no new candidate is asked, "
            "those in training finish and count, and the front is re-trained as usual; it counts from the start of "
            "the search phase of each invocation (a resumed run gets it again)")
    stop: List[str] = setting(
        default_factory=list, help="stop rules, checked by the scheduler with any strategy",
        note='in a config file the [stop] table of named rules, e.g. [stop] fast = "latency_ms <= 2"',
        doc="stop rules: in a config file the `[stop]` table (see [stop](#stop)); with any strategy")
    population: int = setting(
        8, "candidates per generation", minimum=1, flag="--population",
        doc="candidates per generation (generational policy), or the number of results between reports "
            "(steady-state)")
    strategy: Optional[str] = setting(
        None, "search strategy, e.g. random, nsga2, optuna:tpe, ea4cnn; options in the config's [strategy] table",
        flag="--strategy", default_text='`"surrogate-hv"` over a space of categorical genes (`nasbench201`), else '
                                        '`"nsga2"`',
        doc="search strategy: one of the subsections of [[strategy] options](#strategy-options); or a `[strategy]` "
            "table with `name` and options")
    strategy_options: Dict[str, Any] = setting(
        default_factory=dict, help="the strategy's options (what the `[strategy]` table holds besides `name`); in "
                                   "JSON / the Python API")
    policy: Optional[str] = setting(
        None, "generational (a barrier per generation) or steady-state (ask one as a training slot frees)",
        choices=POLICIES, flag="--policy",
        default_text='the strategy\'s (`"steady-state"` for menndl and asha, `"generational"` for the others)',
        doc="`generational` (ask a generation, train all, measure all, tell all) or `steady-state` (ask one as an "
            "evaluation slot frees, tell each result as it arrives)")
    space: Optional[str] = setting(
        None, "search space; options in [space_options]", flag="--space",
        default_text="the strategy's: `layer_list` (random, nsga2, ...), `ea4cnn` (ea4cnn, rs-cnn), `cgp` "
                     "(cgp-nsga2), `dense` (spea2), `menndl` (menndl)",
        doc="search space: one of the subsections of [[space_options]](#space_options); `narrow` needs a "
            "`narrow:<family>` space")
    space_options: Dict[str, Any] = setting(
        default_factory=dict, help="the space's own settings (the `[space_options]` table)")
    objectives: List[str] = setting(
        default_factory=lambda: ["val_accuracy", "latency_ms"], flag="--objectives", flag_parse=split_list,
        help="two or more objectives, comma-separated on the command line",
        doc="two or more of [Objectives](#objectives); comma-separated on the command line")
    budgets: Dict[str, float] = setting(
        default_factory=dict, help="hard limit on batch-1 latency on the board", flag="--latency-budget-ms",
        flag_entry="latency_ms", flag_parse=float, flag_metavar="MS", doc="hard limits, the `[budgets]` table")
    use_filter: bool = setting(
        True, "train every candidate (the baseline), judging none before training", flag="--no-filter",
        doc="judge every candidate before training (exact cost budgets, predicted latency) and train only those "
            "that can meet the budgets")
    filter_rule: str = setting(
        "interval", "how predicted latency is judged", choices=FILTER_RULES,
        doc="how predicted latency is judged: `interval` rejects only when the whole 90 % prediction interval is "
            "over the budget (fewest false rejects), `predicted` compares the point prediction, `conservative` "
            "rejects unless the whole interval is under the budget")
    epochs: Optional[int] = setting(
        None, "training epochs per candidate", minimum=1, flag="--epochs",
        default_text="`5` (table run: the table's `epochs`)",
        doc="training epochs of each candidate during the search (a strategy may ask for other numbers per "
            "candidate)")
    final_epochs: Optional[int] = setting(
        None, "training epochs of the re-trained Pareto front", minimum=1, flag="--final-epochs",
        default_text="`30` (table run: the table's `epochs`)",
        doc="epochs of the re-training of the final Pareto front")
    final_models: int = setting(
        0, "re-train at most this many front models: the best in the first objective, then the most spread out",
        minimum=0, note="0 re-trains the whole front", flag="--final-models",
        doc="re-train at most this many front models (0: all): the best in the first objective, then the least "
            "crowded (pymoo's crowding distance, the extremes first), submitted to the workers most MACs first; "
            "the others stay in `report.json`'s `search_front` with their search-time figures")
    final_data: str = setting(
        "train", "what the front is re-trained on: the train part, or train+val, the whole training part (the "
                 "models then have no validation accuracy)", choices=TRAINING_DATA, flag="--final-data",
        doc="what the front is re-trained on: `\"train\"`, or `\"train+val\"`, the whole training part, as published "
            "figures are trained (the front is chosen by then, so the validation part has nothing left to choose); "
            "the re-trained models then have no validation accuracy, the report draws them at their test accuracy "
            "and picks the best trade-off on the validation figures that chose them, and "
            "`benchmarks/fashion_mnist.py` trains its references on the same data")
    screen_models: int = setting(
        0, "before the front is chosen, train this many of the most accurate candidates --screen-epochs on the "
           "whole training part", minimum=0, note="0: no screening", flag="--screen-models",
        doc="before the front is chosen, train this many of the most accurate feasible candidates (in the first "
            "objective, which must then be `val_accuracy`; one per network and learning rate, at "
            "most two per lineage while other lineages have candidates left) for `screen_epochs` on the whole "
            "training part; their screening accuracies then stand for them in the front, the final choice, the "
            "report's `screened` list and plots. For a short search proxy whose noise is as large as the "
            "differences between the best candidates")
    screen_epochs: Optional[int] = setting(
        None, "epochs of each screening training", minimum=1, flag="--screen-epochs",
        default_text="`5` (table run: the table's `epochs`)")
    train: Dict[str, Any] = setting(default_factory=dict, help="training settings, the `[train]` table")
    seed: int = setting(0, "seeds the search, the data split and every training", flag="--seed")
    workers: int = setting(2, "local training processes (ignored with `cluster`)", minimum=1, flag="--workers")
    cluster: Optional[str] = setting(
        None, "Dask scheduler address (tcp://HOST:PORT) to train on instead of local processes", flag="--cluster")
    measure_threads: int = setting(
        1, "onnxruntime intra-op threads on the board (the calibration must match)", minimum=1)
    power: Optional[str] = setting(
        None, "power source on the board for energy",
        doc="power source on the board for energy, one that `device-agent info` lists there (`rapl`, `hwmon`, "
            "`hwmon:hwmonN`, a meter configured on the board; see [boards.md](boards.md)); needed for the "
            "`energy` objective or an `energy_mj` budget")
    spot_checks: int = setting(
        8, "how many candidates rejected on predicted latency are measured anyway (untrained) to count false "
           "rejects", minimum=0)
    calibration: Optional[str] = setting(
        None, "calibration.json of the board", flag="--calibration",
        default_text="the board's stored one, or a quick calibration made now",
        doc="the board's `calibration.json`; default: a stored one matching the board (shipped in "
            "`hostside/calibration_data/` or cached), else a quick calibration now")
    drift_tolerance: float = setting(
        0.15, "allowed drift of the board from its calibration before the search starts; the one "
              "setting --resume may give anew", minimum=0, unit="fraction",
        note="0.15 = ±15 %; 0 skips the board's drift check",
        flag="--drift-tolerance", flag_metavar="FRACTION", resumable=True,
        doc="before a search that judges latency (at its start and at every `--resume`), twelve suite models are "
            "measured on the board and compared with the calibration; a median measured/predicted ratio off by "
            "more than this fraction stops with the command to re-calibrate (0 skips the check). The check runs "
            "before the run directory is written, so a refused start leaves nothing behind and the same command "
            "can be run again. It only gates the start, so it is the one setting `--resume RUN --drift-tolerance "
            "F` may give anew (for that resume only; the journal keeps the value the run started with)")
    precision: Optional[str] = setting(
        None, "number format the candidates are judged in, e.g. fx16 (training stays float)", flag="--precision",
        doc="judge candidates in a reduced number format (e.g. `fx16`, EA4CNN's CNN*-FX): training stays float, "
            "accuracy is taken with the multiplications emulated in the format, and `mult_energy_mj` / "
            "`weight_bytes` use its bits ([methods.md](methods.md#reduced-precision))")
    table: Dict[str, Any] = setting(
        default_factory=dict, flag="--table", flag_entry="path", flag_parse=_absolute_path, flag_metavar="FILE.csv",
        help="look candidates up in a table of known figures (e.g. data/nb201/nb201_hw.csv with --space "
             "nasbench201) instead of training and measuring; columns in [table]",
        doc="look candidates up in a table of known figures instead of training and measuring them: the "
            "[[table]](#table) section")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, "config key")
        load_extensions()
        from hostside.search.table import TableSettings

        table = TableSettings.from_config(self.table) if self.table else None
        for key, default in DEFAULT_EPOCHS.items():
            if getattr(self, key) is None:
                setattr(self, key, default if table is None else table.final_fidelity)
        if self.strategy is None:
            self.strategy = default_strategy(self.space)
        from hostside.search.strategies import parse_options, strategy_class
        from hostside.spaces.base import registered_spaces

        strategy = strategy_class(self.strategy)
        if self.space is None:  # the strategy's own space (ea4cnn's genotype) unless one is named
            self.space = strategy.default_space
        if self.policy is None:
            self.policy = strategy.default_policy
        if self.budget_unit == "train_seconds" and table is None:
            raise UserError("config key 'budget_unit': \"train_seconds\" counts the simulated training of a table "
                            "run; give --table FILE.csv, or count exercises or epochs")
        if table is not None:
            table.check_run(self)
        parse_options(strategy.Options, self.strategy_options, f"strategy {self.strategy!r}")
        # Older option names become the current ones here, so the journal keeps one name per idea.
        self.strategy_options = canonical_names(strategy.Options, self.strategy_options)[0]
        space = registered_spaces().get(self.space)
        if space is not None:
            self.space_options = canonical_names(space.Options, self.space_options)[0]
        from hostside.search.stop_rules import check_measurable, parse_rules

        parse_rules(self.stop)
        check_measurable(self.stop, self.power)
        if self.precision is not None:
            from hostside.precision.formats import parse_format

            parse_format(self.precision)
        for key in ("dataset", "board", "space", "cluster", "power", "calibration"):
            if getattr(self, key) == "":
                raise UserError(f"config key {key!r}: \"\" is not allowed; give a non-empty string")
        self.objectives = [canonical(name) for name in self.objectives]  # older names mean the same figure
        self.budgets = {canonical(name): value for name, value in self.budgets.items()}
        if len(self.objectives) < 2:
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
        for name, value in self.budgets.items():
            if name not in BUDGETS:
                raise UserError(f"config key 'budgets.{name}' is unknown; allowed budgets: {', '.join(BUDGETS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"config key 'budgets.{name}': {value!r} is not allowed; give a positive number")
        if self.budgets.get("val_accuracy", 0) > 1:
            raise UserError(f"config key 'budgets.val_accuracy': {self.budgets['val_accuracy']!r} is not allowed; "
                            f"give the minimum accuracy as a fraction in (0, 1]")
        for name in self.train:
            if name not in TRAIN_KEYS:
                raise UserError(f"config key 'train.{name}' is unknown; allowed keys: {', '.join(TRAIN_KEYS)}")
        from hostside.train.loop import TrainConfig

        TrainConfig(**self.train)  # every [train] value checked now, not after each candidate failed on it

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Optional[str] = None) -> "SearchConfig":
        """Settings from a mapping; ``where`` (a file name) prefixes any error."""
        prefix = f"{where}: " if where else ""
        data = canonical_names(cls, data)[0]  # a key's older name means the key
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
    def measures_energy(self) -> bool:
        """Whether a board result without an energy reading is of no use: an objective or a budget
        reads it (they share the name ``energy_mj``)."""
        return "energy_mj" in self.objectives or "energy_mj" in self.budgets

    @property
    def board_names(self) -> List[str]:
        """``board`` may list several boards of one kind, comma-separated: they form a pool."""
        return split_list(self.board)


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
