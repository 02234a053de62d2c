"""``hostside boards add|list|remove|check|trust|install`` and ``hostside measure``.

Handlers import paramiko and the board code lazily so ``hostside --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from device_agent.protocol import add_measure_arguments, options_from_args
from hostside.errors import UserError


def register(subparsers: Any) -> None:
    boards = subparsers.add_parser("boards", help="board inventory: add, list, remove, check, trust, install")
    sub = boards.add_subparsers(dest="boards_command", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", help="add a board reached over SSH")
    add.add_argument("name")
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--user", required=True)
    add.add_argument("--key", default=None, help="private key file (default: ssh-agent and ~/.ssh keys)")
    add.add_argument("--python", default="python3", help="Python on the board (default python3)")
    add.add_argument("--agent-dir", default=None, help="agent directory on the board (default ~/.device-agent)")
    add.add_argument("--daemon-port", type=int, default=None, help="loopback port of the board's daemon (default 47800)")
    add.add_argument("--device-key", default=None, help="device kind for pooling (default: derived from the CPU)")
    add.set_defaults(handler=cmd_add)

    listing = sub.add_parser("list", help="list boards")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    remove = sub.add_parser("remove", help="remove a board from the inventory")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_remove)

    check = sub.add_parser("check", help="connect, show the agent's info and say what is missing")
    check.add_argument("name")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check)

    trust = sub.add_parser("trust", help="trust the board's SSH host key (shows its fingerprint)")
    trust.add_argument("name")
    trust.add_argument("--yes", action="store_true", help="trust without asking")
    trust.set_defaults(handler=cmd_trust)

    install = sub.add_parser("install", help="copy the agent to the board and check Python and onnxruntime")
    install.add_argument("name")
    install.add_argument("--systemd", action="store_true", help="also install and start the systemd unit (needs sudo)")
    install.set_defaults(handler=cmd_install)

    measure = subparsers.add_parser("measure", help="measure batch-1 latency (and power) of an ONNX model on a board")
    measure.add_argument("model", metavar="MODEL.onnx")
    measure.add_argument("--board", default="local", help="board name (default: local, this machine)")
    add_measure_arguments(measure)  # the memory limit applies to one-shot runs; a daemon keeps its own
    measure.add_argument("--json", action="store_true", help="print the result as one JSON object")
    measure.add_argument("--plot", default=None, metavar="PNG", help="also write a latency histogram and run trace to this PNG")
    measure.set_defaults(handler=cmd_measure)


def cmd_add(args: argparse.Namespace) -> int:
    from hostside.boards import inventory

    settings: Dict[str, Any] = {"port": args.port, "key": args.key, "python": args.python}
    if args.agent_dir:
        settings["agent_dir"] = args.agent_dir
    if args.daemon_port:
        settings["daemon_port"] = args.daemon_port
    if args.device_key:
        settings["device_key"] = args.device_key
    path = inventory.add(inventory.BoardConfig(name=args.name, host=args.host, user=args.user, **settings))
    print(f"added board {args.name} ({args.user}@{args.host}:{args.port}) to {path}")
    print(f"next: `hostside boards trust {args.name}`, then `hostside boards install {args.name}`")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hostside.boards import inventory

    boards = inventory.load()
    if args.json:
        print(json.dumps([{"name": inventory.LOCAL, "host": None}] + [asdict(b) for b in boards.values()], indent=2))
        return 0
    print(f"{inventory.LOCAL:16} this machine (no SSH)")
    for name, board in sorted(boards.items()):
        print(f"{name:16} {board.user}@{board.host}:{board.port}  python={board.python}  agent_dir={board.agent_dir}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from hostside.boards import control, inventory

    path = inventory.remove(args.name)
    # Its control process would otherwise hold the board's SSH session until it idles out.
    stopped = control.stop_controls(args.name)
    print(f"removed board {args.name} from {path}" + ("; closed its open connection" if stopped else ""))
    return 0


def _check_findings(facts: Dict[str, Any]) -> List[str]:
    """What on the board would make measurements wrong or impossible, with the fix."""
    findings = []
    ort = facts.get("onnxruntime") or {}
    if not ort.get("version"):
        findings.append(f"onnxruntime missing ({ort.get('import_error')}); run `hostside boards install NAME` for the fix")
    governor = (facts.get("frequency") or {}).get("governor")
    if governor not in (None, "performance"):
        findings.append(
            f"CPU governor is {governor!r}: timings drift with the clock; "
            "`echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor` (deploy/GUIDE.md)"
        )
    throttled = facts.get("throttled") or {}
    if throttled.get("under_voltage_occurred"):
        findings.append("under-voltage has occurred since boot: use the official 5.1 V supply")
    if throttled.get("now"):
        findings.append("the board is throttled now: add a heatsink or fan and let it cool")
    if not facts.get("power_sources"):
        findings.append("no power source (RAPL or INA2xx): energy cannot be measured; see deploy/POWER.md")
    return findings


def _daemon_verdict(board: Any, daemon: Optional[Dict[str, Any]], facts: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """One verdict on the board's daemon: the short state for the summary line and the finding
    (with its fix) that goes with it, derived together so the two never contradict each other
    (a daemon that listens but cannot be used is neither "running" nor "not running")."""
    if board.config is None:
        return "none (local measures one-shot)", None
    port, name = board.config.daemon_port, board.name
    if daemon is not None:
        if daemon.get("agent_version") != facts.get("agent_version"):
            return f"pid {daemon.get('pid')}", (
                f"the daemon runs agent {daemon.get('agent_version')} but {facts.get('agent_version')} is installed; restart it"
            )
        return f"pid {daemon.get('pid')}", None
    if board.daemon_token_missing:
        return "listening, but its token file is missing", (
            f"a daemon listens on 127.0.0.1:{port} but its token file is missing ({board.daemon_problem}): restart the "
            f"daemon so it writes a fresh one (`sudo systemctl restart device-agent`, or stop it and run "
            f"`device-agent serve --port {port}` again)"
        )
    if board.daemon_listens:
        return "listening, but unusable", f"a daemon listens on 127.0.0.1:{port} but cannot be used: {board.daemon_problem}"
    return "not running", (
        f"no daemon on 127.0.0.1:{port}: every measurement starts Python and onnxruntime "
        f"anew; run deploy/install-agent.sh on the board or `hostside boards install {name} --systemd`"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from hostside.boards import open_board

    with open_board(args.name) as board:
        facts = board.info()
        findings = [f.replace("NAME", args.name) for f in _check_findings(facts)]
        daemon = board.daemon()
        daemon_state, daemon_finding = _daemon_verdict(board, daemon, facts)
        if daemon_finding:
            findings.append(daemon_finding)
        if args.json:
            print(json.dumps({"name": args.name, "key": board.key, "info": facts, "daemon": daemon,
                              "daemon_state": daemon_state, "findings": findings}, indent=2))
        else:
            ort = facts.get("onnxruntime") or {}
            print(f"board {args.name}: {facts.get('cpu_model')} ({facts.get('architecture')}, {facts.get('cores')} cores), {facts.get('os')}")
            print(f"  python {facts.get('python')}, numpy {facts.get('numpy')}, onnxruntime {ort.get('version')}")
            print(f"  device key {board.key}; daemon {daemon_state}")
            for finding in findings:
                print(f"  - {finding}")
            if not findings:
                print("  ready")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from hostside.boards import inventory, ssh

    config = inventory.get(args.name)
    key = ssh.fetch_host_key(config)
    shown = f"{key.get_name()} {ssh.fingerprint(key)}"
    old = ssh.trusted_key(config)
    if old is not None and old == key:
        print(f"board {args.name}: host key {shown} is already trusted")
        return 0
    print(f"board {args.name} ({config.host}:{config.port}) presents host key {shown}")
    if old is not None:
        print(f"WARNING: this replaces the trusted key {old.get_name()} {ssh.fingerprint(old)}")
    print(f"compare on the board with: ssh-keygen -lf /etc/ssh/ssh_host_{key.get_name().split('-')[-1]}_key.pub")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"not trusting the key of {args.name} without confirmation; rerun with --yes after checking the fingerprint")
        if input("trust this key? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UserError(f"host key of {args.name} not trusted; nothing changed")
    path = ssh.trust(config, key)
    print(f"trusted; recorded in {path}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from hostside.boards import inventory
    from hostside.boards.install import install

    if args.name == inventory.LOCAL:
        raise UserError("'local' uses this working tree's agent and needs no install; name a board from `hostside boards list`")
    install(inventory.get(args.name), systemd=args.systemd)
    print(f"board {args.name} is ready: try `hostside measure --board {args.name} MODEL.onnx`")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from hostside.boards import inventory
    from hostside.safe_io import check_file

    model = check_file(args.model, "model file")
    options = options_from_args(args)
    options["keep_samples"] = options["keep_samples"] or args.plot is not None
    from hostside.boards import control

    result = None
    config = None if args.board == inventory.LOCAL else inventory.get(args.board)
    use_control = config is not None and control.enabled()
    if use_control:
        result = control.measure_via_control(config, model, options)
    if result is None:
        from hostside.boards import open_board

        with open_board(args.board) as board:
            result = board.measure(model, **options)
        if use_control:
            control.start_control(config)  # the next command finds the connection open
    if args.plot and not result.get("error"):
        from hostside.boards.plots import plot_latency

        plot_latency(result, args.plot, title=f"{args.model} on {args.board}")
    if args.json:
        print(json.dumps(result, indent=2))
    error = result.get("error")
    if error:
        raise UserError(f"measuring {args.model} on {args.board} failed [{error['code']}]: {error['message']}")
    if not args.json:
        latency, host = result["latency_ms"], result["host"]
        print(
            f"{args.model} on {args.board}: median {latency['median']:.3f} ms (p90 {latency['p90']:.3f}, "
            f"min {latency['min']:.3f}, n={latency['count']}); host total {host['total_s']:.2f} s"
        )
        if result.get("power"):
            power = result["power"]
            print(f"  {power['avg_w']:.2f} W, {power['energy_per_inference_mj']:.3f} mJ/inference ({power['energy_above_idle_per_inference_mj']:.3f} above idle)")
        for warning in result.get("warnings") or []:
            print(f"  warning: {warning}")
        if args.plot:
            print(f"  latency plot written to {args.plot}")
    return 0
