"""Validation of node taints and of a pod's tolerations and affinity, with field paths."""

from __future__ import annotations

from collections.abc import Iterable

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import Problems, qualified_name_error, quote
from raftorch.objects.meta import parse_time

__all__ = [
    "NODE_SELECTOR_OPERATORS",
    "TAINT_EFFECTS",
    "TOLERATION_OPERATORS",
]

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Equal", "Exists")
NODE_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
SUPPORTED_TOPOLOGY_KEYS = ("kubernetes.io/hostname",)
MAX_WEIGHT = 100


def validate_taints(problems: Problems, path: str, taints: Iterable[objects_pb2.Taint]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        where = f"{path}[{i}]"
        problems.check(f"{where}.key", qualified_name_error(taint.key) if taint.key else "required")
        problems.one_of(f"{where}.effect", taint.effect, TAINT_EFFECTS, empty_ok=False)
        if (taint.key, taint.effect) in seen:
            problems.add(where, f"duplicate taint {quote(taint.key)} with effect {taint.effect}")
        seen.add((taint.key, taint.effect))
        if taint.time_added:
            try:
                parse_time(taint.time_added)
            except Invalid as exc:
                problems.add(f"{where}.timeAdded", exc.message)


def validate_scheduling(problems: Problems, path: str, spec: objects_pb2.PodSpec) -> None:
    """`path` is the pod spec's, such as "spec" or "spec.template.spec"."""
    for i, tol in enumerate(spec.tolerations):
        where = f"{path}.tolerations[{i}]"
        problems.one_of(f"{where}.operator", tol.operator, TOLERATION_OPERATORS)
        problems.one_of(f"{where}.effect", tol.effect, TAINT_EFFECTS)
        if tol.key:
            problems.check(f"{where}.key", qualified_name_error(tol.key))
        elif tol.operator != "Exists":
            problems.add(f"{where}.key", "required unless operator is Exists")
        if tol.operator == "Exists" and tol.value:
            problems.add(f"{where}.value", f"must be empty when operator is Exists, got {quote(tol.value)}")
        if tol.HasField("toleration_seconds") and tol.effect != "NoExecute":
            problems.add(f"{where}.tolerationSeconds", "only applies to effect NoExecute")
    if not spec.HasField("affinity"):
        return
    node = spec.affinity.node_affinity
    where = f"{path}.affinity.nodeAffinity"
    required = node.required_during_scheduling_ignored_during_execution
    if node.HasField("required_during_scheduling_ignored_during_execution") and not required.node_selector_terms:
        problems.add(f"{where}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
                     "at least one term is required")
    for i, term in enumerate(required.node_selector_terms):
        _term(problems, f"{where}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", term)
    for i, pref in enumerate(node.preferred_during_scheduling_ignored_during_execution):
        at = f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        problems.in_range(f"{at}.weight", pref.weight, 1, MAX_WEIGHT)
        _term(problems, f"{at}.preference", pref.preference)
    anti = spec.affinity.pod_anti_affinity
    where = f"{path}.affinity.podAntiAffinity"
    for i, pod_term in enumerate(anti.required_during_scheduling_ignored_during_execution):
        _pod_term(problems, f"{where}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", pod_term)
    for i, weighted in enumerate(anti.preferred_during_scheduling_ignored_during_execution):
        at = f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        problems.in_range(f"{at}.weight", weighted.weight, 1, MAX_WEIGHT)
        _pod_term(problems, f"{at}.podAffinityTerm", weighted.pod_affinity_term)


def _term(problems: Problems, path: str, term: objects_pb2.NodeSelectorTerm) -> None:
    if not term.match_expressions:
        problems.add(f"{path}.matchExpressions", "at least one requirement is required")
    for i, req in enumerate(term.match_expressions):
        where = f"{path}.matchExpressions[{i}]"
        problems.check(f"{where}.key", qualified_name_error(req.key) if req.key else "required")
        problems.one_of(f"{where}.operator", req.operator, NODE_SELECTOR_OPERATORS, empty_ok=False)
        op, count = req.operator, len(req.values)
        if op in ("In", "NotIn") and count == 0:
            problems.add(f"{where}.values", f"at least one value is required for operator {op}")
        elif op in ("Exists", "DoesNotExist") and count:
            problems.add(f"{where}.values", f"must be empty for operator {op}")
        elif op in ("Gt", "Lt"):
            if count != 1:
                problems.add(f"{where}.values", f"exactly one integer is required for operator {op}, got {count}")
            elif not req.values[0].lstrip("-").isdigit():
                problems.add(f"{where}.values[0]", f"must be an integer for operator {op}, got {quote(req.values[0])}")


def _pod_term(problems: Problems, path: str, term: objects_pb2.PodAffinityTerm) -> None:
    problems.one_of(f"{path}.topologyKey", term.topology_key, SUPPORTED_TOPOLOGY_KEYS, empty_ok=False)
    problems.labels(f"{path}.labelSelector.matchLabels", term.label_selector.match_labels)
