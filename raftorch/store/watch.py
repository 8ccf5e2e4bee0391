"""Watches: deliver every change at or after a revision to subscribers, in order, once.

The hub is fed by the replica right after each log entry is applied (under the state lock),
so registering a watcher and replaying history is atomic with respect to new changes. In
asynchronous mode (the replica's) the fan-out to watchers runs on a thread of its own, so a
burst of changes never holds up Raft's thread; a watcher registered at revision R skips
queued changes up to R, which its replay already covered.

Fan-out costs work only for the watchers a change concerns: watchers are indexed by their exact
key and by their prefix, so each change is matched against the distinct prefixes (or its own
leading substrings, whichever is fewer) instead of against every watcher, and each event is built
once and shared by every watcher that gets it (consumers only read events).
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

    def _handed(self, events: list[kv_pb2.KeyEvent], sizes: list[int] | None = None) -> bool:
        """Under the lock: count events handed over; True when the watcher is too far behind."""
        if sizes is None:
            sizes = [event.ByteSize() for event in events]
        self.backlog += len(events)
        self.backlog_bytes += sum(sizes)
        self._sizes.extend(sizes)
        return self.backlog > WATCHER_BACKLOG_LIMIT or self.backlog_bytes > WATCHER_BACKLOG_BYTES


class WatchHub:
    def __init__(self, asynchronous: bool = False) -> None:
        self._watchers: dict[int, Watcher] = {}
        # Watchers by exact key and by prefix: what a change is matched against.
        self._exact: dict[str, dict[int, Watcher]] = {}
        self._prefixed: dict[str, dict[int, Watcher]] = {}
        self._ids = itertools.count(1)
        self._queue: deque[tuple[list[Change], int] | None] = deque()
        self._cond = threading.Condition()
        self.dispatched = 0  # every change up to this revision has been handed to watchers
        self._thread: threading.Thread | None = None
        self._closing = False
        if asynchronous:
            self._thread = threading.Thread(target=self._dispatch_loop, name="watch-dispatch", daemon=True)
            self._thread.start()

    def add(self, watcher: Watcher, revision: int = 0) -> None:
        """Register; the caller holds the state lock and has replayed history up to `revision`."""
        watcher.id = next(self._ids)
        watcher.after = max(watcher.after, revision)
        self._watchers[watcher.id] = watcher
        table = self._prefixed if watcher.prefix else self._exact
        table.setdefault(watcher.key, {})[watcher.id] = watcher

    def remove(self, watcher: Watcher) -> None:
        if self._watchers.pop(watcher.id, None) is None:
            return
        table = self._prefixed if watcher.prefix else self._exact
        group = table.get(watcher.key)
        if group is not None:
            group.pop(watcher.id, None)
            if not group:
                del table[watcher.key]

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

    def close(self) -> None:
        """End every watch and the dispatch thread (the replica is stopping)."""
        self._closing = True
        self.drop_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
            if item is None:
                self._drop_all_now()
                if self._closing:
                    return
                continue
            changes, revision = item
            self._fan_out(changes, revision)
            with self._cond:
                self.dispatched = max(self.dispatched, revision)
                self._cond.notify_all()

    def _matching(self, key: str) -> list[Watcher]:
        found = list(self._exact.get(key, {}).values())
        prefixed = self._prefixed
        if not prefixed:
            return found
        if len(prefixed) <= len(key) + 1:
            # Copies: add() and remove() run on other threads.
            for prefix, group in list(prefixed.items()):
                if key.startswith(prefix):
                    found.extend(list(group.values()))
        else:
            for end in range(len(key) + 1):
                exact_prefix = prefixed.get(key[:end])
                if exact_prefix:
                    found.extend(list(exact_prefix.values()))
        return found

    def _fan_out(self, changes: list[Change], revision: int) -> None:
        self.dispatched = max(self.dispatched, revision)
        if not changes or not self._watchers:
            return
        # Per watcher, the positions of the changes it gets (in order).
        wanted: dict[int, tuple[Watcher, list[int]]] = {}
        for i, change in enumerate(changes):
            for watcher in self._matching(change.kv.key):
                if change.kv.mod_revision > watcher.after:
                    entry = wanted.get(watcher.id)
                    if entry is None:
                        entry = wanted[watcher.id] = (watcher, [])
                    entry[1].append(i)
        built: dict[tuple[int, bool], tuple[kv_pb2.KeyEvent, int]] = {}
        for watcher, positions in wanted.values():
            events: list[kv_pb2.KeyEvent] = []
            sizes: list[int] = []
            for i in positions:
                made = built.get((i, watcher.prev_kv))
                if made is None:
                    event = to_event(changes[i], watcher.prev_kv)
                    made = built[(i, watcher.prev_kv)] = (event, event.ByteSize())
                events.append(made[0])
                sizes.append(made[1])
            with watcher.lock:
                if watcher.overflowed:
                    continue
                if watcher._handed(events, sizes):
                    watcher.overflowed = True
                    self.remove(watcher)
            try:
                watcher.notify(events, revision)
            except Exception:
                log.warning("watcher_dropped", watcher=watcher.id, exc_info=True)
                self.remove(watcher)

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
        self._exact.clear()
        self._prefixed.clear()
