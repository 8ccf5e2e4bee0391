"""A watch of keys that survives master failures by resuming from its last revision elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from raftorch.api.v1 import kv_pb2
from raftorch.client.stream import ResumableStream
from raftorch.client.types import WatchEvent
from raftorch.errors import Compacted

if TYPE_CHECKING:
    from raftorch.client.connection import Connection, Stubs


class Watch(ResumableStream[WatchEvent]):
    """Iterate to get events; `close()` (from any thread) ends the iteration."""

    def __init__(self, conn: Connection, key: str, prefix: bool, start_revision: int, prev_kv: bool) -> None:
        super().__init__(conn)
        self._key = key
        self._prefix = prefix
        self._prev_kv = prev_kv
        # The next revision we want; 0 until the first stream tells us where "now" is.
        self.next_revision = start_revision

    def _open(self, stubs: Stubs) -> grpc.Future:
        return stubs.kv.Watch(kv_pb2.WatchRequest(key=self._key, prefix=self._prefix,
                                                  start_revision=self.next_revision, prev_kv=self._prev_kv,
                                                  progress_notify=True))

    def _receive(self, resp: kv_pb2.WatchResponse) -> Iterator[WatchEvent]:
        if resp.compact_revision:
            raise Compacted(f"revision {self.next_revision} has been compacted (oldest kept {resp.compact_revision})")
        for ev in resp.events:
            event = WatchEvent.from_pb(ev)
            if event.revision >= self.next_revision:
                yield event
        if resp.events:
            self.next_revision = max(self.next_revision, resp.events[-1].kv.mod_revision + 1)
        else:
            self.next_revision = max(self.next_revision, resp.header.revision + 1)
