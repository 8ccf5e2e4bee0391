"""Watches: deliver every change at or after a revision to subscribers, in order, once.

The hub is fed by the replica right after each log entry is applied (under the state lock),
so registering a watcher and replaying history is atomic with respect to new changes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from raftorch.api.v1 import kv_pb2
from raftorch.store.machine import to_event
from raftorch.store.mvcc import Change

# A watcher that falls this many events behind is cut off; its client resumes from history.
WATCHER_BACKLOG_LIMIT = 100_000

Notify = Callable[[list[kv_pb2.KeyEvent], int], None]


@dataclass(eq=False)
class Watcher:
    key: str
    prefix: bool
    prev_kv: bool
    notify: Notify
    id: int = 0
    backlog: int = 0
    overflowed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def select(self, changes: list[Change]) -> list[kv_pb2.KeyEvent]:
        return [to_event(c, self.prev_kv) for c in changes if self.matches(c.kv.key)]

    def consumed(self, count: int) -> None:
        with self.lock:
            self.backlog -= count


class WatchHub:
    def __init__(self) -> None:
        self._watchers: dict[int, Watcher] = {}
        self._ids = itertools.count(1)

    def add(self, watcher: Watcher) -> None:
        """Register; the caller holds the state lock and has replayed history already."""
        watcher.id = next(self._ids)
        self._watchers[watcher.id] = watcher

    def remove(self, watcher: Watcher) -> None:
        self._watchers.pop(watcher.id, None)

    def __len__(self) -> int:
        return len(self._watchers)

    def publish(self, changes: list[Change], revision: int) -> None:
        if not changes:
            return
        for watcher in list(self._watchers.values()):
            events = watcher.select(changes)
            if not events:
                continue
            with watcher.lock:
                if watcher.overflowed:
                    continue
                watcher.backlog += len(events)
                if watcher.backlog > WATCHER_BACKLOG_LIMIT:
                    watcher.overflowed = True
                    self._watchers.pop(watcher.id, None)
            watcher.notify(events, revision)

    def drop_all(self) -> None:
        """End every watch (its client resumes from the last revision it saw)."""
        for watcher in list(self._watchers.values()):
            with watcher.lock:
                watcher.overflowed = True
            watcher.notify([], 0)
        self._watchers.clear()
