"""Build recipe for the emulated ARM boards: one Debian userland per board variant.

Each variant has the Python and onnxruntime a real board of that kind has. Builds are
cached under ``$HOSTSIDE_ARM_CACHE`` (default ``/var/cache/hostside-arm``), outside the
repository so that a fresh CI clone on the same machine finds them warm, in
``VARIANT-<first 16 hex of sha256 of this file>``: editing the recipe rebuilds every
board, editing how boards are started (``emulated_board.py``) does not.

The traps this recipe handles (met on the build machines):

* ``binfmt_misc`` must be mounted and qemu registered, or every ARM program fails with
  "Exec format error" (``check_host`` says so, with the commands that fix it).
* onnxruntime's CPU detection reads ``/proc/cpuinfo`` and ``/sys``: with the host's x86
  ``cpuinfo`` visible ``import onnxruntime`` segfaults on arm64, and armhf aborts without
  ``/sys``. Every command in the userland therefore runs with an ARM ``cpuinfo`` (a
  Raspberry Pi 3B+, from ``cpuinfo/``) bind-mounted over ``/proc/cpuinfo`` and ``/sys``
  mounted, in a private mount namespace so no mount outlives the command.
* PyPI has no armv7l onnxruntime or numpy wheels: the 32-bit board uses Debian's packages.

Only the standard library is used: this runs before anything else is installed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
CACHE_ENV = "HOSTSIDE_ARM_CACHE"
DEFAULT_CACHE = "/var/cache/hostside-arm"
MIRROR = "http://deb.debian.org/debian"
BOARD_USER = "pi"
BOARD_UID = 1000


class BoardError(Exception):
    """Something the person running the rig can fix; printed as one line."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One kind of board: a Debian release and architecture, and where onnxruntime comes from."""

    name: str
    debian_arch: str  # debootstrap --arch
    suite: str
    qemu_binfmt: str  # the binfmt_misc entry that must be enabled
    machine: str  # what `uname -m` reports on the board
    cpuinfo: str  # file in cpuinfo/ bind-mounted over /proc/cpuinfo
    debs: Sequence[str]  # debootstrap --include: only packages without virtual dependencies
    apt_packages: Sequence[str] = ()  # apt-get install afterwards: apt resolves what debootstrap cannot
    pip_packages: Sequence[str] = ()
    pip_options: Sequence[str] = ()
    description: str = ""


BASE_DEBS = ("openssh-server", "openssh-sftp-server", "python3", "ca-certificates", "procps")

VARIANTS: Dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            name="arm64-bookworm",
            debian_arch="arm64",
            suite="bookworm",
            qemu_binfmt="qemu-aarch64",
            machine="aarch64",
            cpuinfo="aarch64-cortex-a53.txt",
            debs=BASE_DEBS + ("python3-pip",),
            # PEP 668: Debian bookworm marks the system Python externally managed.
            pip_packages=("onnxruntime==1.31.1",),
            pip_options=("--break-system-packages",),
            description="64-bit Raspberry Pi OS bookworm: Python 3.11, onnxruntime from PyPI aarch64 wheels",
        ),
        Variant(
            name="armhf-trixie",
            debian_arch="armhf",
            suite="trixie",
            qemu_binfmt="qemu-arm",
            machine="armv7l",
            cpuinfo="armv7l-cortex-a53.txt",
            debs=BASE_DEBS,
            # PyPI has no armv7l onnxruntime or numpy wheels; Debian trixie packages both.
            # libonnxruntime depends on a virtual package (libre2-11-absl20240722) that
            # debootstrap's resolver cannot satisfy, so apt installs them.
            apt_packages=("python3-numpy", "python3-onnxruntime"),
            description="32-bit (armhf) board, Debian trixie: Python 3.13, Debian's python3-onnxruntime",
        ),
        Variant(
            name="arm64-bullseye",
            debian_arch="arm64",
            suite="bullseye",
            qemu_binfmt="qemu-aarch64",
            machine="aarch64",
            cpuinfo="aarch64-cortex-a53.txt",
            debs=BASE_DEBS + ("python3-pip",),
            # 1.19.2 is the last onnxruntime with cp39 wheels: this board holds the agent to
            # its Python 3.9 promise.
            pip_packages=("onnxruntime==1.19.2",),
            description="64-bit Raspberry Pi OS bullseye: Python 3.9, onnxruntime 1.19.2 from PyPI",
        ),
    )
}


def recipe_hash() -> str:
    """The cache key: any edit to this file (variants, build steps) rebuilds every board."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def build_dir(variant: Variant) -> Path:
    return cache_root() / f"{variant.name}-{recipe_hash()}"


def is_built(variant: Variant) -> bool:
    return (build_dir(variant) / "manifest.json").is_file()


def lookup_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise BoardError(
            f"unknown board variant {name!r}; choose one of: {', '.join(VARIANTS)}"
        ) from None


def check_host(variant: Variant) -> None:
    """Refuse early, with the fix, instead of failing deep inside debootstrap or chroot."""
    if os.geteuid() != 0:
        raise BoardError("emulated boards need root (mounts, chroot); run as root")
    for tool in ("debootstrap", "unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise BoardError(
                f"{tool} not found; install it: apt-get install -y qemu-user-static binfmt-support debootstrap"
            )
    entry = Path("/proc/sys/fs/binfmt_misc") / variant.qemu_binfmt
    if not entry.is_file() or not entry.read_text().startswith("enabled"):
        raise BoardError(
            f"binfmt_misc entry {variant.qemu_binfmt} is not enabled, so every ARM program fails "
            "with 'Exec format error'; run: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; "
            f"update-binfmts --enable {variant.qemu_binfmt}"
        )


def run_logged(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None,
               shown: Optional[Sequence[str]] = None) -> None:
    """Run a build step, appending its output to the build log; a failure quotes the log's tail."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(shown or cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BoardError(
            f"{cmd[0]} failed (exit {result.returncode}); full log in {log}; last lines: "
            + " | ".join(tail)
        )


