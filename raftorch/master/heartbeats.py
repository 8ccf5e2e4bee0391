"""Node heartbeats, kept in the leader's memory: never one log entry per heartbeat.

Only transitions (Ready -> NotReady, eviction) are committed, by the node lifecycle
controller. A new leader knows no heartbeat times, so it gives every node a full grace
period from the moment it took over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


class HeartbeatTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._since = clock()
        self.received = 0

    def record(self, nodes: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for node in nodes:
                self._seen[node] = now
                self.received += 1

    def reset(self) -> None:
        """Forget everything: called when this master becomes leader."""
        with self._lock:
            self._seen.clear()
            self._since = self._clock()

    def last_seen(self, node: str) -> float:
        """When the node was last heard from; a node never heard from this term counts from the
        start of the term (its grace period)."""
        with self._lock:
            return self._seen.get(node, self._since)

    def snapshot(self) -> tuple[dict[str, float], float]:
        with self._lock:
            return dict(self._seen), self._since
