"""A server stream that survives master failures: reopened on another master from where it
left off. Watches of keys and of objects are both this, with their own resume points."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from raftorch.errors import Unavailable, from_grpc_code

if TYPE_CHECKING:
    from raftorch.client.connection import Connection, Stubs

T = TypeVar("T")

_RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


class ResumableStream(Generic[T]):
    """Iterate to get items; `close()` (from any thread) ends the iteration."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._closed = threading.Event()
        self._call: grpc.Future | None = None
        self._lock = threading.Lock()

    def _open(self, stubs: Stubs) -> grpc.Future:
        """Open the stream from the current resume point."""
        raise NotImplementedError

    def _receive(self, response: Any) -> Iterator[T]:
        """Items of one response; moves the resume point past them."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[T]:
        failing_since: float | None = None
        while not self._closed.is_set():
            address = self._conn._candidate()
            try:
                call = self._open(self._conn.stubs(address))
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                for response in call:
                    failing_since = None
                    yield from self._receive(response)
            except grpc.RpcError as exc:
                code = exc.code()
                if self._closed.is_set():
                    return
                if code not in _RESUMABLE:
                    raise from_grpc_code(code, f"{address}: {exc.details() or code.name}") from None
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
