#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine of this kind: installs what the tests need,
# prepares the emulated ARM boards where this machine can emulate ARM, and runs pytest once.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! [ -x /usr/sbin/sshd ]; then
    echo "== installing openssh-server (the SSH tests start a real sshd on loopback)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server
fi

echo "== installing the project (torch pinned to the local CPU wheel)"
python3 -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[dev]"

echo "== preparing emulated ARM boards"
if reason=$(bash tests/arm/ci_arm.sh --prepare); then
    export HOSTSIDE_ARM=1
else
    export HOSTSIDE_ARM_SKIP_REASON="$reason"
    echo "ARM tests will be skipped: $reason"
fi

echo "== pytest"
exec python3 -m pytest "$@"
