#!/usr/bin/env bash
# Set up (as scripts/setup.sh), start a local cluster of three masters, and walk through the
# replicated store: writes through any master, a watch, cluster status, a leader failover.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
