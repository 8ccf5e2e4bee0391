"""NodePortProxy on loopback: forwarding, spreading, half-close, no endpoints, updates."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing

import pytest

from raftorch.net import EndpointView, NodePortProxy, ServiceView

LOOPBACK = ["127.0.0.1"]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _view(node_port: int, *ports: int, name: str = "web", protocol: str = "TCP") -> ServiceView:
    return ServiceView("shop", name, "http", protocol, 80, "10.96.0.10", node_port,
                       tuple(EndpointView("127.0.0.1", p) for p in ports))


def _echo(name: str) -> Handler:
    """Reads to EOF, answers `name:` and what it read, closes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(name.encode() + b":" + data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    return handle


@asynccontextmanager
async def _backends(*handlers: Handler) -> AsyncIterator[list[int]]:
    # Every connection a backend accepted is closed when the test ends, finished or not: a
    # writer left to the garbage collector after its loop closed warns in a later test.
    writers: list[asyncio.StreamWriter] = []

    def tracked(handler: Handler) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler(reader, writer)
        return handle

    servers = [await asyncio.start_server(tracked(h), "127.0.0.1", 0) for h in handlers]
    try:
        yield [s.sockets[0].getsockname()[1] for s in servers]
    finally:
        for s in servers:
            s.close()
        for writer in writers:
            writer.transport.abort()
        for s in servers:
            await s.wait_closed()


@asynccontextmanager
async def _proxy() -> AsyncIterator[NodePortProxy]:
    proxy = NodePortProxy(connect_timeout=1.0)
    try:
        yield proxy
    finally:
        await proxy.close()


async def _request(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def _expect_reset(port: int) -> float:
    start = time.monotonic()
    with pytest.raises((ConnectionResetError, ConnectionRefusedError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = await asyncio.wait_for(reader.read(), 5)
            assert data != b"", "closed without a reset"
        finally:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return time.monotonic() - start


def test_forwards_with_half_close_and_spreads_over_endpoints() -> None:
    async def main() -> None:
        async with _backends(_echo("a"), _echo("b"), _echo("c")) as ports, _proxy() as proxy:
            node_port = _free_port()
            await proxy.update([_view(node_port, *ports)], LOOPBACK)
            assert proxy.ports == [node_port]
            answers = [await _request(node_port, b"ping%d" % i) for i in range(30)]
            assert all(a.endswith(b":ping%d" % i) for i, a in enumerate(answers))
            assert {a.split(b":")[0] for a in answers} == {b"a", b"b", b"c"}
    asyncio.run(main())


def test_large_payload_both_ways() -> None:
    payload = bytes(range(256)) * 8192

    async def main() -> None:
        async with _backends(_echo("big")) as ports, _proxy() as proxy:
            node_port = _free_port()
            await proxy.update([_view(node_port, *ports)], LOOPBACK)
            assert await _request(node_port, payload) == b"big:" + payload
    asyncio.run(main())


def test_upstream_half_close_reaches_client_while_client_keeps_sending() -> None:
    received: list[bytes] = []

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()
        received.append(await reader.read())
        writer.close()

    async def main() -> None:
        async with _backends(greeter) as ports, _proxy() as proxy:
            node_port = _free_port()
            await proxy.update([_view(node_port, *ports)], LOOPBACK)
            reader, writer = await asyncio.open_connection("127.0.0.1", node_port)
            assert await asyncio.wait_for(reader.read(), 5) == b"hello"
            writer.write(b"after your eof")
            writer.write_eof()
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.02)
            writer.close()
            await writer.wait_closed()
            assert received == [b"after your eof"]
    asyncio.run(main())


def test_no_endpoints_resets_promptly() -> None:
    async def main() -> None:
        async with _proxy() as proxy:
            node_port = _free_port()
            await proxy.update([_view(node_port)], LOOPBACK)
            assert proxy.ports == [node_port]
            assert await _expect_reset(node_port) < 1.0
    asyncio.run(main())


def test_dead_endpoints_are_skipped_and_all_dead_resets() -> None:
    async def main() -> None:
        dead = _free_port()
        async with _backends(_echo("live")) as ports, _proxy() as proxy:
            node_port, all_dead = _free_port(), _free_port()
            await proxy.update([_view(node_port, dead, *ports), _view(all_dead, dead, name="gone")], LOOPBACK)
            for _ in range(10):
                assert await _request(node_port) == b"live:ping"
            assert await _expect_reset(all_dead) < 1.0
    asyncio.run(main())


def test_update_replaces_endpoints_and_closes_removed_ports() -> None:
    async def main() -> None:
        async with _backends(_echo("old"), _echo("new")) as (old, new), _proxy() as proxy:
            node_port, other = _free_port(), _free_port()
            await proxy.update([_view(node_port, old), _view(other, old, name="other"),
                                _view(_free_port(), old, name="udp", protocol="UDP")], LOOPBACK)
            assert proxy.ports == sorted([node_port, other])
            assert await _request(node_port) == b"old:ping"
            await proxy.update([_view(node_port, new)], LOOPBACK)
            assert proxy.ports == [node_port]
            assert {await _request(node_port) for _ in range(5)} == {b"new:ping"}
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", other)
    asyncio.run(main())


def test_port_in_use_is_reported_and_others_still_served() -> None:
    async def main() -> None:
        with closing(socket.socket()) as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            async with _backends(_echo("a")) as ports, _proxy() as proxy:
                free = _free_port()
                await proxy.update([_view(taken, *ports, name="x"), _view(free, *ports, name="y")], LOOPBACK)
                assert proxy.ports == [free]
                assert taken in proxy.bind_errors
                assert await _request(free) == b"a:ping"
    asyncio.run(main())


def test_close_drops_open_connections() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def main() -> None:
        async with _backends(stall) as ports:
            proxy = NodePortProxy()
            node_port = _free_port()
            await proxy.update([_view(node_port, *ports)], LOOPBACK)
            reader, writer = await asyncio.open_connection("127.0.0.1", node_port)
            writer.write(b"x")
            await asyncio.sleep(0.1)
            await proxy.close()
            assert proxy.ports == []
            with pytest.raises((ConnectionResetError, AssertionError)):
                assert await asyncio.wait_for(reader.read(), 5) != b""
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    asyncio.run(main())


def test_runs_in_its_own_thread() -> None:
    async def serve(stop: asyncio.Event, ready: asyncio.Future[int]) -> None:
        async with _backends(_echo("t")) as ports:
            ready.set_result(ports[0])
            await stop.wait()

    async def main() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        backend = asyncio.create_task(serve(stop, ready))
        port = await ready
        proxy = NodePortProxy()
        proxy.start_in_thread()
        try:
            node_port = _free_port()
            await asyncio.to_thread(proxy.update_blocking, [_view(node_port, port)], LOOPBACK)

            def client() -> bytes:
                with socket.create_connection(("127.0.0.1", node_port), timeout=5) as s:
                    s.sendall(b"ping")
                    s.shutdown(socket.SHUT_WR)
                    return b"".join(iter(lambda: s.recv(4096), b""))

            assert await asyncio.to_thread(client) == b"t:ping"
        finally:
            await asyncio.to_thread(proxy.stop)
            stop.set()
            await backend
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", node_port), timeout=1).close()
    asyncio.run(main())


def test_update_blocking_needs_a_thread() -> None:
    with pytest.raises(RuntimeError):
        NodePortProxy().update_blocking([], [])
