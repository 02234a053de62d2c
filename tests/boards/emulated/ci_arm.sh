#!/usr/bin/env bash
# Emulated ARM boards (qemu-user) for the end-to-end tests in tests/boards/emulated.
#
#   ci_arm.sh --prepare   prepare this machine and the board cache, run no tests. Exit 0: ready
#                         (run pytest with HOSTSIDE_ARM=1). Exit 1: the one line on stdout is
#                         why the ARM tests cannot run here (export it as
#                         HOSTSIDE_ARM_SKIP_REASON; tests/boards/emulated/conftest.py skips
#                         with it, or fails if it starts with "ARM rig broken").
#   ci_arm.sh [ARGS]      prepare, then `pytest -m arm tests/boards/emulated ARGS`; where ARM
#                         cannot be emulated, print why and exit 0.
#
# Preparing means: qemu-user-static, binfmt-support and debootstrap installed; binfmt_misc
# mounted and qemu-aarch64 / qemu-arm registered (without that every ARM program fails with
# "Exec format error"); the board userlands built or found in $HOSTSIDE_ARM_CACHE (default
# /var/cache/hostside-arm; cold: about 15 minutes, warm: seconds); boards that a killed run
# left behind stopped.
#
# The ARM tests are skipped only where this machine cannot emulate ARM at all: not Linux, not
# root, or binfmt_misc cannot be mounted (an unprivileged container). Any later failure (apt,
# a build) means the rig is broken, and the tests fail rather than skip: under CI=true on a
# machine that can emulate ARM they must run. Progress goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
python="${PYTHON:-python3}"
binfmt=/proc/sys/fs/binfmt_misc
prepare_only=0
if [ "${1:-}" = "--prepare" ]; then
    prepare_only=1
    shift
fi

cannot_run() {
    if [ "$prepare_only" = 1 ]; then
        echo "$*"
        exit 1
    fi
    echo "ARM tests SKIPPED: $*"
    exit 0
}

broken() {
    cannot_run "ARM rig broken: $*"
}

[ "$(uname -s)" = Linux ] || cannot_run "qemu-user emulation through binfmt_misc needs Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || cannot_run "emulated ARM boards need root (binfmt_misc, mounts, chroot); run tests/boards/emulated/ci_arm.sh as root"

if ! command -v debootstrap >/dev/null || ! command -v update-binfmts >/dev/null \
    || ! [ -x /usr/bin/qemu-aarch64-static ] || ! [ -x /usr/bin/qemu-arm-static ]; then
    echo "== installing qemu-user-static binfmt-support debootstrap" >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support debootstrap; } >&2 \
        || broken "apt-get install qemu-user-static binfmt-support debootstrap failed; see the log above"
fi

if ! [ -e "$binfmt/register" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
        || cannot_run "binfmt_misc cannot be mounted at $binfmt (unprivileged container?), so ARM programs cannot run here"
fi
for entry in qemu-aarch64 qemu-arm; do
    # "already enabled" is a warning, not an error; the check below is what counts.
    update-binfmts --enable "$entry" >/dev/null 2>&1 || true
    grep -qx enabled "$binfmt/$entry" 2>/dev/null \
        || broken "binfmt_misc entry $entry is not enabled after 'update-binfmts --enable $entry'"
done

echo "== emulated ARM boards: building or reusing ${HOSTSIDE_ARM_CACHE:-/var/cache/hostside-arm}" >&2
"$python" "$repo/deploy/emulated/emulated_board.py" build >&2 \
    || broken "building the board userlands failed; see the log above (and build.log in the cache)"
"$python" "$repo/deploy/emulated/emulated_board.py" stop --all >&2 \
    || broken "could not stop boards left over from an earlier run"

if [ "$prepare_only" = 1 ]; then
    exit 0
fi
echo "== pytest -m arm tests/boards/emulated" >&2
cd "$repo"
HOSTSIDE_ARM=1 exec "$python" -m pytest -m arm tests/boards/emulated "$@"
