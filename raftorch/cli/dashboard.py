"""raftctl dashboard: forward a local port to a master's web dashboard and print its URL.

The page wants a token (the API's): the client config's token, or else a short-lived one made
for the caller's identity (an admin's client certificate, as `raftctl up` writes). It goes in
the URL's fragment, which the browser keeps to itself; the login page reads it from there.
A master's dashboard off loopback is HTTPS with the cluster CA's certificate: the forward
speaks TLS to it (checked against the client config's CA) and plain HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
from pathlib import Path

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.client.config import ClientConfig
from raftorch.errors import Invalid, PermissionDenied, RaftorchError, Unavailable
from raftorch.local.cluster import LocalCluster, default_data_dir
from raftorch.rpc import is_loopback

DEFAULT_HTTP_PORT = 2381
# A token made for the dashboard lasts a working day.
TOKEN_TTL = 12 * 3600.0


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


def upstream_tls(target: str, config: ClientConfig) -> ssl.SSLContext | None:
    """TLS to a dashboard off loopback, trusting the cluster CA only."""
    if is_loopback(target) or config.insecure:
        return None
    if config.ca_file is None:
        raise Invalid(f"the dashboard at {target} is HTTPS with the cluster's certificate: the client config "
                      "needs ca-file (the cluster CA)")
    try:
        return ssl.create_default_context(cafile=str(config.ca_file.expanduser()))
    except (OSError, ssl.SSLError) as exc:
        raise Invalid(f"ca-file: cannot use {config.ca_file}: {exc}") from None


def dashboard_token(config: ClientConfig) -> tuple[str, str]:
    """A token for the page and a note about it: the config's own, else a new short-lived one
    for the caller's identity ("" when neither: the user pastes one)."""
    if config.insecure:
        return "", ""
    if config.token:
        return config.token, ""
    client = get_ctx().client()
    try:
        who = client.auth.whoami()
        made = client.auth.create_token(name=f"dashboard-{secrets.token_hex(3)}", role=who.role,
                                        namespace=who.namespace, ttl=TOKEN_TTL)
    except PermissionDenied:
        return "", "log in with a token (raftctl token create NAME --role view; an admin makes tokens)"
    return made.token, f"a {who.role} token for the page, valid {TOKEN_TTL / 3600:g} h"


async def _forward(local_port: int, target: str, opened: asyncio.Future[int], tls: ssl.SSLContext | None) -> None:
    host, _, port = target.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port), ssl=tls,
                                                                 server_hostname=host if tls else None)
        except (OSError, ssl.SSLError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", local_port)
    opened.set_result(int(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def _reachable(target: str) -> None:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5.0).close()
    except OSError:
        raise Unavailable(f"no dashboard answers at {target}; is a master running with http-addr there?") from None


async def _serve(local_port: int, target: str, tls: ssl.SSLContext | None, token: str, note: str) -> None:
    opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_forward(local_port, target, opened, tls))
    try:
        bound = await opened
    except OSError as exc:
        raise Unavailable(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror}") from None
    fragment = f"#token={token}" if token else ""
    click.echo(f"Dashboard of {target} at http://127.0.0.1:{bound}/{fragment} (Ctrl-C to stop)")
    if note:
        click.echo(f"({note})")
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
    config = get_ctx().config()
    target = dashboard_address(address, data_dir or default_data_dir(), config.endpoints)
    tls = upstream_tls(target, config)
    _reachable(target)
    try:
        token, note = dashboard_token(config)
    except RaftorchError as err:
        token, note = "", f"no token made ({err.message}): log in with one"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(port, target, tls, token, note))
