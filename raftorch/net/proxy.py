"""Userspace NodePorts, for hosts where the agent may not program iptables.

One asyncio TCP listener per NodePort; each accepted connection is forwarded to a ready
endpoint picked at random (the others are tried in random order if it refuses), and bytes
are copied both ways until both sides have finished, a half-close (EOF) being passed on as
one. A NodePort whose service has no endpoints keeps its listener but resets every
connection at once, so clients fail promptly instead of hanging, and the port stays ours.

ClusterIPs and UDP are not served in this mode: both need the kernel's help.

`update` and `close` run on the proxy's event loop. The agent is threaded, so
`start_in_thread` gives the proxy a loop of its own, and `update_blocking` / `stop` can be
called from any other thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import struct
import threading
from collections.abc import Sequence

import structlog

from raftorch.net.rules import EndpointView, ServiceView

__all__ = ["NodePortProxy"]

log = structlog.get_logger("raftorch.net.proxy")

_CHUNK = 64 * 1024


class NodePortProxy:
    """Serves the TCP NodePorts of the views given to `update`."""

    def __init__(self, *, connect_timeout: float = 3.0, rng: random.Random | None = None) -> None:
        self._connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._routes: dict[int, ServiceView] = {}
        self._servers: dict[int, asyncio.Server] = {}
        self._bind_ips: tuple[str, ...] = ()
        self._conns: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.bind_errors: dict[int, str] = {}

    @property
    def ports(self) -> list[int]:
        """The NodePorts being listened on."""
        return sorted(self._servers)

    async def update(self, views: Sequence[ServiceView], node_ips: Sequence[str]) -> None:
        """Listens on the TCP NodePorts of `views` (on `node_ips`, or all addresses when
        empty) and on no others. A port that cannot be bound is logged, kept in
        `bind_errors` and retried on the next update; the other ports are served anyway."""
        routes: dict[int, ServiceView] = {}
        for view in sorted(views, key=lambda v: v.sort_key):
            if view.protocol == "TCP" and view.node_port:
                routes.setdefault(view.node_port, view)
        # Connections accepted from now on see the new endpoints; open ones keep theirs.
        self._routes = routes
        ips = tuple(sorted(set(node_ips))) or ("0.0.0.0",)
        if ips != self._bind_ips:
            await self._stop_servers(list(self._servers))
            self._bind_ips = ips
        await self._stop_servers([p for p in self._servers if p not in routes])
        self.bind_errors = {}
        for port in sorted(routes):
            if port in self._servers:
                continue
            try:
                self._servers[port] = await asyncio.start_server(
                    functools.partial(self._handle, port), host=list(ips), port=port, reuse_address=True)
            except OSError as e:
                self.bind_errors[port] = str(e)
                log.warning("nodeport_bind_failed", port=port, service=routes[port].key, error=str(e))

    async def close(self) -> None:
        """Stops listening and drops every forwarded connection."""
        servers = list(self._servers)
        self._routes = {}
        for port in servers:
            self._servers[port].close()
        conns = list(self._conns)
        for task in conns:
            task.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        await self._stop_servers(servers)

    def start_in_thread(self) -> None:
        """Runs the proxy's own event loop in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("NodePortProxy: already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="raftorch-nodeport-proxy", daemon=True)
        self._thread.start()
        ready.wait()

    def update_blocking(self, views: Sequence[ServiceView], node_ips: Sequence[str], timeout: float = 10.0) -> None:
        """`update`, from any thread, once `start_in_thread` was called."""
        if self._loop is None:
            raise RuntimeError("NodePortProxy: not started; call start_in_thread first")
        asyncio.run_coroutine_threadsafe(self.update(views, node_ips), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """`close`, then ends the thread started by `start_in_thread`."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    async def _stop_servers(self, ports: Sequence[int]) -> None:
        servers = [self._servers.pop(p) for p in ports if p in self._servers]
        for server in servers:
            server.close()
        for server in servers:
            # Since Python 3.12 wait_closed also waits for open connections; those go on.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.1)

    async def _handle(self, node_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            view = self._routes.get(node_port)
            try:
                upstream = await self._connect(list(view.endpoints) if view else [])
            except asyncio.CancelledError:
                _reset(writer)
                raise
            if upstream is None:
                _reset(writer)
                return
            await _splice(reader, writer, *upstream)
        finally:
            self._conns.discard(task)

    async def _connect(
        self, endpoints: list[EndpointView],
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        self._rng.shuffle(endpoints)
        for ep in endpoints:
            try:
                # asyncio.timeout, not wait_for: on 3.11 a connection made as wait_for's timeout
                # fired was dropped without being closed.
                async with asyncio.timeout(self._connect_timeout):
                    return await asyncio.open_connection(ep.ip, ep.port)
            except (OSError, TimeoutError) as e:
                log.debug("endpoint_connect_failed", endpoint=f"{ep.ip}:{ep.port}", error=str(e))
        return None


async def _splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                  b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    copies = [asyncio.create_task(_copy(a_reader, b_writer)), asyncio.create_task(_copy(b_reader, a_writer))]
    failed = True
    try:
        done, _ = await asyncio.wait(copies, return_when=asyncio.FIRST_EXCEPTION)
        failed = any(t.exception() is not None for t in done) or len(done) < len(copies)
    finally:
        for task in copies:
            task.cancel()
        await asyncio.gather(*copies, return_exceptions=True)
        for writer in (a_writer, b_writer):
            # A failed side is reset rather than closed, so the other peer sees the failure.
            if failed:
                _reset(writer)
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
