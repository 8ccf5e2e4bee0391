"""The demo behind scripts/demo.sh: the README's quick start, command by command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from raftorch.local.walkthrough import quick_start, run, user_env


def main() -> int:
    bindir = Path(sys.executable).parent
    env = user_env(Path(os.environ.get("HOME", "/root")), bindir)
    failed = 0
    for result in run(quick_start(), env):
        print(f"$ {result.step.command}{' &' if result.step.background else ''}", flush=True)
        print(result.output, end="" if result.output.endswith("\n") else "\n", flush=True)
        if result.code != 0:
            failed += 1
            print(f"(exit code {result.code})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
