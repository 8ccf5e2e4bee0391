"""The demo behind scripts/demo.sh: three masters on 127.0.0.1 and raftctl against them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raftorch.local.masters import LocalMasters

RAFTCTL = str(Path(sys.executable).parent / "raftctl")


def raftctl(*args: str, env: dict[str, str]) -> None:
    print(f"$ raftctl {' '.join(args)}", flush=True)
    subprocess.run([RAFTCTL, *args], env=env, check=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="raftorch-demo-") as tmp:
        cluster = LocalMasters(Path(tmp))
        cluster.start()
        try:
            leader = cluster.wait_ready()
            env = {**os.environ, "RAFTORCH_ENDPOINTS": ",".join(cluster.endpoints)}
            print(f"three masters up; leader is {leader}\n", flush=True)
            raftctl("cluster", "status", env=env)
            raftctl("kv", "put", "demo/greeting", "hello", env=env)
            raftctl("kv", "put", "demo/answer", "42", env=env)
            raftctl("kv", "get", "demo/", "--prefix", env=env)
            print(f"\nkilling the leader ({leader}) with SIGKILL", flush=True)
            started = time.monotonic()
            cluster.kill(leader)
            new_leader = cluster.wait_ready()
            print(f"new leader {new_leader} after {time.monotonic() - started:.2f}s\n", flush=True)
            raftctl("kv", "put", "demo/after-failover", "still-here", env=env)
            raftctl("kv", "get", "demo/", "--prefix", "-o", "table", env=env)
            raftctl("cluster", "status", env=env)
        finally:
            cluster.kill()


if __name__ == "__main__":
    main()
