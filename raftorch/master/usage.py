"""Resource usage of nodes and pods, as agents report it: in the leader's memory only.

Like metrics-server, nothing of it goes to the Raft log: usage changes every few seconds on
every node, and a new leader simply waits for the next reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from raftorch.api.v1 import agents_pb2

# A node that stopped reporting for this long is left out of `top`.
STALE_AFTER = 120.0


class UsageStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, tuple[float, agents_pb2.NodeUsage]] = {}

    def record(self, usage: agents_pb2.NodeUsage) -> None:
        with self._lock:
            self._nodes[usage.node] = (self._clock(), usage)

    def latest(self) -> list[agents_pb2.NodeUsage]:
        now = self._clock()
        with self._lock:
            for node, (at, _) in list(self._nodes.items()):
                if now - at > STALE_AFTER:
                    del self._nodes[node]
            return [usage for _, usage in sorted(self._nodes.values(), key=lambda item: item[1].node)]

    def reset(self) -> None:
        with self._lock:
            self._nodes.clear()
