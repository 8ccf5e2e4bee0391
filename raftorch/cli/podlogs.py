"""raftctl logs: a container's output, relayed by the masters from the agent of the pod's node."""

from __future__ import annotations

import click

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import namespace_option, ref, resolve_kind
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.client import Client
from raftorch.errors import Conflict, Invalid, NotFound, Unavailable
from raftorch.objects import (
    DAEMON_SET,
    DEPLOYMENT,
    JOB,
    NODE,
    POD,
    REPLICA_SET,
    format_selector,
    selector_from_match_labels,
)


def _pod_of(client: Client, target: str, namespace: str) -> objects_pb2.Pod:
    """The pod meant by POD, pod/POD, deployment/NAME or replicaset/NAME (one of its pods)."""
    kind_text, slash, name = target.partition("/")
    kind = resolve_kind(kind_text) if slash else POD
    name = name if slash else target
    if not name:
        raise Invalid(f'"{target}": expected POD or KIND/NAME')
    if kind == POD:
        pod = client.objects.get(POD.plural, name, namespace)
        assert isinstance(pod, objects_pb2.Pod)
        return pod
    if kind not in (DEPLOYMENT, REPLICA_SET, DAEMON_SET, JOB):
        raise Invalid(f"logs come from pods, deployments, replica sets, daemon sets or jobs, not {kind.plural}")
    owner = client.objects.get(kind.plural, name, namespace)
    assert isinstance(owner, objects_pb2.Deployment | objects_pb2.ReplicaSet | objects_pb2.DaemonSet
                      | objects_pb2.Job)
    selector = format_selector(selector_from_match_labels(owner.spec.selector.match_labels))
    items, _ = client.objects.list(POD.plural, namespace, label_selector=selector)
    pods = sorted((p for p in items if isinstance(p, objects_pb2.Pod)),
                  key=lambda p: (p.status.phase != "Running", p.metadata.name))
    if not pods:
        raise NotFound(f"{ref(kind, name)} has no pods")
    if len(pods) > 1:
        click.echo(f"Found {len(pods)} pods, using pod/{pods[0].metadata.name}", err=True)
    return pods[0]


def _check(client: Client, pod: objects_pb2.Pod, container: str) -> None:
    """The errors the masters would give, said plainly before a stream is opened."""
    name = pod.metadata.name
    names = [c.name for c in pod.spec.containers]
    if container and container not in names:
        raise Invalid(f'container "{container}" is not in pod "{name}"; choose one of: {", ".join(names)}')
    if not container and len(names) > 1:
        raise Invalid(f'pod "{name}" has several containers; choose one with -c: {", ".join(names)}')
    if not pod.spec.node_name:
        raise Conflict(f'pod "{name}" is not scheduled to a node yet, so it has no logs')
    node = client.objects.get(NODE.plural, pod.spec.node_name)
    assert isinstance(node, objects_pb2.Node)
    if not node.status.agent_endpoint:
        raise Unavailable(f'node "{pod.spec.node_name}" of pod "{name}" has no agent endpoint to serve logs from '
                          "(its agent does not serve logs)")


@click.command()
@click.argument("target", metavar="POD | KIND/NAME")
@click.option("-c", "--container", default="", help="The container (needed when the pod has several).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until interrupted.")
@click.option("--tail", type=click.IntRange(min=-1), default=-1, help="Only the last N lines (-1: all).")
@namespace_option
@handle_errors
def logs(target: str, container: str, follow: bool, tail: int, namespace: str) -> None:
    """Print the output of a pod's container.

    \b
    Example:
      raftctl logs web-6d4b9c-x7k2p
      raftctl logs -f deployment/web --tail=20
      raftctl logs web-6d4b9c-x7k2p -c sidecar
    """
    client = get_ctx().client()
    pod = _pod_of(client, target, namespace)
    _check(client, pod, container)
    # The agents read tail_lines=0 as "every line"; kubectl's --tail=0 means none.
    if tail == 0 and not follow:
        return
    for chunk in client.objects.logs(pod.metadata.name, namespace, container, follow, max(tail, 0)):
        click.echo(chunk, nl=False)
