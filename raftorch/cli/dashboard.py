"""raftctl dashboard: forward a local port to a master's web dashboard and print its URL."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.errors import Invalid, Unavailable
from raftorch.local.cluster import LocalCluster, default_data_dir

DEFAULT_HTTP_PORT = 2381


def dashboard_address(address: str, data_dir: Path, endpoints: list[str]) -> str:
    """Where a master's dashboard answers: --address, else the local cluster's first master
    (`raftctl up`), else the first endpoint's host on the default http port."""
    if address:
        return address
    state = LocalCluster(data_dir).running()
    if state is not None:
        for m in state.masters:
            if m.http_addr:
                return m.http_addr
    host = endpoints[0].rsplit(":", 1)[0] if endpoints else "127.0.0.1"
    return f"{host}:{DEFAULT_HTTP_PORT}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward(local_port: int, target: str, opened: asyncio.Future[int]) -> None:
    host, _, port = target.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", local_port)
    opened.set_result(int(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


async def _serve(local_port: int, target: str) -> None:
    host, _, port = target.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5.0)
        writer.close()
    except (OSError, TimeoutError):
        raise Unavailable(f"no dashboard answers at {target}; is a master running with http-addr there?") from None
    opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_forward(local_port, target, opened))
    try:
        bound = await opened
    except OSError as exc:
        raise Unavailable(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror}") from None
    click.echo(f"Dashboard of {target} at http://127.0.0.1:{bound}/ (Ctrl-C to stop)")
    await task


@click.command()
@click.option("--port", type=int, default=0, help="Local port (default: any free one).")
@click.option("--address", default="", help="HOST:PORT of a master's http-addr (default: found for you).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="The local cluster's directory.")
@handle_errors
def dashboard(port: int, address: str, data_dir: Path | None) -> None:
    """Open a port-forward to a master's web dashboard and print its URL.

    \b
    Example:
      raftctl dashboard
      raftctl dashboard --port 8001
    """
    if not 0 <= port < 65536:
        raise Invalid(f"--port: {port} is not a port")
    target = dashboard_address(address, data_dir or default_data_dir(), get_ctx().config().endpoints)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(port, target))
