"""A watch that survives master failures by resuming from its last revision elsewhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from raftorch.api.v1 import kv_pb2
from raftorch.client.types import WatchEvent
from raftorch.errors import Compacted, Unavailable, from_grpc_code

if TYPE_CHECKING:
    from raftorch.client.connection import Connection

_RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


class Watch:
    """Iterate to get events; `close()` (from any thread) ends the iteration."""

    def __init__(self, conn: Connection, key: str, prefix: bool, start_revision: int, prev_kv: bool) -> None:
        self._conn = conn
        self._key = key
        self._prefix = prefix
        self._prev_kv = prev_kv
        # The next revision we want; 0 until the first stream tells us where "now" is.
        self.next_revision = start_revision
        self._closed = threading.Event()
        self._call: grpc.Future | None = None
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[WatchEvent]:
        failing_since: float | None = None
        while not self._closed.is_set():
            address = self._conn._candidate()
            req = kv_pb2.WatchRequest(key=self._key, prefix=self._prefix, start_revision=self.next_revision,
                                      prev_kv=self._prev_kv, progress_notify=True)
            try:
                call = self._conn.stubs(address).kv.Watch(req)
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                for resp in call:
                    failing_since = None
                    if resp.compact_revision:
                        raise Compacted(f"revision {self.next_revision} has been compacted "
                                        f"(oldest kept {resp.compact_revision})")
                    for ev in resp.events:
                        event = WatchEvent.from_pb(ev)
                        if event.revision < self.next_revision:
                            continue
                        yield event
                    if resp.events:
                        self.next_revision = max(self.next_revision, resp.events[-1].kv.mod_revision + 1)
                    else:
                        self.next_revision = max(self.next_revision, resp.header.revision + 1)
            except grpc.RpcError as exc:
                code = exc.code()
                if self._closed.is_set():
                    return
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    raise from_grpc_code(code, exc.details() or "compacted") from None
                if code not in _RESUMABLE:
                    raise from_grpc_code(code, f"{address}: {exc.details()}") from None
                self._conn._failed(address)
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self._conn.retry_for:
                    raise Unavailable(f"watch: no master answered for {self._conn.retry_for:.0f}s") from None
                time.sleep(0.05)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
