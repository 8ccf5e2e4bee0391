"""Node restriction: what an agent's identity may do, beyond what its role lets any node do.

The interceptor lets the "node" role call the Agents service and read what agents read. This
module narrows that to the caller's own node, as Kubernetes' NodeRestriction does:

- register and heartbeat only as its own node (so no agent can rewrite another node's agent
  endpoint, or keep a node that is gone Ready);
- report status only for pods bound to it (the Agents servicer also checks the binding), and
  watch only its own pods;
- pass heartbeats on for other nodes: masters only (followers to the leader);
- write through the Resources API only the pod that shows the agent in `get pods -A` (its
  mirror pod in raftorch-system, bound to itself), and delete nothing;
- report pod IPs that other nodes may send service traffic to: not a loopback, link-local,
  multicast or unspecified address unless it is the node's own (local one-host clusters);
- read pods only when bound to itself (one at a time: its pods come from WatchNodePods), and
  the services, endpoints, nodes and namespaces its rules need (the role allows those).

Masters act for agents (forwarded heartbeats) and a cluster-wide admin may act as any node
(hollow nodes for scale tests run that way). Pure functions over an `Identity`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.auth import Identity
from raftorch.errors import Invalid, PermissionDenied
from raftorch.objects import MIRROR_ANNOTATION, Kind, pod_references

SYSTEM_NAMESPACE = "raftorch-system"
# What a node reads by name, for the pods bound to it.
CONFIG_KINDS = ("Secret", "ConfigMap", "PersistentVolumeClaim")


def acts_for_any_node(caller: Identity) -> bool:
    return caller.is_master or (caller.kind == "user" and caller.role == "admin" and caller.namespace is None)


def authorize_node(caller: Identity, node: str, action: str) -> None:
    """`PermissionDenied` unless `caller` may `action` (a verb phrase) as node `node`."""
    if acts_for_any_node(caller):
        return
    if caller.is_node:
        if caller.name == node:
            return
        raise PermissionDenied(f'node "{caller.name}" may not {action} as node "{node}": a node acts only as itself')
    raise PermissionDenied(f"{caller.describe()} may not {action} as node {node!r}: only that node's agent may")


def authorize_heartbeat_forwarding(caller: Identity) -> None:
    """Heartbeats passed on for many nodes come from masters only."""
    if not acts_for_any_node(caller):
        raise PermissionDenied(f"{caller.describe()} may not forward heartbeats: only masters do")


def authorize_node_write(caller: Identity, msg: Message) -> None:
    """A node writes through the Resources API only its own mirror pod; others pass unchecked
    here (their role decides)."""
    if not caller.is_node:
        return
    own_mirror = (isinstance(msg, objects_pb2.Pod) and msg.metadata.namespace == SYSTEM_NAMESPACE
                  and msg.metadata.name == f"agent-{caller.name}" and msg.spec.node_name == caller.name
                  and msg.metadata.annotations.get(MIRROR_ANNOTATION) == "true")
    if not own_mirror:
        name = getattr(getattr(msg, "metadata", None), "name", "")
        raise PermissionDenied(f'node "{caller.name}" may not write {msg.DESCRIPTOR.name} {name!r}: a node writes '
                               f"only its own mirror pod {SYSTEM_NAMESPACE}/agent-{caller.name}")


def authorize_node_delete(caller: Identity, kind: Kind) -> None:
    if caller.is_node:
        raise PermissionDenied(f'node "{caller.name}" may not delete {kind.plural}: agents delete nothing')


def authorize_node_read(caller: Identity, kind: Kind, found: Message | None = None) -> None:
    """A node reads pods bound to it, one at a time (`found`: the pod read); a list or watch of
    pods is refused, since WatchNodePods gives it its own. Secrets and config maps too are read
    one at a time, by name (the ones its pods use). Other kinds pass (the role decides)."""
    if caller.is_node and kind.name in CONFIG_KINDS and found is None:
        raise PermissionDenied(f'node "{caller.name}" may not list or watch {kind.plural}: it reads the ones its '
                               "pods use by name")
    if not caller.is_node or kind.name != "Pod":
        return
    if found is None:
        raise PermissionDenied(f'node "{caller.name}" may not list or watch pods: it watches its own with '
                               "WatchNodePods")
    assert isinstance(found, objects_pb2.Pod)
    if found.spec.node_name != caller.name:
        raise PermissionDenied(f'node "{caller.name}" may not read pod {found.metadata.namespace}/'
                               f"{found.metadata.name}: it is not bound to that node")


def authorize_node_config_read(caller: Identity, kind: Kind, namespace: str, name: str,
                               pods: Iterable[objects_pb2.Pod]) -> None:
    """A node reads a Secret, ConfigMap or claim only when a pod bound to it uses that object (as
    Kubernetes' node authorizer does): one agent's certificate does not open every secret."""
    if not caller.is_node or kind.name not in CONFIG_KINDS:
        return
    for pod in pods:
        if (pod.spec.node_name == caller.name and pod.metadata.namespace == namespace
                and (kind.name, name) in pod_references(pod.spec)):
            return
    raise PermissionDenied(f'node "{caller.name}" may not read {kind.name.lower()} {namespace}/{name}: '
                           "no pod bound to that node uses it")


def check_pod_address(node: objects_pb2.Node | Callable[[], objects_pb2.Node | None] | None,
                      status: objects_pb2.PodStatus, pod: str) -> None:
    """A pod IP a node reports ends up in endpoints, and so in every node's service rules: one
    that means "this host" there (127.0.0.2, 169.254.169.254) would turn them on their own
    hosts' local services. `node` may be a function that reads it: called only for such an
    address (a read of the store per report otherwise, for nothing)."""
    if not status.pod_ip:
        return
    try:
        ip = ipaddress.ip_address(status.pod_ip)
    except ValueError:
        raise Invalid(f"pod {pod}: status.podIP: {status.pod_ip!r} is not an IP address") from None
    if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast):
        return
    if callable(node):
        node = node()
    own = {a.address for a in node.status.addresses} if node is not None else set()
    if status.pod_ip not in own:
        raise PermissionDenied(f"pod {pod}: status.podIP: {ip} is a host-local address and not the node's own; "
                               "other nodes would send service traffic to themselves")
