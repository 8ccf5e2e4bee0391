"""Scheduling constraints as plain values: taints, tolerations, node affinity, pod anti-affinity.

The predicates here are pure and know nothing of protobuf, so the scheduler (a pure function)
and the controllers (DaemonSet placement, NoExecute eviction) share one meaning of "tolerates"
and "matches". `constraints_of` and `taints_of` convert the stored messages at the edge.

Pod anti-affinity is supported on the `kubernetes.io/hostname` topology only (one node is one
domain), which is what spreading replicas needs; validation refuses other topology keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import parse_time

__all__ = [
    "EFFECTS",
    "HOSTNAME_KEY",
    "NODE_OPERATORS",
    "NO_CONSTRAINTS",
    "NO_EXECUTE",
    "NO_SCHEDULE",
    "PREFER_NO_SCHEDULE",
    "Constraints",
    "Requirement",
    "Taint",
    "Toleration",
    "constraints_of",
    "eviction_time",
    "node_affinity_matches",
    "preferred_weight",
    "requirement_matches",
    "selector_matches",
    "taints_of",
    "tolerates",
    "untolerated",
]

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"
EFFECTS = (NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE)
NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
HOSTNAME_KEY = "kubernetes.io/hostname"
# The effects that keep a pod off a node; PreferNoSchedule only lowers a node's score.
_BLOCKING = (NO_SCHEDULE, NO_EXECUTE)

_Selector = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str
    added: float | None = None  # POSIX seconds; NoExecute toleration seconds count from here


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""  # "" tolerates every effect
    seconds: int | None = None  # NoExecute: how long the pod may stay; None = forever


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Constraints:
    """What a pod asks of its node beyond resources; hashable so equal asks share work."""

    tolerations: tuple[Toleration, ...] = ()
    # Node affinity: the node must match one of `required` (each term ANDs its requirements).
    required: tuple[tuple[Requirement, ...], ...] = ()
    preferred: tuple[tuple[int, tuple[Requirement, ...]], ...] = ()
    # Pod anti-affinity on hostname: no pod of the same namespace matching a selector may share the node.
    anti_required: tuple[_Selector, ...] = ()
    anti_preferred: tuple[tuple[int, _Selector], ...] = ()


NO_CONSTRAINTS = Constraints()


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.operator == "Exists":
        # An empty key with Exists tolerates everything.
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def untolerated(taints: Iterable[Taint], tolerations: Iterable[Toleration],
                effects: tuple[str, ...] = _BLOCKING) -> Taint | None:
    """The first taint of `effects` that no toleration tolerates, or None."""
    tols = tuple(tolerations)
    for taint in taints:
        if taint.effect in effects and not any(tolerates(t, taint) for t in tols):
            return taint
    return None


def eviction_time(taints: Iterable[Taint], tolerations: Iterable[Toleration], now: float) -> float | None:
    """When a pod must leave a node because of its NoExecute taints: `now` for an untolerated
    taint, the end of the shortest tolerationSeconds otherwise, None if it may stay forever."""
    tols = tuple(tolerations)
    due: float | None = None
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            continue
        matching = [t for t in tols if tolerates(t, taint)]
        if not matching:
            return now
        limits = [t.seconds for t in matching if t.seconds is not None]
        if len(limits) < len(matching):
            continue  # one toleration without a limit keeps the pod there for good
        start = taint.added if taint.added is not None else now
        when = start + max(0, min(limits))
        due = when if due is None else min(due, when)
    return due


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    op, value = req.operator, labels.get(req.key)
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(req.values) != 1:
            return False
        try:
            have, bound = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _term_matches(term: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    # An empty term matches nothing, as in Kubernetes.
    return bool(term) and all(requirement_matches(r, labels) for r in term)


def node_affinity_matches(required: tuple[tuple[Requirement, ...], ...], labels: Mapping[str, str]) -> bool:
    return not required or any(_term_matches(term, labels) for term in required)


def preferred_weight(preferred: tuple[tuple[int, tuple[Requirement, ...]], ...], labels: Mapping[str, str]) -> int:
    return sum(weight for weight, term in preferred if _term_matches(term, labels))


def selector_matches(selector: _Selector, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector)


# -- from the stored messages -----------------------------------------------------------------


def _requirements(term: objects_pb2.NodeSelectorTerm) -> tuple[Requirement, ...]:
    return tuple(Requirement(r.key, r.operator, tuple(r.values)) for r in term.match_expressions)


def _selector(selector: objects_pb2.LabelSelector) -> _Selector:
    return tuple(sorted(selector.match_labels.items()))


def constraints_of(spec: objects_pb2.PodSpec) -> Constraints:
    if not spec.tolerations and not spec.HasField("affinity"):
        return NO_CONSTRAINTS
    tolerations = tuple(
        Toleration(t.key, t.operator or "Equal", t.value, t.effect,
                   t.toleration_seconds if t.HasField("toleration_seconds") else None)
        for t in spec.tolerations)
    node = spec.affinity.node_affinity
    anti = spec.affinity.pod_anti_affinity
    return Constraints(
        tolerations=tolerations,
        required=tuple(_requirements(t) for t in
                       node.required_during_scheduling_ignored_during_execution.node_selector_terms),
        preferred=tuple((p.weight, _requirements(p.preference))
                        for p in node.preferred_during_scheduling_ignored_during_execution),
        anti_required=tuple(_selector(t.label_selector)
                            for t in anti.required_during_scheduling_ignored_during_execution),
        anti_preferred=tuple((w.weight, _selector(w.pod_affinity_term.label_selector))
                             for w in anti.preferred_during_scheduling_ignored_during_execution),
    )


def taints_of(node: objects_pb2.Node) -> tuple[Taint, ...]:
    return tuple(Taint(t.key, t.value, t.effect, _time(t.time_added)) for t in node.spec.taints)


def _time(text: str) -> float | None:
    try:
        return parse_time(text) if text else None
    except Invalid:
        return None  # validation keeps bad times out; a stored one counts from now
