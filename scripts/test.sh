#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine of this kind (or a developer's): installs the
# Debian packages the tests need, each only when it is missing; installs the project with its
# [dev] extra into the Python that runs this script (`python3` on PATH; .ci/run puts a fresh
# virtual environment there); prepares the emulated ARM boards where this machine can emulate
# ARM; runs pytest once, on one worker per core (HOSTSIDE_TEST_WORKERS overrides; 0 runs in this
# process), each test file on one worker: a file's tests share its sshd and boards.
# Extra arguments go to pytest. A pytest that collects no test fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
# want PACKAGE CHECK...: PACKAGE is installed unless CHECK succeeds.
want() {
    local package=$1
    shift
    "$@" >/dev/null 2>&1 || missing+=("$package")
}
want openssh-server test -x /usr/sbin/sshd                            # tests/boards (emulated ARM boards too): real sshd on loopback
want chromium command -v chromium                                     # tests/product: report.html in a real browser
want dataset-fashion-mnist test -d /usr/share/datasets/fashion-mnist  # the Fashion-MNIST tests
want qemu-user-static test -x /usr/bin/qemu-aarch64-static            # tests/boards/emulated: emulated ARM boards
want binfmt-support command -v update-binfmts
want debootstrap command -v debootstrap

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/test.sh: missing Debian packages: ${missing[*]}; install them with" \
             "'sudo apt-get install ${missing[*]}' or run this script as root" >&2
        exit 1
    fi
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

echo "== installing the project into $(python3 -c 'import sys; print(sys.prefix)') (torch pinned to the CPU wheel)"
python3 -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[dev]"

echo "== preparing emulated ARM boards"
if reason=$(bash tests/boards/emulated/ci_arm.sh --prepare); then
    export HOSTSIDE_ARM=1
else
    export HOSTSIDE_ARM_SKIP_REASON="$reason"
    echo "ARM tests will be skipped: $reason"
fi

echo "== pytest"
status=0
workers="${HOSTSIDE_TEST_WORKERS:-$(nproc)}"
python3 -m pytest -n "$workers" --dist loadfile "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "scripts/test.sh: pytest collected no tests (arguments: ${*:-none}); a test run that tests nothing fails" >&2
    exit 1
fi
exit "$status"
