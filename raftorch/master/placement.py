"""Where pods may go: the scheduler's snapshot of the nodes (from the pods, or from the cache's
running totals), and the nodes that persistent volume claims pin their pods to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from raftorch.api.v1 import objects_pb2
from raftorch.master.admission import HOST_PROCESS_RUNTIME
from raftorch.master.constraints import taints_of
from raftorch.master.indexes import CacheIndex, allocatable, pod_request
from raftorch.master.scheduler import NodeInfo, Snapshot
from raftorch.objects import is_mirror, pod_is_terminal


def build_snapshot(nodes: list[objects_pb2.Node], pods: list[objects_pb2.Pod]) -> Snapshot:
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    ports: dict[str, set[tuple[str, int]]] = defaultdict(set)
    owners: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    labels: dict[str, dict[str, tuple[str, dict[str, str]]]] = defaultdict(dict)  # node -> pod uid -> labels
    for pod in pods:
        if not pod.spec.node_name or pod_is_terminal(pod) or is_mirror(pod):
            continue
        req = pod_request(pod)
        u = used[pod.spec.node_name]
        u[0] += req.cpu
        u[1] += req.memory
        u[2] += 1
        ports[pod.spec.node_name].update(req.host_ports)
        if req.owner_uid:
            owners[pod.spec.node_name][req.owner_uid] += 1
        if pod.metadata.labels:
            labels[pod.spec.node_name][pod.metadata.uid] = (pod.metadata.namespace, dict(pod.metadata.labels))
    infos = []
    for node in nodes:
        name = node.metadata.name
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        u = used[name]
        cpu, memory, count = allocatable(node)
        infos.append(NodeInfo(
            name=name, ready=ready, unschedulable=node.spec.unschedulable, labels=dict(node.metadata.labels),
            allocatable_cpu=cpu, allocatable_memory=memory, allocatable_pods=count,
            used_cpu=u[0], used_memory=u[1], pod_count=u[2],
            host_ports=frozenset(ports[name]), owner_pods=dict(owners[name]),
            host_processes=node.status.runtime == HOST_PROCESS_RUNTIME, taints=taints_of(node),
            pod_labels=_by_uid(labels[name])))
    return Snapshot(tuple(infos))


def snapshot_from_index(nodes: list[objects_pb2.Node], index: CacheIndex) -> Snapshot:
    """The scheduler's snapshot from the cache's running totals: what build_snapshot computes,
    without a pass over every pod."""
    infos = []
    for node in nodes:
        name = node.metadata.name
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        u = index.usage.get(name)
        cpu, memory, count = allocatable(node)
        infos.append(NodeInfo(
            name=name, ready=ready, unschedulable=node.spec.unschedulable, labels=dict(node.metadata.labels),
            allocatable_cpu=cpu, allocatable_memory=memory, allocatable_pods=count,
            used_cpu=u.cpu if u else 0, used_memory=u.memory if u else 0, pod_count=u.pods if u else 0,
            host_ports=frozenset(u.ports) if u else frozenset(), owner_pods=dict(u.owners) if u else {},
            host_processes=node.status.runtime == HOST_PROCESS_RUNTIME, taints=taints_of(node),
            pod_labels=_by_uid(u.labels) if u else ()))
    return Snapshot(tuple(infos))


def _by_uid(labels: dict[str, tuple[str, dict[str, str]]]) -> tuple[tuple[str, dict[str, str]], ...]:
    """A node's pods' labels in one order, however they were gathered."""
    return tuple(labels[uid] for uid in sorted(labels))


def claim_names(pod: objects_pb2.Pod) -> list[str]:
    return [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.HasField("persistent_volume_claim")]


def nodes_of_claims(claims: Iterable[objects_pb2.PersistentVolumeClaim],
                    pods: Iterable[objects_pb2.Pod]) -> dict[tuple[str, str], str]:
    """The node of each claim: where it is bound, else where a pod using it is (that pod was
    scheduled before the claim's binding was written)."""
    out = {(c.metadata.namespace, c.metadata.name): c.status.node_name for c in claims if c.status.node_name}
    for pod in pods:
        if pod.spec.node_name and not pod_is_terminal(pod):
            for name in claim_names(pod):
                out.setdefault((pod.metadata.namespace, name), pod.spec.node_name)
    return out


def claim_placement(pod: objects_pb2.Pod, claims: Mapping[tuple[str, str], objects_pb2.PersistentVolumeClaim],
                    claim_nodes: Mapping[tuple[str, str], str]) -> tuple[str, str, set[tuple[str, str]]]:
    """(the node the pod's claims pin it to or "", why it cannot be placed or "", its unbound claims)."""
    pinned: set[str] = set()
    unbound: set[tuple[str, str]] = set()
    for name in claim_names(pod):
        key = (pod.metadata.namespace, name)
        if key not in claims:
            return "", f'persistentvolumeclaim "{name}" not found', unbound
        if key in claim_nodes:
            pinned.add(claim_nodes[key])
        else:
            unbound.add(key)
    if len(pinned) > 1:
        return "", f"its claims are on different nodes: {', '.join(sorted(pinned))}", unbound
    return next(iter(pinned), ""), "", unbound
