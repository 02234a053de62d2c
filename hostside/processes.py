"""Whether a process of this machine still runs: the run journal (a run whose process is gone
was interrupted) and the boards' SSH control processes (stopped, then waited for) ask it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def process_alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` of this machine still runs; no pid is no process, and a zombie
    (exited, not yet reaped) counts as gone."""
    if not pid or pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return state != "Z"
