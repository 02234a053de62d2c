"""Options dataclasses filled from config tables ([strategy], [space_options]), one line per error.

Strategies and spaces declare their settings as a dataclass; ``parse_options`` checks each
key against its fields and each value against the field's type before the constructor runs,
so a typo is "option 'p_cc' is unknown; allowed options: ..." and not a Python TypeError, and
then calls the dataclass's ``validate`` (if any) for ranges.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, List, Mapping, Tuple

from hostside.errors import UserError


def parse_options(options_cls: type, values: Mapping[str, Any], where: str) -> Any:
    """An ``options_cls`` instance from a plain mapping; every bad key or value is one line."""
    if not isinstance(values, Mapping):
        raise UserError(f"{where}: give a table of options")
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    for key, value in values.items():
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            raise UserError(f"{where}: option {key!r} is unknown; allowed options: {allowed}")
        if not _fits(value, hints[key]):
            raise UserError(f"{where}: option {key!r}: {value!r} is not allowed; give {_describe(hints[key])}")
    options = options_cls(**dict(values))
    try:
        getattr(options, "validate", lambda: None)()
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return options


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_fits(value, arg) for arg in typing.get_args(hint))
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


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "nothing"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0])}s" if args else "a list"
    return getattr(hint, "__name__", str(hint))
