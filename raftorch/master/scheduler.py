"""Pod scheduling as a pure function: a snapshot of the nodes and the pending pods in, a plan out.

The leader builds a `Snapshot` from its replicated state, calls `schedule`, then re-checks each
binding against the state it commits to (another writer may have changed a node meanwhile), in
the manner of Nomad's plan queue. Nothing here does I/O, reads a clock or touches protobuf.

For every pod, in the order given:

1. Filters, in this order (a node failing several is counted once, for the first): ready, not
   cordoned, node selector and required node affinity, pod security (a node that runs pods as
   host processes takes only pods whose namespace allows that: see admission.py), taints
   (NoSchedule and NoExecute) the pod does not tolerate, required pod anti-affinity (no pod of
   the same namespace matching a term's selector on the node), pod count below
   `allocatable_pods`, cpu, memory, free host ports.
2. Scores, higher is better: least allocated (mean over cpu and memory of the node's free
   fraction after placing the pod, 0..100) minus `SPREAD_WEIGHT` per pod of the same owner
   already on the node, plus the weights of the preferred node-affinity terms the node matches,
   minus the weights of the preferred anti-affinity terms it breaks (so a weight of 100 outweighs
   the whole least-allocated range), minus `PREFER_NO_SCHEDULE_WEIGHT` per untolerated
   PreferNoSchedule taint. `SPREAD_WEIGHT` exceeds the whole least-allocated range, so among the
   nodes evaluated one fewer replica of the owner always wins: replicas spread evenly before
   resources are weighed at all.
3. Equal scores are broken by the lowest CRC-32 of pod uid + node name: stable across processes
   and versions, and it sends different pods to different ones of equally good nodes.
4. The pod is placed on a working copy of the node's free resources, ports and owner counts,
   so later pods in the same call see it and one plan never overcommits a node.

Like Kubernetes' percentageOfNodesToScore, the search for a pod stops once `sample` feasible
nodes have been scored, and each search starts where the previous one (for the same node
selector) stopped, so consecutive pods look at different parts of a large cluster. Nodes are
ordered by name first, so the plan depends on the snapshot's content, not on its order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice, pairwise

from raftorch.master.constraints import (
    NO_CONSTRAINTS,
    PREFER_NO_SCHEDULE,
    Constraints,
    Requirement,
    Taint,
    node_affinity_matches,
    preferred_weight,
    selector_matches,
    untolerated,
)

SPREAD_WEIGHT = 101.0
PREFER_NO_SCHEDULE_WEIGHT = 50.0
MIN_SAMPLE = 100
SAMPLE_PERCENT = 10

_Selector = tuple[tuple[str, str], ...]
# Everything about a pod that decides where it fits: requests, selector, host ports.
_Shape = tuple[int, int, _Selector, bool, frozenset[tuple[str, int]], Constraints, str]
# What decides the nodes a pod may ever use in one call: selector, host processes, node affinity,
# tolerations.
_StaticKey = tuple[_Selector, bool, tuple[tuple[Requirement, ...], ...], tuple[object, ...]]

NOT_READY = "node(s) were not ready"
CORDONED = "node(s) were unschedulable"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
HOST_PROCESSES = "node(s) run pods as host processes, which the pod's namespace does not allow"
TOO_MANY_PODS = "Too many pods"
INSUFFICIENT_CPU = "Insufficient cpu"
INSUFFICIENT_MEMORY = "Insufficient memory"
PORT_CONFLICT = "node(s) didn't have free ports for the requested pod ports"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    ready: bool
    unschedulable: bool
    labels: Mapping[str, str]
    allocatable_cpu: int  # millicores
    allocatable_memory: int  # bytes
    allocatable_pods: int
    used_cpu: int
    used_memory: int
    pod_count: int
    host_ports: frozenset[tuple[str, int]]  # (protocol, port) taken by pods on the node
    owner_pods: Mapping[str, int]  # owner uid -> pods of that owner on the node
    host_processes: bool = False  # the node runs pods as host processes (the process runtime)
    taints: tuple[Taint, ...] = ()
    # (namespace, labels) of the pods on the node, for pod anti-affinity.
    pod_labels: tuple[tuple[str, Mapping[str, str]], ...] = ()


@dataclass(frozen=True, slots=True)
class PodRequest:
    namespace: str
    name: str
    uid: str
    cpu: int  # millicores
    memory: int  # bytes
    node_selector: Mapping[str, str]
    host_ports: frozenset[tuple[str, int]]
    owner_uid: str  # "" = no owner
    host_processes_allowed: bool = False  # the pod's namespace is privileged
    labels: Mapping[str, str] = field(default_factory=dict)
    constraints: Constraints = NO_CONSTRAINTS


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes: tuple[NodeInfo, ...]


@dataclass(frozen=True, slots=True)
class Binding:
    namespace: str
    name: str
    uid: str
    node: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    namespace: str
    name: str
    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    bindings: tuple[Binding, ...]
    unschedulable: tuple[Unschedulable, ...]


def default_sample(node_count: int) -> int:
    """How many feasible nodes to score per pod: max(100, 10% of the nodes)."""
    return max(MIN_SAMPLE, node_count * SAMPLE_PERCENT // 100)


@dataclass(slots=True)
class _Candidates:
    """Nodes passing the filters that cannot change within a call, and where the next search starts."""

    nodes: list[int]
    offset: int = 0


class _Working:
    """The call's mutable view of the nodes, one list per attribute, indexed by node position."""

    def __init__(self, nodes: Sequence[NodeInfo], owners: Iterable[str]) -> None:
        self.nodes = nodes
        self.free_cpu = [n.allocatable_cpu - n.used_cpu for n in nodes]
        self.free_memory = [n.allocatable_memory - n.used_memory for n in nodes]
        self.free_pods = [n.allocatable_pods - n.pod_count for n in nodes]
        self.ports = [n.host_ports for n in nodes]
        # Scaled so that free * scale sums over cpu and memory to the 0..100 mean free fraction.
        self.cpu_scale = [50.0 / n.allocatable_cpu if n.allocatable_cpu > 0 else 0.0 for n in nodes]
        self.memory_scale = [50.0 / n.allocatable_memory if n.allocatable_memory > 0 else 0.0 for n in nodes]
        self.name_bytes = [n.name.encode() for n in nodes]
        self.schedulable = [i for i, n in enumerate(nodes) if n.ready and not n.unschedulable]
        self.prefer_no_schedule = any(t.effect == PREFER_NO_SCHEDULE for n in nodes for t in n.taints)
        self.no_owner = [0] * len(nodes)
        # Per owner, a list of its pod counts by node: a list index is cheaper than a dict lookup
        # in the innermost loop, and only owners of pending pods are materialised.
        self.owner_counts: dict[str, list[int]] = {o: [0] * len(nodes) for o in owners if o}
        for i, node in enumerate(nodes):
            for owner, count in node.owner_pods.items():
                counts = self.owner_counts.get(owner)
                if counts is not None:
                    counts[i] = count
        self._candidates: dict[_StaticKey, _Candidates] = {}
        self.placements = 0
        # (namespace, labels) of the pods this call placed, by node position.
        self.placed_labels: dict[int, list[tuple[str, Mapping[str, str]]]] = {}

    def candidates(self, selector: _Selector, host_processes_allowed: bool, constraints: Constraints) -> _Candidates:
        key = (selector, host_processes_allowed, constraints.required, tuple(constraints.tolerations))
        found = self._candidates.get(key)
        if found is None:
            nodes = self.nodes
            found = _Candidates([i for i in self.schedulable if _static_fit(nodes[i], selector, constraints)
                                 and (host_processes_allowed or not nodes[i].host_processes)])
            self._candidates[key] = found
        return found

    def anti_conflict(self, i: int, pod: PodRequest) -> bool:
        """A pod of the same namespace on node `i` matches one of `pod`'s required anti-affinity terms."""
        terms = pod.constraints.anti_required
        return any(_has_match(self._labels_on(i), pod.namespace, term) for term in terms)

    def preference(self, i: int, pod: PodRequest) -> float:
        c, node = pod.constraints, self.nodes[i]
        score = float(preferred_weight(c.preferred, node.labels))
        for weight, term in c.anti_preferred:
            if _has_match(self._labels_on(i), pod.namespace, term):
                score -= weight
        for taint in node.taints:
            if taint.effect == PREFER_NO_SCHEDULE and untolerated((taint,), c.tolerations, (PREFER_NO_SCHEDULE,)):
                score -= PREFER_NO_SCHEDULE_WEIGHT
        return score

    def _labels_on(self, i: int) -> Iterable[tuple[str, Mapping[str, str]]]:
        return chain(self.nodes[i].pod_labels, self.placed_labels.get(i, ()))

    def place(self, i: int, pod: PodRequest) -> None:
        self.free_cpu[i] -= pod.cpu
        self.free_memory[i] -= pod.memory
        self.free_pods[i] -= 1
        if pod.host_ports:
            self.ports[i] = self.ports[i] | pod.host_ports
        if pod.owner_uid:
            self.owner_counts[pod.owner_uid][i] += 1
        if pod.labels:
            self.placed_labels.setdefault(i, []).append((pod.namespace, pod.labels))
        self.placements += 1

    def reason(self, pod: PodRequest) -> str:
        """Kubernetes-style account of why no node fits `pod`, one reason per node."""
        if not self.nodes:
            return "0/0 nodes are available: no nodes registered."
        selector = tuple(pod.node_selector.items())
        histogram: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if not node.ready:
                why = NOT_READY
            elif node.unschedulable:
                why = CORDONED
            elif not _matches(node.labels, selector) or not node_affinity_matches(pod.constraints.required,
                                                                                  node.labels):
                why = SELECTOR_MISMATCH
            elif node.host_processes and not pod.host_processes_allowed:
                why = HOST_PROCESSES
            elif (taint := untolerated(node.taints, pod.constraints.tolerations)) is not None:
                why = f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
            elif pod.constraints.anti_required and self.anti_conflict(i, pod):
                why = ANTI_AFFINITY
            elif self.free_pods[i] <= 0:
                why = TOO_MANY_PODS
            elif self.free_cpu[i] < pod.cpu:
                why = INSUFFICIENT_CPU
            elif self.free_memory[i] < pod.memory:
                why = INSUFFICIENT_MEMORY
            elif not pod.host_ports.isdisjoint(self.ports[i]):
                why = PORT_CONFLICT
            else:  # Unreachable: the search only gives up after trying every candidate.
                continue
            histogram[why] = histogram.get(why, 0) + 1
        parts = sorted(histogram.items(), key=lambda item: (-item[1], item[0]))
        reasons = ", ".join(f"{count} {why}" for why, count in parts)
        return f"0/{len(self.nodes)} nodes are available: {reasons}."


