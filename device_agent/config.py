"""The board's own agent configuration: what only the board's admin may decide.

A request (from the host, or from any process that reaches the daemon) may *name* a power
source but never *define* one: an external meter is a command, and a command taken from a
request would let anyone who can reach the agent run programs as the agent's user. So
commands live here, in a file the board's admin writes, and a request names them::

    {"power_sources": {"usbmeter": "cmd:/usr/local/bin/read-watts --port /dev/ttyUSB0"}}

then ``--power usbmeter``. The file is ``$DEVICE_AGENT_CONFIG`` or, by default,
``$DEVICE_AGENT_HOME/agent.json`` (the daemon writes only ``models/`` and its token under that
home, and a client can never name a path). ``device-agent serve --power-source NAME=SPEC``
adds sources without a file. Built-in sysfs sources (``rapl``, ``rapl:package``,
``rapl:dram``, ``hwmon``, ``hwmon:hwmonN``) only read files and need no declaration.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional

CONFIG_ENV = "DEVICE_AGENT_CONFIG"
#: The largest config file read: it holds a handful of names and commands.
MAX_CONFIG_BYTES = 64 * 1024
SOURCE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
BUILTIN_SOURCE_RE = re.compile(r"^(rapl|rapl:package|rapl:dram|hwmon|hwmon:hwmon[0-9]{1,4})$")
_KNOWN_KEYS = ("power_sources",)


class ConfigError(Exception):
    """The board's agent configuration is unreadable or malformed; the message names the file."""


@dataclass
class AgentConfig:
    """Declared power sources: name -> spec (``rapl``, ``hwmon:hwmon1``, ``cmd:PROGRAM ARGS``)."""

    power_sources: Dict[str, str] = field(default_factory=dict)
    path: Optional[str] = None


def default_path() -> Path:
    from device_agent.store import agent_home

    return Path(os.environ.get(CONFIG_ENV) or agent_home() / "agent.json")


def _check_source(where: str, name: object, spec: object) -> None:
    if not isinstance(name, str) or not SOURCE_NAME_RE.match(name) or BUILTIN_SOURCE_RE.match(name):
        raise ConfigError(
            f"{where}: power source name {name!r} is not valid; use a letter then letters, digits, '_', '.' or '-' "
            "(at most 32), other than the built-in rapl/hwmon names"
        )
    if not isinstance(spec, str) or not spec.strip() or len(spec) > 4096:
        raise ConfigError(f"{where}: power source {name!r} needs a spec string such as \"cmd:/usr/local/bin/read-watts\"")


def load(path: Optional[str] = None, extra_sources: Iterable[str] = ()) -> AgentConfig:
    """Read the config (a missing default file is an empty config) plus ``NAME=SPEC`` flags."""
    chosen = Path(path) if path else default_path()
    sources: Dict[str, str] = {}
    if path or chosen.exists():
        try:
            raw = chosen.read_bytes()[: MAX_CONFIG_BYTES + 1]
        except OSError as exc:
            raise ConfigError(f"cannot read the agent config {chosen}: {exc.strerror or exc}") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"the agent config {chosen} is over {MAX_CONFIG_BYTES} bytes; it should hold a few names")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"the agent config {chosen} is not a JSON text ({str(exc)[:100]}); see deploy/POWER.md") from None
        if not isinstance(data, dict):
            raise ConfigError(f"the agent config {chosen} must be a JSON object like {{\"power_sources\": {{...}}}}")
        unknown = sorted(set(data) - set(_KNOWN_KEYS))
        if unknown:
            raise ConfigError(f"the agent config {chosen} has unknown keys {unknown}; known: {list(_KNOWN_KEYS)}")
        declared = data.get("power_sources") or {}
        if not isinstance(declared, dict):
            raise ConfigError(f"{chosen}: \"power_sources\" must be an object of name -> spec")
        for name, spec in declared.items():
            _check_source(str(chosen), name, spec)
            sources[name] = spec
    for item in extra_sources:
        name, sep, spec = item.partition("=")
        if not sep:
            raise ConfigError(f"--power-source {item!r} must be NAME=SPEC, e.g. usbmeter=cmd:/usr/local/bin/read-watts")
        _check_source("--power-source", name, spec)
        sources[name] = spec
    return AgentConfig(power_sources=sources, path=str(chosen))


def resolve_power(name: str, config: AgentConfig) -> str:
    """The spec a requested power source name stands for.

    Raises ConfigError for a command or anything else the board has not declared, naming what
    it has declared, so a request can never bring its own command.
    """
    if BUILTIN_SOURCE_RE.match(name):
        return name
    if name in config.power_sources:
        return config.power_sources[name]
    declared = ", ".join(sorted(config.power_sources)) or "none"
    if name.startswith("cmd:") or not SOURCE_NAME_RE.match(name):
        raise ConfigError(
            f"power source {name[:60]!r} is refused: a request names a source, it never brings a command; "
            f"the board's admin declares commands in {config.path or 'the agent config'} "
            "(\"power_sources\": {\"meter\": \"cmd:...\"}) and you ask for --power meter (see deploy/POWER.md)"
        )
    raise ConfigError(
        f"unknown power source {name!r}; this board declares: {declared} (plus the built-in rapl, rapl:package, "
        f"rapl:dram, hwmon, hwmon:hwmonN); declare it in {config.path or 'the agent config'} (deploy/POWER.md)"
    )
