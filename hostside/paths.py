"""Where the host keeps its state (board inventory, known hosts, caches)."""

import os
from pathlib import Path


def hostside_home() -> Path:
    """``$HOSTSIDE_HOME`` or ``~/.hostside``; created on first use so callers can write into it."""
    home = Path(os.environ.get("HOSTSIDE_HOME") or Path.home() / ".hostside")
    home.mkdir(parents=True, exist_ok=True)
    return home
