#!/usr/bin/env bash
# Set up everything (scripts/setup.sh), then run the README's quick start command by command:
# a local cluster (raftctl up), a deployment of the echo server, a NodePort service, a
# port-forward and a request through it, and `raftctl down` at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
