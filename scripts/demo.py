"""The demo behind scripts/demo.sh: the README's quick start, command by command.

It runs in a home directory of its own, so that it starts from nothing every time (an earlier
demo's stopped cluster would be resumed, with its deployment already there) and leaves the
user's own ~/.config/raftorch and local cluster alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from raftorch.local.walkthrough import quick_start, run, user_env


def main() -> int:
    bindir = Path(sys.executable).parent
    home = Path(tempfile.mkdtemp(prefix="raftorch-demo-"))
    env = user_env(home, bindir)
    print(f"(the demo runs with HOME={home}; your own raftctl config and clusters are not touched)", flush=True)
    failed = 0
    try:
        for result in run(quick_start(), env):
            print(f"$ {result.step.command}{' &' if result.step.background else ''}", flush=True)
            print(result.output, end="" if result.output.endswith("\n") else "\n", flush=True)
            if result.code != 0:
                failed += 1
                print(f"(exit code {result.code})", flush=True)
    finally:
        # The walk-through ends with `raftctl down`; this also removes what it kept on disk.
        subprocess.run([str(bindir / "raftctl"), "down", "--purge"], env=env, capture_output=True, timeout=120,
                       check=False)
        shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
