"""raftctl cordon, uncordon and drain: take a node out of scheduling, and empty it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import click

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import modify
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound
from raftorch.objects import MIRROR_ANNOTATION, NODE, controller_of, pod_is_terminal


def _set_unschedulable(client: Client, name: str, value: bool) -> bool:
    def change(node: Any) -> bool:
        if node.spec.unschedulable == value:
            return False
        node.spec.unschedulable = value
        return True

    return modify(client, NODE, "", name, change)[1]


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NODE...")
@handle_errors
def cordon(names: tuple[str, ...]) -> None:
    """Mark nodes unschedulable: new pods go elsewhere, running ones stay.

    \b
    Example:
      raftctl cordon node-a
    """
    client = get_ctx().client()
    for name in names:
        changed = _set_unschedulable(client, name, True)
        click.echo(f"node/{name} {'cordoned' if changed else 'already cordoned'}")


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NODE...")
@handle_errors
def uncordon(names: tuple[str, ...]) -> None:
    """Mark nodes schedulable again.

    \b
    Example:
      raftctl uncordon node-a
    """
    client = get_ctx().client()
    for name in names:
        changed = _set_unschedulable(client, name, False)
        click.echo(f"node/{name} {'uncordoned' if changed else 'already uncordoned'}")


def drain_plan(pods: Sequence[objects_pb2.Pod], force: bool) -> tuple[list[objects_pb2.Pod], list[objects_pb2.Pod]]:
    """(pods to delete, unowned pods that block the drain). Mirror pods belong to the node's
    agent and cannot be moved; finished pods are always deletable."""
    delete: list[objects_pb2.Pod] = []
    blocking: list[objects_pb2.Pod] = []
    for pod in pods:
        if pod.metadata.annotations.get(MIRROR_ANNOTATION) == "true":
            continue
        if controller_of(pod.metadata) is not None or pod_is_terminal(pod) or force:
            delete.append(pod)
        else:
            blocking.append(pod)
    return delete, blocking


def _pods_on(client: Client, node: str) -> list[objects_pb2.Pod]:
    items, _ = client.objects.list("pods", "", field_selector=f"spec.nodeName={node}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


def _refuse(node: str, blocking: Sequence[objects_pb2.Pod]) -> None:
    names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in blocking)
    raise Invalid(f'cannot drain node "{node}": these pods have no controller to recreate them elsewhere '
                  f"(use --force to delete them anyway): {names}")


@click.command()
@click.argument("name", metavar="NODE")
@click.option("--force", is_flag=True, help="Also delete pods that no controller owns (they are not recreated).")
@handle_errors
def drain(name: str, force: bool) -> None:
    """Cordon a node, then delete its pods so their controllers recreate them on other nodes.

    Pods without a controller would be gone for good, so drain refuses (changing nothing)
    unless --force is given.

    \b
    Example:
      raftctl drain node-a
      raftctl drain node-a --force
    """
    client = get_ctx().client()
    client.objects.get(NODE.plural, name)
    _, blocking = drain_plan(_pods_on(client, name), force)
    if blocking:
        _refuse(name, blocking)
    changed = _set_unschedulable(client, name, True)
    click.echo(f"node/{name} {'cordoned' if changed else 'already cordoned'}")
    # Listed again: a pod may have been bound to the node before it was cordoned.
    delete, blocking = drain_plan(_pods_on(client, name), force)
    if blocking:
        _refuse(name, blocking)
    for pod in delete:
        click.echo(f"evicting pod {pod.metadata.namespace}/{pod.metadata.name}")
        with contextlib.suppress(NotFound):  # gone already: the drain wanted nothing else
            client.objects.delete("pods", pod.metadata.name, pod.metadata.namespace)
        click.echo(f"pod/{pod.metadata.name} evicted")
    click.echo(f"node/{name} drained")