# Runs inside the board's private mount namespace: mounts what onnxruntime and sshd need,
# then execs the given command chrooted. "$1" root, "$2" cpuinfo file, rest: command.
CHROOT_PRELUDE = r"""
set -e
root="$1"; cpuinfo="$2"; shift 2
mount -t proc proc "$root/proc"
mount --bind "$cpuinfo" "$root/proc/cpuinfo"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
exec chroot "$root" "$@"
"""


def in_board(root: Path, variant: Variant, command: Sequence[str], log: Path,
             env: Optional[Dict[str, str]] = None) -> None:
    """Run one command inside the userland, with ARM cpuinfo and /sys, mounts self-cleaning."""
    cpuinfo = HERE / "cpuinfo" / variant.cpuinfo
    run_logged(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", CHROOT_PRELUDE, "sh",
         str(root), str(cpuinfo), *command],
        log,
        env=env,
        shown=["(in board)", *command],
    )


def refuse_if_mounted_under(directory: Path) -> None:
    """Deleting a tree with /proc or /sys mounted inside would reach into the live system."""
    prefix = str(directory.resolve()) + "/"
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4].startswith(prefix)]
    if mounted:
        raise BoardError(f"{', '.join(mounted)} still mounted; run umount -R {' '.join(mounted)} and retry")


def say(message: str) -> None:
    print(message, flush=True)  # CI logs show build progress as it happens


def build(variant: Variant, progress: Callable[[str], None] = say) -> Path:
    """Build the variant's userland once; later calls (and other processes) reuse it."""
    check_host(variant)
    final = build_dir(variant)
    if is_built(variant):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{variant.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same variant waits here
        if is_built(variant):
            return final
        partial = final.parent / f"{final.name}.partial"
        if partial.exists():
            refuse_if_mounted_under(partial)
            shutil.rmtree(partial)  # an interrupted build: start again from scratch
        partial.mkdir()
        root = partial / "rootfs"
        log = partial / "build.log"
        started = time.monotonic()
        progress(f"[{variant.name}] debootstrap {variant.suite}/{variant.debian_arch} (log: {log})")
        # debootstrap mounts /proc and /sys in the target itself: in a private namespace
        # those mounts cannot outlive an interrupted build.
        run_logged(
            ["unshare", "--mount", "--propagation", "private",
             "debootstrap", f"--arch={variant.debian_arch}", "--variant=minbase",
             f"--include={','.join(variant.debs)}", variant.suite, str(root), MIRROR],
            log,
        )
        progress(f"[{variant.name}] configuring user {BOARD_USER}, sshd host keys")
        shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
        in_board(root, variant, ["ssh-keygen", "-A"], log)
        in_board(root, variant, ["useradd", "--create-home", "--uid", str(BOARD_UID),
                                 "--shell", "/bin/bash", BOARD_USER], log)
        # sshd without PAM refuses accounts whose password is locked ("!"); "*" means
        # "no password login" without locking the account, as on a key-only Pi.
        in_board(root, variant, ["usermod", "--password", "*", BOARD_USER], log)
        if variant.apt_packages:
            progress(f"[{variant.name}] apt-get install {' '.join(variant.apt_packages)} (emulated)")
            apt_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
            in_board(root, variant, ["apt-get", "update", "-q"], log, env=apt_env)
            in_board(root, variant, ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                     *variant.apt_packages], log, env=apt_env)
        if variant.pip_packages:
            progress(f"[{variant.name}] pip install {' '.join(variant.pip_packages)} (emulated)")
            # The build machine may reach PyPI through a TLS-intercepting proxy whose CA
            # only the host trusts; lend the host's bundle to pip for the build only.
            build_ca = root / "tmp/build-ca.crt"
            shutil.copy2(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"), build_ca)
            pip_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                       "PIP_CERT": "/tmp/build-ca.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                       "PIP_NO_CACHE_DIR": "1"}
            in_board(root, variant,
                     ["python3", "-m", "pip", "install", *variant.pip_options, *variant.pip_packages],
                     log, env=pip_env)
            build_ca.unlink()
        facts = root / "tmp/facts.json"
        in_board(root, variant, ["python3", "-c", FACTS_PROBE, "/tmp/facts.json"], log)
        manifest = {
            "variant": variant.name,
            "description": variant.description,
            "suite": variant.suite,
            "debian_arch": variant.debian_arch,
            "recipe_sha256_16": recipe_hash(),
            "build_s": round(time.monotonic() - started, 1),
            **json.loads(facts.read_text()),
        }
        facts.unlink()
        if manifest["machine"] != variant.machine:
            raise BoardError(
                f"[{variant.name}] the userland reports machine {manifest['machine']!r}, expected "
                f"{variant.machine!r}; check the binfmt_misc registration of {variant.qemu_binfmt}"
            )
        for apt_cache in (root / "var/cache/apt/archives").glob("*.deb"):
            apt_cache.unlink()
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
        progress(f"[{variant.name}] built in {manifest['build_s']} s: Python {manifest['python']}, "
                 f"onnxruntime {manifest['onnxruntime']}, numpy {manifest['numpy']}")
        return final


# Proves at build time that onnxruntime imports under emulation (the import is what
# crashes when the cpuinfo/sysfs traps are not handled), and records the versions.
FACTS_PROBE = r"""
import json, platform, sys
import numpy, onnxruntime
json.dump({"machine": platform.machine(), "python": platform.python_version(),
           "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
           "providers": onnxruntime.get_available_providers()}, open(sys.argv[1], "w"))
"""
