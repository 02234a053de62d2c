#!/bin/sh
# Install the device agent as a system service on Raspberry Pi OS or Debian.
#
# Run on the board, as root, from a copy of this repository (or of its device_agent/ and
# deploy/ folders):   sudo sh deploy/install-agent.sh
#
# What it does (each step is safe to repeat):
#   1. creates the unprivileged system user `device-agent` (groups video and i2c if present);
#   2. copies device_agent/ to /opt/device-agent/lib;
#   3. makes /opt/device-agent/venv with numpy and onnxruntime: from PyPI on aarch64/x86_64,
#      from Debian's python3-onnxruntime on 32-bit armhf (trixie or later);
#   4. runs one tiny inference (`device-agent selftest`) to catch a broken onnxruntime;
#   5. writes an empty /etc/device-agent/agent.json (power sources; deploy/POWER.md) if none;
#   6. installs and starts deploy/device-agent.service.
# The host then measures through it: `hostside measure --board NAME MODEL.onnx`, as an SSH
# user in group device-agent (it reads the daemon's token; deploy/SECURITY.md):
#   sudo adduser pi device-agent
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/device-agent
arch=$(uname -m)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-agent.sh: run as root (sudo sh $0)" >&2
    exit 2
fi
if [ ! -f "$here/device_agent/cli.py" ]; then
    echo "install-agent.sh: $here/device_agent not found; run from a copy of the repository" >&2
    exit 2
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
    echo "install-agent.sh: Python 3.9 or newer is needed (Raspberry Pi OS bullseye or later)" >&2
    exit 2
}

if ! id device-agent >/dev/null 2>&1; then
    adduser --system --group --home /var/lib/device-agent --no-create-home device-agent
fi
for group in video i2c; do
    if getent group "$group" >/dev/null; then
        adduser device-agent "$group" >/dev/null
    fi
done

mkdir -p "$prefix/lib"
rm -rf "$prefix/lib/device_agent"
cp -r "$here/device_agent" "$prefix/lib/device_agent"
find "$prefix/lib/device_agent" -name '__pycache__' -prune -exec rm -rf {} +

case "$arch" in
    armv7l|armv6l)
        apt-get update
        apt-get install -y python3-venv python3-numpy python3-onnxruntime || {
            echo "install-agent.sh: no python3-onnxruntime package for this release; see deploy/ARM_BOARDS.md" >&2
            exit 1
        }
        python3 -m venv --system-site-packages "$prefix/venv"
        ;;
    *)
        apt-get update
        apt-get install -y python3-venv
        python3 -m venv "$prefix/venv"
        "$prefix/venv/bin/pip" install --upgrade onnxruntime numpy
        ;;
esac

DEVICE_AGENT_HOME=/tmp PYTHONPATH="$prefix/lib" "$prefix/venv/bin/python" -m device_agent selftest || {
    echo "install-agent.sh: onnxruntime cannot run a model on this board; see deploy/ARM_BOARDS.md" >&2
    exit 1
}

mkdir -p /etc/device-agent
if [ ! -f /etc/device-agent/agent.json ]; then
    echo '{"power_sources": {}}' > /etc/device-agent/agent.json
    chmod 0644 /etc/device-agent/agent.json
fi

install -m 0644 "$here/deploy/device-agent.service" /etc/systemd/system/device-agent.service
systemctl daemon-reload
systemctl enable --now device-agent
systemctl --no-pager --lines=3 status device-agent
echo "device-agent listens on 127.0.0.1:47800; add each SSH user that measures to group device-agent"
echo "(sudo adduser USER device-agent), then on the host: hostside boards check NAME"
