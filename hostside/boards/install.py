"""``hostside boards install``: put the agent on a board and prove it can run a model there.

The package is copied over SFTP (the board runs it with its own interpreter, no pip), then
checked in separate processes: the interpreter itself, then one tiny inference
(``device-agent selftest``), because some onnxruntime releases import fine and then die with
"Illegal instruction" on a Raspberry Pi 4. Whatever is missing is named with the command that
fixes it for that board's architecture.
"""

from __future__ import annotations

import json
import shlex
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List

import device_agent
from hostside.boards.inventory import BoardConfig
from hostside.boards.ssh import SSHTransport
from hostside.errors import UserError

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
MIN_PYTHON = (3, 9)
_PYTHON_PROBE = "import json, platform, sys; print(json.dumps({'version': list(sys.version_info[:3]), 'machine': platform.machine()}))"


def agent_files() -> List[Path]:
    package = Path(device_agent.__file__).resolve().parent
    return sorted(package.glob("*.py"))


def onnxruntime_advice(machine: str, python: str) -> str:
    """How to get a working onnxruntime on this kind of board (deploy/ARM_BOARDS.md has the matrix)."""
    if machine in ("aarch64", "arm64"):
        return (
            "PyPI has aarch64 wheels: on Raspberry Pi OS 64-bit make a venv (`python3 -m venv ~/agent-venv && "
            "~/agent-venv/bin/pip install onnxruntime numpy`) and set python = \"/home/USER/agent-venv/bin/python\" "
            "for the board (Python 3.9 gets onnxruntime 1.19.2 at most); see deploy/ARM_BOARDS.md"
        )
    if machine.startswith("armv7"):
        return (
            "PyPI has no onnxruntime wheels for 32-bit ARM: on Debian trixie armhf `sudo apt install python3-onnxruntime "
            "python3-numpy`; on older 32-bit systems build onnxruntime from source (deploy/GUIDE.md) or install a 64-bit "
            "OS if the CPU is ARMv8 (Pi 3/4/5); see deploy/ARM_BOARDS.md"
        )
    if machine.startswith("armv6"):
        return "ARMv6 boards (Pi 1, Pi Zero) have no onnxruntime build; use a Pi 3 or newer"
    return f"install it with `{python} -m pip install onnxruntime numpy` (in a venv if pip refuses)"


def install(config: BoardConfig, *, systemd: bool = False, say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Copy the agent, check the board's Python and onnxruntime; UserError says what to fix."""
    transport = SSHTransport(config)
    try:
        probe = transport.run([config.python, "-c", _PYTHON_PROBE], timeout_s=60.0)
        if probe.returncode != 0:
            raise UserError(
                f"board {config.name!r} cannot run {config.python!r} ({probe.stderr.strip()[-200:] or 'exit ' + str(probe.returncode)}); "
                "install Python 3.9 or newer (sudo apt install python3) or set the board's python path with "
                f"`hostside boards remove {config.name}` and `hostside boards add ... --python PATH`"
            )
        facts = json.loads(probe.stdout.strip().splitlines()[-1])
        version = tuple(facts["version"])
        if version < MIN_PYTHON:
            raise UserError(
                f"board {config.name!r} has Python {'.'.join(map(str, version))}; the agent needs 3.9 or newer "
                "(Raspberry Pi OS bullseye or later ships it)"
            )
        target = f"{transport.agent_dir}/lib/device_agent"
        transport.makedirs(target)
        for path in agent_files():
            transport.put_file(path, f"{target}/{path.name}")
        say(f"copied the device agent ({len(agent_files())} files) to {config.name}:{target}")
        check = transport.run_agent(["selftest", "--json"], timeout_s=120.0)
        if check.returncode == 128 + signal.SIGILL:
            raise UserError(
                f"onnxruntime on board {config.name!r} dies with 'Illegal instruction': this release does not suit "
                f"the CPU; install another one, e.g. `{config.python} -m pip install --user 'onnxruntime==1.16.3'`"
            )
        lines = [line for line in check.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise UserError(
                f"the agent self-test on board {config.name!r} printed nothing (exit {check.returncode}: "
                f"{check.stderr.strip()[-200:]}); rerun with --debug and check the board's Python"
            )
        selftest = json.loads(lines[-1])
        if not selftest.get("ok"):
            advice = onnxruntime_advice(facts["machine"], config.python)
            raise UserError(f"board {config.name!r}: {selftest.get('message')}; {advice}")
        say(f"self-test passed: Python {selftest['python']}, numpy {selftest['numpy']}, onnxruntime {selftest['onnxruntime']} on {selftest['architecture']}")
        report: Dict[str, Any] = {"agent_dir": transport.absolute_path(transport.agent_dir), "selftest": selftest, "systemd": None}
        if systemd:
            report["systemd"] = _install_unit(transport, config, say)
        return report
    finally:
        transport.close()


def render_unit(template: str, *, user: str, agent_dir: str, python: str, port: int) -> str:
    """deploy/device-agent.service adapted to an agent copied into a user's ``agent_dir``."""
    replacements = {
        "User=device-agent": f"User={user}",
        "Group=device-agent\n": "",
        "DEVICE_AGENT_HOME=/var/lib/device-agent": f"DEVICE_AGENT_HOME={agent_dir}",
        "PYTHONPATH=/opt/device-agent/lib": f"PYTHONPATH={agent_dir}/lib",
        "ReadWritePaths=/var/lib/device-agent": f"ReadWritePaths={agent_dir}",
        "ProtectHome=read-only": "ProtectHome=no",
        # The SSH user's own daemon: token 0600 and config agent.json in its agent_dir (the defaults).
        "/opt/device-agent/venv/bin/python -m device_agent serve --port 47800 --token-mode 0640 --config /etc/device-agent/agent.json":
            f"{python} -m device_agent serve --port {port}",
    }
    for old, new in replacements.items():
        template = template.replace(old, new)
    return template


def _install_unit(transport: SSHTransport, config: BoardConfig, say: Callable[[str], None]) -> str:
    """Install and start the systemd unit with passwordless sudo; else say how to do it by hand."""
    unit = render_unit(
        (DEPLOY_DIR / "device-agent.service").read_text(),
        user=config.user,
        agent_dir=transport.absolute_path(transport.agent_dir),  # systemd reads it outside any session
        python=config.python,
        port=config.daemon_port,
    )
    staging = f"{transport.agent_dir}/device-agent.service"
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "device-agent.service"
        local.write_text(unit)
        transport.put_file(local, staging)
    steps = (
        f"sudo -n install -m 0644 {shlex.quote(staging)} /etc/systemd/system/device-agent.service && "
        "sudo -n systemctl daemon-reload && sudo -n systemctl enable --now device-agent"
    )
    done = transport.run(["sh", "-c", steps], timeout_s=120.0)
    if done.returncode != 0:
        raise UserError(
            f"could not install the systemd unit on {config.name!r} ({done.stderr.strip()[-200:]}); "
            f"log in and run: {steps.replace('sudo -n', 'sudo')}"
        )
    say(f"systemd unit device-agent installed and started on {config.name}")
    return "started"
