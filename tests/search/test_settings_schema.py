"""The settings schema: each setting declared once, and validation, flags, the --resume guard,
old names and the docs tables all read that declaration."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import List, Optional

import pytest

from hostside.errors import UserError
from hostside.options import (add_flags, canonical_names, declared, flag_values, markdown_table, parse_options,
                              resumable, setting)
from hostside.search.config import SearchConfig, build_config


@dataclass
class _Toy:
    rate: float = setting(0.5, "how often", minimum=0, maximum=1, aliases=("p_rate",))
    count: int = setting(3, "how many", minimum=1, flag="--count")
    mode: str = setting("a", "which mode", choices=("a", "b"), flag="--mode")
    limit: Optional[float] = setting(None, "an upper limit", minimum=0, above_minimum=True, unit="ms",
                                     flag="--limit", resumable=True)
    enabled: bool = setting(True, "switched on", flag="--disabled")
    names: List[str] = setting(default_factory=list, help="some names")


@pytest.mark.parametrize("values, message", [
    ({"rate": 1.5}, "option 'rate': 1.5 is not allowed; give a number in [0, 1]"),
    ({"count": 0}, "option 'count': 0 is not allowed; give an integer >= 1"),
    ({"count": True}, "option 'count': True is not allowed; give an integer >= 1"),
    ({"mode": "c"}, "option 'mode': 'c' is not allowed; choose one of a, b"),
    ({"limit": 0}, "option 'limit': 0 is not allowed; give a number > 0, or leave it out"),
    ({"limit": float("nan")}, "option 'limit': nan is not allowed"),
    ({"names": "x"}, "option 'names': 'x' is not allowed; give a list of strings"),
    ({"colour": 1}, "option 'colour' is unknown; allowed options: rate, count, mode, limit, enabled, names"),
])
def test_a_declared_range_or_type_is_checked_in_one_line(values, message):
    with pytest.raises(UserError) as info:
        parse_options(_Toy, values, "toy")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_old_name_keeps_working_with_a_note():
    assert parse_options(_Toy, {"p_rate": 0.2}, "toy").rate == 0.2
    values, notes = canonical_names(_Toy, {"p_rate": 0.2, "count": 2})
    assert values == {"rate": 0.2, "count": 2}
    assert notes == ["note: option 'p_rate' is now called 'rate'; the old name still works"]


def test_flags_defaults_and_the_resume_guard_come_from_the_declaration():
    parser = argparse.ArgumentParser()
    add_flags(parser, _Toy)
    given = flag_values(parser.parse_args(["--count", "4", "--disabled", "--limit", "2.5"]), _Toy)
    assert given == {"count": 4, "mode": None, "limit": 2.5, "enabled": False}
    assert flag_values(parser.parse_args([]), _Toy) == {"count": None, "mode": None, "limit": None, "enabled": None}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])
    assert resumable(_Toy) == ("limit",)
    assert "(default 3)" in parser.format_help()


def test_the_docs_table_shows_default_unit_and_old_names():
    table = markdown_table(_Toy).splitlines()
    assert table[0] == "| key | default | unit | meaning |"
    assert table[2] == "| `rate` | `0.5` |  | how often (formerly `p_rate`) |"
    assert "| `limit` | none | ms | an upper limit |" in table
    assert "| `names` | `[]` |  | some names |" in table


def test_an_undeclared_field_is_refused():
    @dataclass
    class Loose:
        x: int = 1

    with pytest.raises(TypeError, match="Loose.x is not declared"):
        declared(Loose)


def test_every_search_flag_sets_a_declared_setting():
    """The flags of `hostside search` that set a config key are exactly the declared ones."""
    from hostside.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["search", "--budget", "12", "--no-filter", "--latency-budget-ms", "1.5",
                              "--objectives", "val_accuracy,params"])
    flags = flag_values(args, SearchConfig)
    assert flags["budget"] == 12 and flags["use_filter"] is False and flags["budgets.latency_ms"] == 1.5
    assert flags["objectives"] == ["val_accuracy", "params"]
    config = build_config(None, flags)
    assert (config.budget, config.use_filter, config.budgets) == (12, False, {"latency_ms": 1.5})
    declared_flags = {decl.flag for _, decl, _ in declared(SearchConfig) if decl.flag}
    search = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" search"))
    parsed = {s for action in search._actions for s in action.option_strings if s.startswith("--")}
    assert declared_flags <= parsed
    assert parsed - declared_flags == {"--help", "--config", "--out", "--seed-model", "--datasets", "--constraints",
                                       "--resume"}


def test_old_objective_budget_and_option_names_mean_the_current_ones():
    config = build_config({"objectives": ["accuracy", "measured_latency"], "budgets": {"accuracy": 0.5},
                           "strategy": {"name": "menndl", "p_crossover": 0.3}}, {})
    assert config.objectives == ["val_accuracy", "latency_ms"]
    assert config.budgets == {"val_accuracy": 0.5}
    assert config.strategy_options == {"crossover_rate": 0.3}
    again = SearchConfig.from_dict(config.to_dict())  # what a resume reads back from the journal
    assert again.to_dict() == config.to_dict()


def test_the_search_prints_one_note_per_old_name(tmp_path, capsys):
    from hostside.search.commands import _deprecation_notes

    values = {"objectives": ["measured_latency", "params"], "strategy": {"name": "menndl", "p_crossover": 0.3}}
    config = build_config(values, {})
    notes = _deprecation_notes(values, {}, config)
    assert notes == ["note: 'measured_latency' is now called 'latency_ms' (the figure with its unit); the old name "
                     "still works", "note: option 'p_crossover' is now called 'crossover_rate'; the old name still works"]


def test_a_bad_value_names_the_key_and_its_range():
    with pytest.raises(UserError, match=r"config key 'search_minutes': -1 is not allowed; give a number >= 0 "
                                        r"\(0: no time limit\)"):
        build_config({"search_minutes": -1}, {})
    with pytest.raises(UserError, match=r"config key 'drift_tolerance': 'wide' is not allowed; give a number >= 0"):
        build_config({"drift_tolerance": "wide"}, {})


def test_every_strategy_and_space_option_is_declared():
    from hostside.search.strategies.base import strategy_class, strategy_names
    from hostside.spaces import space_names
    from hostside.spaces.base import registered_spaces

    classes = [strategy_class(n) for n in strategy_names()] + [registered_spaces()[n] for n in space_names()]
    for cls in [c.Options for c in classes if c.__module__.startswith("hostside.")]:
        for f, decl, _ in declared(cls):
            assert decl.help, f"{cls.__name__}.{f.name} has no help text"
    assert all(decl.help for _, decl, _ in declared(SearchConfig))
    assert dataclasses.fields(SearchConfig)
