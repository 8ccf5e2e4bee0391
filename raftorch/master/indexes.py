"""Indexes over the leader's object cache, kept current change by change.

The controllers look objects up by relation instead of scanning every object on each pass:
children by controlling owner uid, pods by node, objects by namespace, the pods still waiting
for a node, and each node's resources in use (what the scheduler's snapshot needs), so a
change costs work in proportion to what it touched.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.master.constraints import constraints_of
from raftorch.master.scheduler import PodRequest
from raftorch.objects import (
    controller_of,
    is_mirror,
    parse_count,
    parse_cpu,
    parse_memory,
    pod_is_terminal,
)

B = TypeVar("B")
T = TypeVar("T")



def pod_request(pod: objects_pb2.Pod, host_processes_allowed: bool = False) -> PodRequest:
    cpu = memory = 0
    ports: set[tuple[str, int]] = set()
    for c in pod.spec.containers:
        cpu += parse_cpu(c.resources.requests["cpu"]) if "cpu" in c.resources.requests else 0
        memory += parse_memory(c.resources.requests["memory"]) if "memory" in c.resources.requests else 0
        ports.update((p.protocol or "TCP", p.host_port) for p in c.ports if p.host_port)
    ref = controller_of(pod.metadata)
    return PodRequest(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, cpu, memory,
                      dict(pod.spec.node_selector), frozenset(ports), ref.uid if ref else "",
                      labels=dict(pod.metadata.labels), constraints=constraints_of(pod.spec),
                      host_processes_allowed=host_processes_allowed)


def is_pending(pod: objects_pb2.Pod) -> bool:
    return not pod.spec.node_name and not pod.metadata.deletion_timestamp and not pod_is_terminal(pod)


def counts_on_node(pod: objects_pb2.Pod) -> bool:
    """Whether the pod takes its node's resources (what the scheduler's snapshot counts)."""
    return bool(pod.spec.node_name) and not pod_is_terminal(pod) and not is_mirror(pod)


@dataclass(slots=True)
class NodeUsage:
    cpu: int = 0
    memory: int = 0
    pods: int = 0
    ports: Counter[tuple[str, int]] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    # pod uid -> (namespace, labels) of its labelled pods, for inter-pod affinity.
    labels: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def add(self, req: PodRequest, sign: int) -> None:
        self.cpu += sign * req.cpu
        self.memory += sign * req.memory
        self.pods += sign
        for port in req.host_ports:
            self.ports[port] += sign
            if self.ports[port] <= 0:
                del self.ports[port]
        if req.owner_uid:
            self.owners[req.owner_uid] += sign
            if self.owners[req.owner_uid] <= 0:
                del self.owners[req.owner_uid]
        if req.labels:
            if sign > 0:
                self.labels[req.uid] = (req.namespace, dict(req.labels))
            else:
                self.labels.pop(req.uid, None)


class CacheIndex:
    """Updated by the cache for every stored object (`update(kind, key, old, new)`)."""

    def __init__(self) -> None:
        self.uids: dict[str, str] = {}  # uid -> store key, every kind
        self.live_uids: set[str] = set()
        self._children: dict[str, set[tuple[str, str]]] = defaultdict(set)  # owner uid -> (kind, key)
        self._by_namespace: dict[tuple[str, str], set[str]] = defaultdict(set)  # (kind, ns) -> keys
        self._pods_by_node: dict[str, set[str]] = defaultdict(set)
        self.pending: set[str] = set()  # keys of pods waiting for a node
        self.usage: dict[str, NodeUsage] = defaultdict(NodeUsage)  # node -> what its pods take
        self._counted: dict[str, tuple[str, PodRequest]] = {}  # pod key -> (node, request) counted

    def update(self, kind: str, key: str, old: Message | None, new: Message | None) -> None:
        if old is not None:
            self._remove(kind, key, old)
        if new is not None:
            self._add(kind, key, new)

    def _add(self, kind: str, key: str, obj: Message) -> None:
        meta: objects_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
        if meta.uid:
            self.uids[meta.uid] = key
            self.live_uids.add(meta.uid)
        ref = controller_of(meta)
        if ref is not None and ref.uid:
            self._children[ref.uid].add((kind, key))
        self._by_namespace[(kind, meta.namespace)].add(key)
        if isinstance(obj, objects_pb2.Pod):
            if obj.spec.node_name:
                self._pods_by_node[obj.spec.node_name].add(key)
            if is_pending(obj):
                self.pending.add(key)
            if counts_on_node(obj):
                req = pod_request(obj)
                self._counted[key] = (obj.spec.node_name, req)
                self.usage[obj.spec.node_name].add(req, 1)

    def _remove(self, kind: str, key: str, obj: Message) -> None:
        meta: objects_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
        if meta.uid and self.uids.get(meta.uid) == key:
            del self.uids[meta.uid]
            self.live_uids.discard(meta.uid)
        ref = controller_of(meta)
        if ref is not None and ref.uid:
            _discard(self._children, ref.uid, (kind, key))
        _discard(self._by_namespace, (kind, meta.namespace), key)
        if isinstance(obj, objects_pb2.Pod):
            if obj.spec.node_name:
                _discard(self._pods_by_node, obj.spec.node_name, key)
            self.pending.discard(key)
            counted = self._counted.pop(key, None)
            if counted is not None:
                node, req = counted
                usage = self.usage[node]
                usage.add(req, -1)
                if usage.pods <= 0:
                    del self.usage[node]

    def children(self, owner_uid: str, kind: str | None = None) -> list[tuple[str, str]]:
        """(kind, key) of the objects whose controlling owner has `owner_uid`."""
        found = self._children.get(owner_uid, set())
        return sorted(c for c in found if kind is None or c[0] == kind)

    def in_namespace(self, kind: str, namespace: str) -> list[str]:
        return sorted(self._by_namespace.get((kind, namespace), set()))

    def pods_on(self, node: str) -> list[str]:
        return sorted(self._pods_by_node.get(node, set()))


def _discard(index: dict[B, set[T]], bucket: B, item: T) -> None:
    found = index.get(bucket)
    if found is None:
        return
    found.discard(item)
    if not found:
        del index[bucket]


def allocatable(node: objects_pb2.Node) -> tuple[int, int, int]:
    alloc = node.status.allocatable or node.status.capacity
    return (parse_cpu(alloc.get("cpu", "0")), parse_memory(alloc.get("memory", "0")),
            parse_count(alloc.get("pods", "110")))
