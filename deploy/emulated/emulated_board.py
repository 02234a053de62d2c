#!/usr/bin/env python3
"""Emulated ARM boards (qemu-user) reached over SSH exactly like a real Raspberry Pi.

No board is attached to the machines that run our tests, but they can run ARM Linux
userlands under qemu-user emulation. ``userland.py`` builds and caches those userlands;
this script starts an ``sshd`` inside one on a loopback port with a test key, so that
``hostside boards add NAME --host 127.0.0.1 --port P --user pi --key K`` reaches it
through the same SSH, SFTP and agent code paths as a Pi on the network.

Usage (root; ``apt-get install -y qemu-user-static binfmt-support debootstrap``)::

    emulated_board.py build [VARIANT...]      build (or reuse cached) userlands
    emulated_board.py start VARIANT --state-dir D --authorized-key K.pub [--port P]
    emulated_board.py stop --state-dir D      (or --all: every board left running)
    emulated_board.py list                    variants and their cache state
    emulated_board.py prune                   delete builds of other recipe versions

Why a running board is built the way it is:

* It is an overlayfs over the cached root, so nothing done on the board (installing the
  agent, results) leaks into the cache.
* It lives in its own mount namespace (``unshare --mount``): its ``/proc``, ``/sys`` and
  ``/dev`` mounts vanish by themselves when its last process exits, even if a test run is
  killed, and ``stop`` finds the board's processes by that namespace (sshd's
  per-connection children and a detached agent daemon call ``setsid``, so a process group
  would miss them).
* Timings measured on these boards are hundreds of times slower than native and mean
  nothing; the boards exist to prove correctness (install, agent, daemon, outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from userland import (BOARD_UID, BOARD_USER, HERE, VARIANTS, BoardError, Variant, build,
                      build_dir, cache_root, is_built, lookup_variant, recipe_hash,
                      refuse_if_mounted_under)

BOARD_STATE_FILE = "board.json"
#: Written into every running board, so code on the board (and anyone logged in) can tell
#: that its timings are emulated and must never become calibration data.
EMULATED_MARKER = "/etc/hostside/emulated-board.json"


def running_registry() -> Path:
    """A copy of each running board's board.json (named by its port), so `stop --all` finds
    boards that a killed test run left behind, even after their state dir was deleted."""
    return cache_root() / "running"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sshd_config(port: int) -> str:
    """Key-only sshd on loopback; the same policy a hardened Pi would have."""
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "HostKey /etc/ssh/ssh_host_ecdsa_key",
        "HostKey /etc/ssh/ssh_host_rsa_key",
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        # No PAM inside a chroot: there is no login session machinery to talk to.
        "UsePAM no",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "",
    ])


# Runs in the board's own mount namespace: overlay over the cached root, the mounts
# onnxruntime needs, the test key for the board's user, then sshd in the foreground.
START_SCRIPT = r"""
set -e
lower="$1"; state="$2"; cpuinfo="$3"; pubkey="$4"; user="$5"; uid="$6"; marker="$7"
root="$state/merged"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$root"
mount -t proc proc "$root/proc"
mount --bind "$cpuinfo" "$root/proc/cpuinfo"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
install -d -o "$uid" -g "$uid" -m 700 "$root/home/$user/.ssh"
install -o "$uid" -g "$uid" -m 600 "$pubkey" "$root/home/$user/.ssh/authorized_keys"
install -m 644 "$state/sshd_config" "$root/etc/ssh/sshd_config_emulated"
install -D -m 644 "$state/emulated-board.json" "$root$marker"
mkdir -p "$root/run/sshd"
exec chroot "$root" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config_emulated
"""


def wait_for_ssh_banner(port: int, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BoardError(f"sshd on the board exited (code {process.returncode}); its log: "
                             + " | ".join(log.read_text(errors="replace").splitlines()[-10:]))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.settimeout(10)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.3)
    raise BoardError(f"sshd on the board did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s; log: {log}")


def start(variant: Variant, state_dir: Path, authorized_key: Path, port: int = 0,
          timeout_s: float = 120.0) -> Dict[str, object]:
    """Start the board's sshd; returns what a test needs to reach it (also in board.json)."""
    lower = build(variant) / "rootfs"
    if not authorized_key.is_file():
        raise BoardError(f"public key {authorized_key} not found; create one with ssh-keygen -t ed25519 -f KEY")
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / BOARD_STATE_FILE).exists():
        raise BoardError(f"{state_dir} already holds a board; stop it first: emulated_board.py stop --state-dir {state_dir}")
    for part in ("upper", "work", "merged"):
        (state_dir / part).mkdir(exist_ok=True)
    port = port or free_loopback_port()
    (state_dir / "sshd_config").write_text(sshd_config(port))
    (state_dir / "emulated-board.json").write_text(json.dumps(
        {"emulated": True, "emulator": "qemu-user", "variant": variant.name,
         "note": "timings on this board are emulated and meaningless; never use them as calibration data"}) + "\n")
    log = state_dir / "sshd.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", START_SCRIPT, "sh",
             str(lower), str(state_dir), str(HERE / "cpuinfo" / variant.cpuinfo),
             str(authorized_key), BOARD_USER, str(BOARD_UID), EMULATED_MARKER],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a test run must not kill the board mid-stop
        )
    board = {
        "variant": variant.name,
        "host": "127.0.0.1",
        "port": port,
        "user": BOARD_USER,
        "pid": process.pid,
        "state_dir": str(state_dir),
        "manifest": json.loads((build_dir(variant) / "manifest.json").read_text()),
        # What `ssh-keyscan` would print: lets a test hold `hostside boards trust` to the
        # board's real key instead of trusting whatever answers.
        "host_keys": [path.read_text().split()[:2] for path in sorted((lower / "etc/ssh").glob("ssh_host_*_key.pub"))],
    }
    try:
        wait_for_ssh_banner(port, process, log, timeout_s)
        # sh and chroot exec'd into sshd, so the pid is sshd's; its mount namespace names
        # every process of this board, whatever session or group it later moves to.
        board["mount_namespace"] = os.readlink(f"/proc/{process.pid}/ns/mnt")
    except BaseException:
        kill_pids([process.pid])
        raise
    (state_dir / BOARD_STATE_FILE).write_text(json.dumps(board, indent=2) + "\n")
    running_registry().mkdir(parents=True, exist_ok=True)
    (running_registry() / f"{port}.json").write_text(json.dumps(board, indent=2) + "\n")
    return board


