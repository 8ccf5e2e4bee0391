"""What the benchmarks in bench/ share: process CPU and memory, percentiles, waiting, child pipes."""

from __future__ import annotations

import contextlib
import math
import multiprocessing.connection
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from raftorch.local.masters import LocalMasters

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a master's controller manager)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def percentile(sorted_samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of sorted samples (nan when there are none)."""
    if not sorted_samples:
        return float("nan")
    rank = max(1, math.ceil(len(sorted_samples) * pct / 100))
    return sorted_samples[rank - 1]


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def recv(conn: multiprocessing.connection.Connection, timeout: float, what: str) -> Any:
    """A child process's next message; its reported failure or silence becomes an exception."""
    if not conn.poll(timeout):
        raise TimeoutError(f"child process: no {what} within {timeout:.0f}s")
    try:
        msg = conn.recv()
    except EOFError:
        raise RuntimeError(f"a child process exited before sending its {what}") from None
    if isinstance(msg, tuple) and msg and msg[0] == "error":
        raise RuntimeError(f"child process failed:\n{msg[1]}")
    return msg


def leaderships(masters: LocalMasters) -> dict[str, int]:
    """How many times each master has become leader, from the role_changed lines of its log."""
    out: dict[str, int] = {}
    for name, m in masters.masters.items():
        with contextlib.suppress(OSError):
            out[name] = sum(1 for line in m.log_path.read_text(errors="replace").splitlines()
                            if '"role_changed"' in line and '"leader": true' in line)
    return out
