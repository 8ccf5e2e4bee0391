"""Watches: deliver every change at or after a revision to subscribers, in order, once.

The hub is fed by the replica right after each log entry is applied (under the state lock),
so registering a watcher and replaying history is atomic with respect to new changes. In
asynchronous mode (the replica's) the fan-out to watchers runs on a thread of its own, so a
burst of changes never holds up Raft's thread; a watcher registered at revision R skips
queued changes up to R, which its replay already covered.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from raftorch.api.v1 import kv_pb2
from raftorch.store.machine import to_event
from raftorch.store.mvcc import Change

log = structlog.get_logger("raftorch.store")

# A watcher that falls this many events, or this many bytes of events, behind is cut off; its
# client resumes from history. The byte bound keeps a slow client of large values from
# holding the master's memory (100,000 events of 1 MiB each would be 100 GB).
WATCHER_BACKLOG_LIMIT = 100_000
WATCHER_BACKLOG_BYTES = 64 * 1024 * 1024

Notify = Callable[[list[kv_pb2.KeyEvent], int], None]


@dataclass(eq=False)
class Watcher:
    key: str
    prefix: bool
    prev_kv: bool
    notify: Notify
    id: int = 0
    # Changes up to this revision were replayed at registration; the hub skips them.
    after: int = 0
    backlog: int = 0
    backlog_bytes: int = 0
    overflowed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Size of each event handed over and not yet consumed, oldest first (consumers take
    # events in the order they were given).
    _sizes: deque[int] = field(default_factory=deque)

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def select(self, changes: list[Change]) -> list[kv_pb2.KeyEvent]:
        after = self.after
        return [to_event(c, self.prev_kv) for c in changes
                if c.kv.mod_revision > after and self.matches(c.kv.key)]

    def consumed(self, count: int) -> None:
        with self.lock:
            self.backlog -= count
            for _ in range(min(count, len(self._sizes))):
                self.backlog_bytes -= self._sizes.popleft()

    def _handed(self, events: list[kv_pb2.KeyEvent]) -> bool:
        """Under the lock: count events handed over; True when the watcher is too far behind."""
        sizes = [event.ByteSize() for event in events]
        self.backlog += len(events)
        self.backlog_bytes += sum(sizes)
        self._sizes.extend(sizes)
        return self.backlog > WATCHER_BACKLOG_LIMIT or self.backlog_bytes > WATCHER_BACKLOG_BYTES


class WatchHub:
    def __init__(self, asynchronous: bool = False) -> None:
        self._watchers: dict[int, Watcher] = {}
        self._ids = itertools.count(1)
        self._queue: deque[tuple[list[Change], int] | None] = deque()
        self._cond = threading.Condition()
        self.dispatched = 0  # every change up to this revision has been handed to watchers
        self._thread: threading.Thread | None = None
        if asynchronous:
            self._thread = threading.Thread(target=self._dispatch_loop, name="watch-dispatch", daemon=True)
            self._thread.start()

    def add(self, watcher: Watcher, revision: int = 0) -> None:
        """Register; the caller holds the state lock and has replayed history up to `revision`."""
        watcher.id = next(self._ids)
        watcher.after = max(watcher.after, revision)
        self._watchers[watcher.id] = watcher

    def remove(self, watcher: Watcher) -> None:
        self._watchers.pop(watcher.id, None)

    def __len__(self) -> int:
        return len(self._watchers)

    def publish(self, changes: list[Change], revision: int) -> None:
        if self._thread is None:
            self._fan_out(changes, revision)
            return
        with self._cond:
            self._queue.append((changes, revision))
            self._cond.notify_all()

    def wait_dispatched(self, revision: int, timeout: float) -> bool:
        """Wait until every change up to `revision` has been handed to watchers."""
        with self._cond:
            return self._cond.wait_for(lambda: self.dispatched >= revision, timeout)

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
            if item is None:
                self._drop_all_now()
                continue
            changes, revision = item
            self._fan_out(changes, revision)
            with self._cond:
                self.dispatched = max(self.dispatched, revision)
                self._cond.notify_all()

    def _fan_out(self, changes: list[Change], revision: int) -> None:
        self.dispatched = max(self.dispatched, revision)
        if not changes:
            return
        for watcher in list(self._watchers.values()):
            events = watcher.select(changes)
            if not events:
                continue
            with watcher.lock:
                if watcher.overflowed:
                    continue
                if watcher._handed(events):
                    watcher.overflowed = True
                    self._watchers.pop(watcher.id, None)
            try:
                watcher.notify(events, revision)
            except Exception:
                log.warning("watcher_dropped", watcher=watcher.id, exc_info=True)
                self._watchers.pop(watcher.id, None)

    def drop_all(self) -> None:
        """End every watch (its client resumes from the last revision it saw)."""
        if self._thread is None:
            self._drop_all_now()
            return
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()

    def _drop_all_now(self) -> None:
        for watcher in list(self._watchers.values()):
            with watcher.lock:
                watcher.overflowed = True
            watcher.notify([], 0)
        self._watchers.clear()
