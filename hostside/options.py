"""The settings schema: each setting declared once, as a dataclass field with its ``Setting``.

A search setting, a strategy option and a space option are all fields of a dataclass declared
with ``setting(default, help, ...)``: the field's type annotation is the setting's type, its
metadata the help text, the range or choices, the unit, the command-line flag and whether
``--resume`` may give it anew. From that one declaration come

- validation (``check_fields``: type, range, choices; one line naming the key and what is allowed),
- the argparse flags of ``hostside search`` (``add_flags`` / ``flag_values``),
- the ``--resume`` guard (``resumable``),
- the tables of docs/config.md (``markdown_table``; a test fails when the file is stale),
- old names that keep working (``aliases``), each with a one-line deprecation note.

Cross-field rules (a table run's budget unit, screening's first objective, ...) stay in the
dataclass's ``validate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from hostside.errors import UserError

_SETTING = "hostside.setting"


@dataclass(frozen=True)
class Setting:
    """What a user may set and what it means; stored in a dataclass field's metadata."""

    #: One line: the flag's help and, unless ``doc`` says more, the docs table's meaning column.
    help: str
    #: The docs table's meaning column when it needs more than the flag's help.
    doc: Optional[str] = None
    #: The docs table's default column when the default is worked out at run time (a None field).
    default_text: Optional[str] = None
    unit: Optional[str] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    #: True: the value must be greater than ``minimum``, not equal to it.
    above_minimum: bool = False
    choices: Optional[Tuple[str, ...]] = None
    #: What the value counts or means at its bounds, appended to the range in an error ("0: none").
    note: Optional[str] = None
    #: The ``hostside search`` flag, e.g. ``--budget``; a ``bool`` setting whose default is true
    #: gets a flag that turns it off (``--no-filter``).
    flag: Optional[str] = None
    #: The flag sets an entry of this table setting instead (``--latency-budget-ms`` sets ``budgets.latency_ms``).
    flag_entry: Optional[str] = None
    flag_metavar: Optional[str] = None
    #: Turns the flag's text into the value (``--objectives a,b``; a path made absolute).
    flag_parse: Optional[Callable[[str], Any]] = None
    #: The setting only gates the start of a run, so ``--resume`` may give it anew.
    resumable: bool = False
    #: Older names of the setting: still accepted, with a one-line deprecation note.
    aliases: Tuple[str, ...] = ()


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            default_factory: Any = dataclasses.MISSING, **declaration: Any) -> Any:
    """A dataclass field declaring a setting (``budget: int = setting(40, "training exercises", minimum=1)``)."""
    if not help:
        raise TypeError("a setting needs its help text")
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_SETTING: Setting(help=help, **declaration)})


def declared(cls: type) -> List[Tuple[dataclasses.Field, Setting, Any]]:
    """Every field of ``cls`` with its setting and type hint, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if _SETTING not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with hostside.options.setting")
        out.append((f, f.metadata[_SETTING], hints[f.name]))
    return out


# -- validation ------------------------------------------------------------------------------

def check_value(value: Any, hint: Any, decl: Setting) -> Optional[str]:
    """What to do instead when ``value`` is not allowed for the setting ("give an integer >= 1"),
    or None when it is allowed."""
    wanted = describe(hint, decl)
    if not _fits(value, hint):
        return wanted
    if value is None:
        return None
    if decl.choices is not None and value not in decl.choices:
        return wanted
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return wanted
        low, high = decl.minimum, decl.maximum
        if low is not None and (value < low or (decl.above_minimum and value == low)):
            return wanted
        if high is not None and value > high:
            return wanted
    return None


def check_fields(instance: Any, prefix: str) -> None:
    """Every declared field of ``instance`` checked against its type and range; the first bad one
    raises "<prefix> 'key': value is not allowed; give ..." (or "choose one of ...")."""
    for f, decl, hint in declared(type(instance)):
        value = getattr(instance, f.name)
        wanted = check_value(value, hint, decl)
        if wanted is not None:
            raise UserError(f"{prefix} {f.name!r}: {value!r} is not allowed; {wanted}")


def describe(hint: Any, decl: Optional[Setting] = None) -> str:
    """What to give, in words: "give an integer >= 1 (0: none)", "choose one of a, b"."""
    if decl is not None and decl.choices is not None:
        text = "choose one of " + ", ".join(decl.choices)
    else:
        text = "give " + _describe_type(_without_none(hint))
        if decl is not None and decl.minimum is not None and decl.maximum is not None:
            text += f" in {'(' if decl.above_minimum else '['}{_number(decl.minimum)}, {_number(decl.maximum)}]"
        elif decl is not None and decl.minimum is not None:
            text += f" {'>' if decl.above_minimum else '>='} {_number(decl.minimum)}"
        elif decl is not None and decl.maximum is not None:
            text += f" <= {_number(decl.maximum)}"
    if decl is not None and decl.note:
        text += f" ({decl.note})"
    if _optional(hint):
        text += ", or leave it out"
    return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return hint


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, List, Tuple) or hint in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if origin in (dict, Dict) or hint is dict:
        return isinstance(value, dict)
    return True


def _describe_type(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return " or ".join(_describe_type(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "nothing"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], _describe_type(args[0]))}" if args else "a list"
    if origin in (dict, Dict) or hint is dict:
        return "a table"
    return getattr(hint, "__name__", str(hint))


# -- strategy and space options ----------------------------------------------------------------

def canonical_names(options_cls: type, values: Mapping[str, Any],
                    what: str = "option") -> Tuple[Dict[str, Any], List[str]]:
    """``values`` with every old name replaced by its setting's name, and one deprecation note
    per old name used ("note: <what> 'old' is now called 'new'; ...")."""
    renamed = {alias: f.name for f, decl, _ in declared(options_cls) for alias in decl.aliases}
    out: Dict[str, Any] = {}
    notes = []
    for key, value in values.items():
        if key in renamed:
            notes.append(f"note: {what} {key!r} is now called {renamed[key]!r}; the old name still works")
            key = renamed[key]
        out[key] = value
    return out, notes


def check_options(options: Any) -> Any:
    """``options`` checked as ``parse_options`` checks a table (declared types and ranges, then
    ``validate``): for options a space or strategy is built with in code, from keywords."""
    check_fields(options, "option")
    getattr(options, "validate", lambda: None)()
    return options


def parse_options(options_cls: type, values: Mapping[str, Any], where: str) -> Any:
    """An ``options_cls`` instance from a plain mapping; every bad key or value is one line.

    Checks each key against the declared settings and each value against its type and range
    before the constructor runs (a typo is "option 'p_cc' is unknown; allowed options: ...", not
    a Python TypeError), then the dataclass's ``validate`` (if any) for rules across options."""
    if not isinstance(values, Mapping):
        raise UserError(f"{where}: give a table of options")
    fields = {f.name: (decl, hint) for f, decl, hint in declared(options_cls)}
    renamed = {alias: f for f, (decl, _) in fields.items() for alias in decl.aliases}
    for key, value in values.items():
        name = renamed.get(key, key)
        if name not in fields:
            allowed = ", ".join(fields) or "none"
            raise UserError(f"{where}: option {key!r} is unknown; allowed options: {allowed}")
        decl, hint = fields[name]
        wanted = check_value(value, hint, decl)
        if wanted is not None:
            called = f"{key!r} (now {name!r})" if name != key else repr(key)
            raise UserError(f"{where}: option {called}: {value!r} is not allowed; {wanted}")
    values, _ = canonical_names(options_cls, values)
    options = options_cls(**dict(values))
    try:
        getattr(options, "validate", lambda: None)()
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return options


