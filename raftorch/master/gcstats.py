"""The master's garbage collector: pauses reported, and settings for a process of long-lived objects.

A master holds every stored version, the decoded object cache and the Raft log: hundreds of
thousands of objects that live for the whole process. A full (generation 2) collection walks all
of them with the GIL held, and any pause near the election timeout (0.15-0.4 s) costs the leader
its term. `tune` moves everything alive after start-up out of the collector's sight
(`gc.freeze`) and makes the young collections rarer; `GcPauses` logs every pause long enough to
matter (`gc_pause`), so a profile of elections can be checked against it.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import structlog

log = structlog.get_logger("raftorch.master")

SLOW_PAUSE = 0.02
# Generation 0 every 10,000 net allocations instead of 700: young collections cost a few ms
# each on a busy leader; cyclic garbage is rare here (reference counting frees the rest).
THRESHOLDS = (10_000, 20, 20)


class GcPauses:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.count += 1
        self.total += pause
        self.longest = max(self.longest, pause)
        if pause >= SLOW_PAUSE:
            log.warning("gc_pause", generation=info.get("generation"), ms=round(pause * 1000, 1),
                        collected=info.get("collected"))


PAUSES = GcPauses()


def tune() -> None:
    """Call once start-up is done. RAFTORCH_GC=default keeps CPython's settings (for comparison)."""
    if PAUSES not in gc.callbacks:
        gc.callbacks.append(PAUSES)
    if os.environ.get("RAFTORCH_GC", "tuned") == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
