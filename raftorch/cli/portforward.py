"""raftctl port-forward: a local port tunnelled to a pod through the masters."""

from __future__ import annotations

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.client.portforward import PortForwarder, resolver
from raftorch.errors import Invalid


def _ports(spec: str) -> tuple[int, int]:
    local, sep, remote = spec.partition(":")
    if not sep:
        local = remote = spec
    if not (local.isdigit() and remote.isdigit()) or not (0 <= int(local) < 65536 and 0 < int(remote) < 65536):
        raise Invalid(f"ports: expected LOCAL:REMOTE port numbers, got {spec!r}")
    return int(local), int(remote)


@click.command(name="port-forward")
@click.argument("target")
@click.argument("ports")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Local address to listen on.")
@handle_errors
def port_forward(target: str, ports: str, namespace: str, address: str) -> None:
    """Forward LOCAL port to REMOTE port of a pod, until interrupted.

    TARGET is pod/NAME, deployment/NAME or service/NAME (a ready pod behind it, chosen again
    for each connection). For a service, REMOTE is the service port.

    \b
    Example:
      raftctl port-forward service/hello-world 7080:8080
      curl http://127.0.0.1:7080/
    """
    local, remote = _ports(ports)
    client = get_ctx().client()
    try:
        forwarder = PortForwarder(client, resolver(client, target, namespace, remote), local, address)
    except OSError as exc:
        raise Invalid(f"cannot listen on {address}:{local}: {exc.strerror or exc}") from None
    try:
        forwarder.check()
        click.echo(f"Forwarding from {address}:{forwarder.port} -> {remote}", err=False)
        forwarder.serve_forever()
    finally:
        forwarder.close()
