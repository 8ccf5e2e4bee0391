#!/usr/bin/env bash
# Set everything up and run the whole test suite, the linters and the type checker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/gen_protos.py --check
.venv/bin/ruff check raftorch tests bench scripts
.venv/bin/mypy
.venv/bin/python -m pytest -p no:cacheprovider "$@"
