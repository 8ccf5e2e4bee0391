"""The leader's decoded view of every cluster object, kept current from the store's watch hub.

Registration and the initial load happen under the state lock, so no change is missed or
seen twice. The hub's callback runs on Raft's apply thread and only queues raw events;
decoding happens on the controllers' thread. An object that cannot be decoded is left out
of the view (logged once) and listed in `undecodable`, for the manager to record an event.

The cache keeps indexes (`index`: children by owner, pods by node, objects by namespace,
pending pods, node usage) current with every change, and hands each change, with the object
before and after it, to its listeners when it is drained: that is what fills the controllers'
work queues.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from raftorch.api.v1 import kv_pb2
from raftorch.master.indexes import CacheIndex
from raftorch.master.stored import decode_checked, report_undecodable
from raftorch.objects import KINDS, Kind, kind_of, parse_store_key, store_key
from raftorch.store.replica import RaftReplica
from raftorch.store.watch import Watcher

REGISTRY_PREFIX = "/registry/"


@dataclass(frozen=True, slots=True)
class BadObject:
    """A stored object the cache could not decode."""

    kind: Kind
    namespace: str
    name: str
    revision: int
    problem: str


@dataclass(frozen=True, slots=True)
class Change:
    """One object changed: `old` is None when it was created, `new` when it was deleted."""

    kind: str
    namespace: str
    name: str
    old: Message | None
    new: Message | None


Listener = Callable[[Change], None]


class ObjectCache:
    def __init__(self, replica: RaftReplica, prefixes: tuple[str, ...] = (REGISTRY_PREFIX,)) -> None:
        """`prefixes`: the store keys to keep (every object by default). A narrower cache (the
        master's, when the controllers run in their own process) is not `complete`."""
        self._replica = replica
        self._pending: deque[tuple[Watcher, list[kv_pb2.KeyEvent]]] = deque()
        self._wake = threading.Event()
        self.objects: dict[str, dict[str, Message]] = {k.name: {} for k in KINDS}
        self.undecodable: dict[str, BadObject] = {}
        self.revision = 0
        self.overflowed = False
        self.complete = prefixes == (REGISTRY_PREFIX,)
        self.index = CacheIndex()
        self._listeners: list[Listener] = []
        self._watchers = [Watcher(prefix, True, False, functools.partial(self._notify, i))
                          for i, prefix in enumerate(prefixes)]
        # Only references are taken under the state lock: decoding 10k objects there would stall
        # Raft's thread long enough for an election (stored versions are never changed in place).
        with replica.reading() as machine:
            current = [kv for prefix in prefixes for kv in machine.index.range(prefix, True, 0)]
            self.revision = machine.revision
            for watcher in self._watchers:
                replica.hub.add(watcher, machine.revision)
        try:
            for kv in current:
                self._store(kv.key, kv)
        except BaseException:
            self.close()
            raise

    def _notify(self, which: int, events: list[kv_pb2.KeyEvent], revision: int) -> None:
        if not events:
            self.overflowed = True
        self._pending.append((self._watchers[which], events))
        self._wake.set()

    def wait(self, timeout: float) -> bool:
        woke = self._wake.wait(timeout)
        self._wake.clear()
        return woke

    def drain(self) -> list[tuple[str, str, str]]:
        """Apply queued changes; returns (kind, namespace, name) of what changed."""
        changed: list[tuple[str, str, str]] = []
        while self._pending:
            watcher, events = self._pending.popleft()
            watcher.consumed(len(events))
            for ev in events:
                touched = self._store(ev.kv.key, ev.kv if ev.type == kv_pb2.KeyEvent.PUT else None)
                if touched is not None:
                    changed.append(touched)
                self.revision = max(self.revision, ev.kv.mod_revision)
        return changed

    def listen(self, listener: Listener) -> None:
        """Call `listener` with every change drained from now on."""
        self._listeners.append(listener)

    def _store(self, key: str, kv: Any) -> tuple[str, str, str] | None:
        try:
            kind, namespace, name = parse_store_key(key)
        except Exception:
            return None
        self.undecodable.pop(key, None)
        new: Message | None = None
        if kv is not None:
            new, problem = decode_checked(kind, kv)
            if new is None:
                revision: int = kv.mod_revision
                report_undecodable(key, revision, problem)
                self.undecodable[key] = BadObject(kind, namespace, name, revision, problem)
        return self._put(kind, namespace, name, key, new)

    def _put(self, kind: Kind, namespace: str, name: str, key: str, new: Message | None) -> tuple[str, str, str]:
        """Record `new` (None: gone) at `key`: the table, the indexes, the listeners."""
        table = self.objects[kind.name]
        old = table.pop(key, None)
        if new is not None:
            table[key] = new
        self.index.update(kind.name, key, old, new)
        if self._listeners and (old is not None or new is not None):
            change = Change(kind.name, namespace, name, old, new)
            for listener in self._listeners:
                listener(change)
        return kind.name, namespace, name

    def assume(self, kind: Kind, msg: Message) -> None:
        """Put `msg` in the view before the store confirms it (the scheduler's bindings); the
        watch's version replaces it when it comes. Only on the thread that drains."""
        meta = msg.metadata  # type: ignore[attr-defined]
        self._put(kind, meta.namespace, meta.name, store_key(kind, meta.namespace, meta.name), msg)

    def get(self, kind: Kind | str, namespace: str, name: str) -> Message | None:
        k = kind_of(kind) if isinstance(kind, str) else kind
        try:
            return self.objects[k.name].get(store_key(k, namespace, name))
        except Exception:
            return None

    def at(self, kind: str, key: str) -> Message | None:
        """The object stored at `key`, as the index names it."""
        return self.objects[kind].get(key)

    def items(self, kind: Kind | str) -> Iterator[Message]:
        name = kind if isinstance(kind, str) else kind.name
        return iter(list(self.objects[name].values()))

    def close(self) -> None:
        with self._replica.reading():
            for watcher in self._watchers:
                self._replica.hub.remove(watcher)
