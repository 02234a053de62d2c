"""The settings tables of docs/config.md, written from the settings' declarations.

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` in
docs/config.md; ``python -m hostside.search.config_docs`` rewrites them, and
tests/product/test_docs.py fails when the file differs from what this module writes, so a
setting added, renamed or given another default cannot leave the page behind.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Dict

from hostside.options import markdown_table

CONFIG_DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[^ ]+) -->\n).*?(<!-- end generated -->)", re.S)


def tables() -> Dict[str, str]:
    """Block name -> markdown table: ``top-level``, ``strategy:NAME``, ``space:NAME`` (those with options)."""
    from hostside.search.config import SearchConfig
    from hostside.search.strategies.base import strategy_class, strategy_names
    from hostside.spaces import space_names
    from hostside.spaces.base import registered_spaces

    out = {"top-level": markdown_table(SearchConfig, flags=True)}
    for kind, names, class_of in (("strategy", strategy_names(), strategy_class),
                                  ("space", space_names(), lambda n: registered_spaces()[n])):
        for name in names:
            cls = class_of(name)
            if cls.__module__.startswith("hostside.") and dataclasses.fields(cls.Options):
                out[f"{kind}:{name}"] = markdown_table(cls.Options)
    return out


def render(text: str) -> str:
    """``text`` with every generated block replaced by its table; a block naming no table raises."""
    known = tables()

    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in known:
            raise KeyError(f"docs/config.md has a generated block {name!r} that no setting declares")
        return f"{match.group(1)}{known[name]}\n{match.group(3)}"

    return _BLOCK.sub(fill, text)


def block_names(text: str) -> set:
    return {m.group("name") for m in _BLOCK.finditer(text)}


def main() -> int:
    CONFIG_DOC.write_text(render(CONFIG_DOC.read_text()))
    print(f"rewrote the settings tables of {CONFIG_DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