def _matches(labels: Mapping[str, str], selector: Iterable[tuple[str, str]]) -> bool:
    return all(labels.get(key) == value for key, value in selector)


def _static_fit(node: NodeInfo, selector: _Selector, constraints: Constraints) -> bool:
    return (_matches(node.labels, selector) and node_affinity_matches(constraints.required, node.labels)
            and (not node.taints or untolerated(node.taints, constraints.tolerations) is None))


def _has_match(pods: Iterable[tuple[str, Mapping[str, str]]], namespace: str, selector: _Selector) -> bool:
    return any(ns == namespace and selector_matches(selector, labels) for ns, labels in pods)


def schedule(snapshot: Snapshot, pending: Sequence[PodRequest], now: float, *, sample: int | None = None) -> Plan:
    """Place `pending` pods, in order, on the nodes of `snapshot`; see the module docstring.

    `now` is reserved for time-based rules and unused today. `sample` is the number of feasible
    nodes scored per pod (default: `default_sample`, which is every node below 100 nodes).
    Raises ValueError for a `sample` below 1 or two nodes with the same name.
    """
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    nodes = sorted(snapshot.nodes, key=lambda n: n.name)
    for a, b in pairwise(nodes):
        if a.name == b.name:
            raise ValueError(f"node {a.name!r} appears twice in the snapshot")
    limit = sample if sample is not None else default_sample(len(nodes))

    work = _Working(nodes, {pod.owner_uid for pod in pending})
    free_cpu, free_memory, free_pods = work.free_cpu, work.free_memory, work.free_pods
    node_ports, cpu_scale, memory_scale = work.ports, work.cpu_scale, work.memory_scale
    name_bytes, crc32 = work.name_bytes, zlib.crc32

    bindings: list[Binding] = []
    unschedulable: list[Unschedulable] = []
    # Placements only take capacity away, so a shape that fit nowhere fits nowhere for the rest
    # of the call: later pods of that shape skip the search (a full scan of the cluster each).
    # The reason is reused while no placement happened; after one it may read differently.
    failed: dict[_Shape, tuple[int, str]] = {}
    for pod in pending:
        cpu, memory, ports = pod.cpu, pod.memory, pod.host_ports
        selector: _Selector = tuple(sorted(pod.node_selector.items())) if pod.node_selector else ()
        constraints = pod.constraints
        anti = bool(constraints.anti_required)
        prefer = bool(constraints.preferred or constraints.anti_preferred or constraints.tolerations
                      or work.prefer_no_schedule)
        # Anti-affinity terms match pods of the pod's own namespace: the namespace is part of its shape.
        shape = (cpu, memory, selector, pod.host_processes_allowed, ports, constraints, pod.namespace if anti else "")
        if shape in failed:
            generation, reason = failed[shape]
            if generation != work.placements:
                reason = work.reason(pod)
                failed[shape] = (work.placements, reason)
            unschedulable.append(Unschedulable(pod.namespace, pod.name, pod.uid, reason))
            continue
        owned = work.owner_counts[pod.owner_uid] if pod.owner_uid else work.no_owner
        cands = work.candidates(selector, pod.host_processes_allowed, constraints)
        order, start = cands.nodes, cands.offset
        pod_crc = crc32(pod.uid.encode())

        best, best_score, best_tie = -1, 0.0, -1
        seen = found = 0
        # The hot loop: plain locals and list indexing only; it runs sample times per pod.
        for i in chain(islice(order, start, None), islice(order, 0, start)):
            seen += 1
            cpu_left = free_cpu[i] - cpu
            memory_left = free_memory[i] - memory
            if cpu_left < 0 or memory_left < 0 or free_pods[i] <= 0:
                continue
            if ports and not ports.isdisjoint(node_ports[i]):
                continue
            if anti and work.anti_conflict(i, pod):
                continue
            score = cpu_left * cpu_scale[i] + memory_left * memory_scale[i] - SPREAD_WEIGHT * owned[i]
            if prefer:
                score += work.preference(i, pod)
            if best < 0 or score > best_score:
                best, best_score, best_tie = i, score, -1
            elif score == best_score:
                if best_tie < 0:
                    best_tie = crc32(name_bytes[best], pod_crc)
                tie = crc32(name_bytes[i], pod_crc)
                if tie < best_tie:
                    best, best_tie = i, tie
            found += 1
            if found >= limit:
                break
        if order:
            cands.offset = (start + seen) % len(order)

        if best < 0:
            reason = work.reason(pod)
            failed[shape] = (work.placements, reason)
            unschedulable.append(Unschedulable(pod.namespace, pod.name, pod.uid, reason))
        else:
            work.place(best, pod)
            bindings.append(Binding(pod.namespace, pod.name, pod.uid, nodes[best].name))
    return Plan(tuple(bindings), tuple(unschedulable))
