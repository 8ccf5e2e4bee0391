"""The leader's decoded view of every cluster object, kept current from the store's watch hub.

Registration and the initial load happen under the state lock, so no change is missed or
seen twice. The hub's callback runs on Raft's apply thread and only queues raw events;
decoding happens on the controllers' thread. An object that cannot be decoded is left out
of the view (logged once) and listed in `undecodable`, for the manager to record an event.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from raftorch.api.v1 import kv_pb2
from raftorch.master.registry import decode_checked, report_undecodable
from raftorch.objects import KINDS, Kind, parse_store_key
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


class ObjectCache:
    def __init__(self, replica: RaftReplica) -> None:
        self._replica = replica
        self._pending: deque[list[kv_pb2.KeyEvent]] = deque()
        self._wake = threading.Event()
        self.objects: dict[str, dict[str, Message]] = {k.name: {} for k in KINDS}
        self.undecodable: dict[str, BadObject] = {}
        self.revision = 0
        self.overflowed = False
        self._watcher = Watcher(REGISTRY_PREFIX, True, False, self._notify)
        # Only references are taken under the state lock: decoding 10k objects there would stall
        # Raft's thread long enough for an election (stored versions are never changed in place).
        with replica.reading() as machine:
            current = list(machine.index.range(REGISTRY_PREFIX, True, 0))
            self.revision = machine.revision
            replica.hub.add(self._watcher, machine.revision)
        try:
            for kv in current:
                self._store(kv.key, kv)
        except BaseException:
            self.close()
            raise

    def _notify(self, events: list[kv_pb2.KeyEvent], revision: int) -> None:
        if not events:
            self.overflowed = True
        self._pending.append(events)
        self._wake.set()

    def wait(self, timeout: float) -> bool:
        woke = self._wake.wait(timeout)
        self._wake.clear()
        return woke

    def drain(self) -> list[tuple[str, str, str]]:
        """Apply queued changes; returns (kind, namespace, name) of what changed."""
        changed: list[tuple[str, str, str]] = []
        while self._pending:
            events = self._pending.popleft()
            self._watcher.consumed(len(events))
            for ev in events:
                touched = self._store(ev.kv.key, ev.kv if ev.type == kv_pb2.KeyEvent.PUT else None)
                if touched is not None:
                    changed.append(touched)
                self.revision = max(self.revision, ev.kv.mod_revision)
        return changed

    def _store(self, key: str, kv: Any) -> tuple[str, str, str] | None:
        try:
            kind, namespace, name = parse_store_key(key)
        except Exception:
            return None
        table = self.objects[kind.name]
        self.undecodable.pop(key, None)
        if kv is None:
            table.pop(key, None)
            return kind.name, namespace, name
        msg, problem = decode_checked(kind, kv)
        if msg is None:
            revision: int = kv.mod_revision
            report_undecodable(key, revision, problem)
            table.pop(key, None)
            self.undecodable[key] = BadObject(kind, namespace, name, revision, problem)
        else:
            table[key] = msg
        return kind.name, namespace, name

    def items(self, kind: Kind | str) -> Iterator[Message]:
        name = kind if isinstance(kind, str) else kind.name
        return iter(list(self.objects[name].values()))

    def close(self) -> None:
        with self._replica.reading():
            self._replica.hub.remove(self._watcher)
