"""The one place that builds gRPC channels and servers.

Transport security (TLS, client credentials) arrives here and nowhere else: callers ask for a
channel or a server by address and get the project's options.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import grpc.aio

from raftorch.errors import ResourceExhausted

# Values up to 1 MiB plus headroom: larger requests fail with our own INVALID_ARGUMENT.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Fail fast when a master is down, so the client moves on to the next one.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.enable_retries", 0),
]

_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


def channel(address: str) -> grpc.Channel:
    """A blocking channel to a master or agent."""
    return grpc.insecure_channel(address, options=_OPTIONS)


def aio_channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel, for servers that call other servers."""
    return grpc.aio.insecure_channel(address, options=_OPTIONS)


def aio_server() -> grpc.aio.Server:
    return grpc.aio.server(options=_SERVER_OPTIONS)


def bind(server: grpc.aio.Server, address: str) -> int:
    """Listen on `address`; returns the port (useful with port 0)."""
    port: int = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def server(max_workers: int = 16, maximum_concurrent_rpcs: int | None = None) -> grpc.Server:
    """A thread-pool server, for processes built around threads (the agent). With
    `maximum_concurrent_rpcs`, calls beyond it get RESOURCE_EXHAUSTED at once instead of
    queueing for a worker that may never come free."""
    from concurrent.futures import ThreadPoolExecutor

    return grpc.server(ThreadPoolExecutor(max_workers=max_workers), options=_SERVER_OPTIONS,
                       maximum_concurrent_rpcs=maximum_concurrent_rpcs)


class StreamSlots:
    """At most `limit` streams of one kind open at once; one more is refused with
    RESOURCE_EXHAUSTED, so one kind of stream cannot take what the others need."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    @contextmanager
    def take(self) -> Iterator[None]:
        with self._lock:
            if self.open >= self.limit:
                raise ResourceExhausted(f"{self.limit} {self.what} streams are open here already, the most "
                                        "allowed; close one or retry later")
            self.open += 1
        try:
            yield
        finally:
            with self._lock:
                self.open -= 1


def bind_sync(srv: grpc.Server, address: str) -> int:
    port: int = srv.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port