def pids_in_namespace(namespace: str) -> List[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns/mnt") == namespace:
                    pids.append(int(entry.name))
            except OSError:
                continue  # exited meanwhile
    return pids


def kill_pids(pids: Sequence[int], grace_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)


def kill_board(board: Dict[str, object]) -> None:
    """Kill every process in the board's mount namespace; its mounts go with the namespace."""
    namespace = board.get("mount_namespace")
    if namespace and namespace != os.readlink("/proc/self/ns/mnt"):
        for _ in range(3):  # a dying sshd may still fork; sweep until the namespace is empty
            pids = pids_in_namespace(str(namespace))
            if not pids:
                break
            kill_pids(pids)
    (running_registry() / f"{board['port']}.json").unlink(missing_ok=True)


def stop(state_dir: Path) -> None:
    """Kill the board's processes and remove its state directory."""
    state_file = state_dir / BOARD_STATE_FILE
    if state_file.is_file():
        kill_board(json.loads(state_file.read_text()))
    merged = str((state_dir / "merged").resolve())
    if any(merged in line for line in Path("/proc/self/mountinfo").read_text().splitlines()):
        raise BoardError(f"{merged} is still mounted in this namespace; unmount it (umount -R {merged}) and retry")
    if state_dir.exists():
        shutil.rmtree(state_dir)


def build_all(variants: Sequence[Variant]) -> None:
    """Build variants side by side: much of a build waits on downloads and on emulated
    dpkg/pip, so overlapping them shortens a cold CI run on a 2-core machine."""
    with ThreadPoolExecutor(max_workers=len(variants) or 1) as pool:
        futures = [pool.submit(build, variant) for variant in variants]
        failures = [str(future.exception()) for future in futures if future.exception() is not None]
    if failures:
        raise BoardError("; ".join(failures))


def cmd_build(args: argparse.Namespace) -> int:
    build_all([lookup_variant(name) for name in args.variants or list(VARIANTS)])
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    board = start(lookup_variant(args.variant), Path(args.state_dir).resolve(),
                  Path(args.authorized_key).resolve(), args.port)
    print(json.dumps(board, indent=2))
    return 0


def stop_all() -> int:
    """Stop every board this machine still runs, e.g. after a test run was killed."""
    registry = running_registry()
    entries = sorted(registry.glob("*.json")) if registry.is_dir() else []
    for entry in entries:
        board = json.loads(entry.read_text())
        kill_board(board)
        stop(Path(str(board["state_dir"])))
    return len(entries)


def cmd_stop(args: argparse.Namespace) -> int:
    if args.all:
        print(f"stopped {stop_all()} emulated board(s)")
    else:
        stop(Path(args.state_dir).resolve())
    return 0


def prune() -> List[Path]:
    """Delete builds of other recipe versions (about 600 MB each) that no running board uses."""
    registry = running_registry()
    in_use = {json.loads(entry.read_text())["manifest"]["recipe_sha256_16"]
              for entry in (registry.glob("*.json") if registry.is_dir() else [])}
    keep = in_use | {recipe_hash()}
    removed = []
    for path in sorted(cache_root().iterdir()) if cache_root().is_dir() else []:
        name = path.name[:-len(".partial")] if path.name.endswith(".partial") else path.name
        variant, _, digest = name.rpartition("-")
        if path.is_dir() and variant in VARIANTS and digest not in keep:
            refuse_if_mounted_under(path)
            shutil.rmtree(path)
            removed.append(path)
    return removed


def cmd_prune(args: argparse.Namespace) -> int:
    for path in prune():
        print(f"removed {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for variant in VARIANTS.values():
        state = "built" if is_built(variant) else "not built"
        print(f"{variant.name:16} {state:10} {build_dir(variant)}  {variant.description}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build (or reuse) the cached userlands")
    p.add_argument("variants", nargs="*", metavar="VARIANT", help=f"default: all of {', '.join(VARIANTS)}")
    p.set_defaults(handler=cmd_build)
    p = sub.add_parser("start", help="start a board's sshd on a loopback port; prints JSON")
    p.add_argument("variant", metavar="VARIANT")
    p.add_argument("--state-dir", required=True, help="the running board's overlay, log and board.json")
    p.add_argument("--authorized-key", required=True, help="public key allowed to log in as pi")
    p.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    p.set_defaults(handler=cmd_start)
    p = sub.add_parser("stop", help="kill a board's processes and remove its state")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--state-dir", help="the board to stop")
    which.add_argument("--all", action="store_true", help="every board started on this machine and not stopped")
    p.set_defaults(handler=cmd_stop)
    p = sub.add_parser("prune", help="delete cached builds of other recipe versions")
    p.set_defaults(handler=cmd_prune)
    p = sub.add_parser("list", help="variants and their cache state")
    p.set_defaults(handler=cmd_list)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BoardError as exc:
        print(f"emulated_board: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