# -- command-line flags ------------------------------------------------------------------------

def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per setting of ``cls`` that declares one; every flag defaults to None ("not given")."""
    for f, decl, hint in declared(cls):
        if decl.flag is None:
            continue
        kind = _without_none(hint)
        if kind is bool:
            parser.add_argument(decl.flag, dest=f.name, action="store_const", default=None,
                                const=not f.default, help=_flag_help(f, decl, kind))
            continue
        parse = decl.flag_parse or (kind if kind in (int, float) else str)
        extra: Dict[str, Any] = {"metavar": decl.flag_metavar} if decl.flag_metavar else {}
        if decl.choices is not None and decl.flag_entry is None:
            extra["choices"] = decl.choices
        dest = f.name if decl.flag_entry is None else f"{f.name}.{decl.flag_entry}"
        parser.add_argument(decl.flag, dest=dest, type=parse, default=None, help=_flag_help(f, decl, kind), **extra)


def _flag_help(f: dataclasses.Field, decl: Setting, kind: Any) -> str:
    """The flag's help with its default; argparse reads ``%`` as a format character."""
    if decl.flag_entry is not None or kind is bool:
        text = decl.help
    else:
        default = decl.default_text.replace("`", "") if decl.default_text else _default_cell(f).strip("`")
        if decl.note:
            default += f"; {decl.note}"
        text = f"{decl.help} (default {default})"
    return text.replace("%", "%%")


def flag_values(args: argparse.Namespace, cls: type) -> Dict[str, Any]:
    """The flags' values by setting name (``budgets.latency_ms`` for an entry), None where not given."""
    out: Dict[str, Any] = {}
    for f, decl, _ in declared(cls):
        if decl.flag is not None:
            key = f.name if decl.flag_entry is None else f"{f.name}.{decl.flag_entry}"
            out[key] = getattr(args, key)
    return out


def resumable(cls: type) -> Tuple[str, ...]:
    """The settings ``--resume`` may give anew: they gate only the start of a run."""
    return tuple(f.name for f, decl, _ in declared(cls) if decl.resumable)


# -- docs --------------------------------------------------------------------------------------

def markdown_table(cls: type, flags: bool = False) -> str:
    """The docs/config.md table of ``cls``'s settings: key, default, [unit,] [flag,] meaning."""
    rows = declared(cls)
    with_unit = any(decl.unit for _, decl, _ in rows)
    head = ["key", "default"] + (["unit"] if with_unit else []) + (["flag"] if flags else []) + ["meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f, decl, _ in rows:
        cells = [f"`{f.name}`", decl.default_text or _default_cell(f)]
        if with_unit:
            cells.append(decl.unit or "")
        if flags:
            cells.append(f"`{decl.flag}`" if decl.flag else "")
        meaning = decl.doc or decl.help
        if decl.aliases:
            meaning += f" (formerly {', '.join(f'`{a}`' for a in decl.aliases)})"
        cells.append(meaning.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _default_cell(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return "none" if f.default is None else f"`{_toml(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f"`{_toml(f.default_factory())}`"  # type: ignore[misc]
    return "required"


def _toml(value: Any) -> str:
    """A default as a user writes it in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def split_list(text: str) -> List[str]:
    """A comma-separated flag value as a list (``--objectives a,b``, ``--board pi-a,pi-b``)."""
    return [part.strip() for part in text.split(",") if part.strip()]
