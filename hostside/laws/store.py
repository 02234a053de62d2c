"""``laws.json``: the learned laws as one versioned, checksummed JSON artifact.

Why checksummed: ``hostside laws sample`` and the narrow search read laws long after they were
learned; a file edited by hand into bounds outside the limits or from another format version
must be one clear error, not silently different networks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from hostside.errors import UserError
from hostside.laws.law import Law
from hostside.spaces.narrow import NarrowSpace, make_narrow

FORMAT = "hostside.laws"
VERSION = 1
LAWS_FILE = "laws.json"


def _checksum(body: Dict[str, Any]) -> str:
    canonical = json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True,
                           separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_laws(body: Dict[str, Any], path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "version": VERSION, **body}
    full["sha256"] = _checksum(full)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(full, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def load_laws(path: Union[str, Path]) -> Tuple[Dict[str, Any], NarrowSpace, List[Law]]:
    """The body, its space and its laws; every kind of bad file is one UserError line."""
    path = Path(path)
    if path.is_dir():
        path = path / LAWS_FILE
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the laws file ({exc.strerror}); give the laws.json of "
                        f"`hostside laws learn`") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); learn the laws again with `hostside laws learn`") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise UserError(f"{path}: not a hostside laws file; give the laws.json written by `hostside laws learn`")
    if body.get("version") != VERSION:
        raise UserError(f"{path}: laws format version {body.get('version')!r} is not supported (this hostside "
                        f"reads version {VERSION}); learn the laws again")
    if body.get("sha256") != _checksum(body):
        raise UserError(f"{path}: corrupted laws file (checksum mismatch: it was changed after it was written); "
                        f"learn the laws again with `hostside laws learn`")
    space_info = body["space"]
    space = make_narrow(space_info["name"], tuple(space_info["input_shape"]), space_info["num_classes"])
    laws = [Law.from_dict(space, law["bounds"], f"{path}: law {law.get('rank')}") for law in body["laws"]]
    return body, space, laws
