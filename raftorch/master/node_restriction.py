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
- read pods only when bound to itself (one at a time: its pods come from WatchNodePods), and
  the services, endpoints, nodes and namespaces its rules need (the role allows those).

Masters act for agents (forwarded heartbeats) and a cluster-wide admin may act as any node
(hollow nodes for scale tests run that way). Pure functions over an `Identity`.
"""

from __future__ import annotations

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.auth import Identity
from raftorch.errors import PermissionDenied
from raftorch.objects import Kind

SYSTEM_NAMESPACE = "raftorch-system"
MIRROR_ANNOTATION = "raftorch.io/mirror"


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
    pods is refused, since WatchNodePods gives it its own. Other kinds pass (the role decides)."""
    if not caller.is_node or kind.name != "Pod":
        return
    if found is None:
        raise PermissionDenied(f'node "{caller.name}" may not list or watch pods: it watches its own with '
                               "WatchNodePods")
    assert isinstance(found, objects_pb2.Pod)
    if found.spec.node_name != caller.name:
        raise PermissionDenied(f'node "{caller.name}" may not read pod {found.metadata.namespace}/'
                               f"{found.metadata.name}: it is not bound to that node")
