"""Where search runs live: ``./runs/<UTC stamp>`` by default, found again by path or name.

Its own module because every command that reads a run (``runs show``, ``runs analyze``,
``runs precision``, a resume) needs it, and none of them should have to import the search.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Union

from hostside.errors import UserError
from hostside.journal import JOURNAL_FILE

RUNS_DIR = "runs"


def runs_root() -> Path:
    return Path.cwd() / RUNS_DIR


def new_run_dir() -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = runs_root() / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = runs_root() / f"{stamp}-{suffix}"
    return path


def find_run(name: Union[str, Path]) -> Path:
    """A run directory from a path or a name under ``./runs``."""
    for candidate in (Path(name), runs_root() / str(name)):
        if (candidate / JOURNAL_FILE).is_file():
            return candidate
    raise UserError(f"no search run at {name!r} (looked for {JOURNAL_FILE} there and under {runs_root()}); "
                    f"list runs with `hostside runs list`")
