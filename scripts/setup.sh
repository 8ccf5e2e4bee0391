#!/usr/bin/env bash
# Install what raftorch needs on a fresh Debian machine (run as root): system packages (Docker
# engine, busybox for offline images, iproute2, iptables, openssl: the agent signs with it), a
# virtualenv in .venv with raftorch and its development tools, a running dockerd, and the local
# test images. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    need=()
    for pkg in python3-venv iproute2 iptables docker.io busybox-static vagrant strace chromium chromium-driver openssl; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[dev]'

# The Node.js client example (and its test) needs its two npm packages.
if command -v npm >/dev/null; then
    npm ci --prefix clients/node --no-audit --no-fund --silent >/dev/null
fi

if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    bash scripts/start_docker.sh
    if [ -f scripts/build_images.sh ]; then
        bash scripts/build_images.sh
    fi
    # Debian's redis and nginx under the upstream names examples/ uses (no registry here).
    bash scripts/build_app_images.sh
fi
echo "setup: done (.venv ready)"
