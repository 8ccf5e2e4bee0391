"""A keyed work queue for reconcilers: each key is handed out once, however often it was added.

Controllers add the key (namespace/name) of every object a change touches and reconcile one key
at a time. The queue keeps three promises:

- **dedup**: a key added many times before it is taken is taken once;
- **no lost updates**: a key added while it is being processed is not handed out concurrently,
  but is queued again when `done` is called, so the change that arrived mid-reconcile is seen;
- **per-key back-off**: `retry(key)` puts the key back after a delay that doubles with each
  consecutive failure of that key (up to a cap); `forget(key)` clears it after a success.

Time is an input (`clock`), so the queue is tested without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_DELAY = 0.05
MAX_DELAY = 10.0


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic, base_delay: float = BASE_DELAY,
                 max_delay: float = MAX_DELAY) -> None:
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._lock = threading.Lock()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # added and not yet taken (queued, or waiting for `done`)
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []
        self._seq = itertools.count()

    def add(self, key: K) -> None:
        with self._lock:
            self._add(key)

    def add_all(self, keys: list[K]) -> None:
        with self._lock:
            for key in keys:
                self._add(key)

    def _add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._lock:
            heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), key))

    def get(self) -> K | None:
        """The next key ready to process, or None; the caller must call `done(key)` after."""
        with self._lock:
            self._promote()
            if not self._queue:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: K) -> None:
        with self._lock:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)

    def retry(self, key: K) -> float:
        """Queue `key` again after its back-off; returns the delay."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay: float = min(self._base * float(2 ** min(failures, 30)), self._max)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def next_delay(self) -> float | None:
        """Seconds until the earliest delayed key is due (0 if a key is ready now), or None."""
        with self._lock:
            if self._queue:
                return 0.0
            if not self._delayed:
                return None
            return max(0.0, self._delayed[0][0] - self._clock())

    def __len__(self) -> int:
        with self._lock:
            self._promote()
            return len(self._queue)

    def _promote(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add(key)

    def drain(self) -> list[K]:
        """Take every ready key at once (each must still be passed to `done`)."""
        out: list[K] = []
        while (key := self.get()) is not None:
            out.append(key)
        return out
