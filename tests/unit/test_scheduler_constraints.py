"""The scheduler's constraint predicates: taints and tolerations, node affinity, pod anti-affinity."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from raftorch.master.constraints import (
    NO_CONSTRAINTS,
    Constraints,
    Requirement,
    Taint,
    Toleration,
    eviction_time,
    node_affinity_matches,
    requirement_matches,
    tolerates,
    untolerated,
)
from raftorch.master.scheduler import NodeInfo, Plan, PodRequest, Snapshot, schedule

GI = 1024**3
NOW = 1_700_000_000.0
HOST = "kubernetes.io/hostname"


def node(name: str, *, labels: Mapping[str, str] | None = None, taints: tuple[Taint, ...] = (),
         pods: tuple[tuple[str, Mapping[str, str]], ...] = ()) -> NodeInfo:
    return NodeInfo(name=name, ready=True, unschedulable=False, labels={HOST: name, **(labels or {})},
                    allocatable_cpu=4000, allocatable_memory=16 * GI, allocatable_pods=110, used_cpu=0,
                    used_memory=0, pod_count=len(pods), host_ports=frozenset(), owner_pods={}, taints=taints,
                    pod_labels=pods)


def pod(name: str, constraints: Constraints = NO_CONSTRAINTS, labels: Mapping[str, str] | None = None,
        namespace: str = "default") -> PodRequest:
    return PodRequest(namespace=namespace, name=name, uid=f"uid-{name}", cpu=100, memory=1024, node_selector={},
                      host_ports=frozenset(), owner_uid="", labels=labels or {}, constraints=constraints)


def placed(nodes: list[NodeInfo], pods: list[PodRequest]) -> dict[str, str]:
    plan = schedule_all(nodes, pods)
    return {b.name: b.node for b in plan.bindings}


def schedule_all(nodes: list[NodeInfo], pods: list[PodRequest]) -> Plan:
    return schedule(Snapshot(tuple(nodes)), pods, NOW)


# -- predicates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("toleration", "taint", "expected"), [
    (Toleration("gpu", "Equal", "yes", "NoSchedule"), Taint("gpu", "yes", "NoSchedule"), True),
    (Toleration("gpu", "Equal", "no", "NoSchedule"), Taint("gpu", "yes", "NoSchedule"), False),
    (Toleration("gpu", "Exists", "", ""), Taint("gpu", "yes", "NoExecute"), True),
    (Toleration("gpu", "Exists", "", "NoSchedule"), Taint("gpu", "yes", "NoExecute"), False),
    (Toleration("", "Exists"), Taint("anything", "x", "NoExecute"), True),
    (Toleration("other", "Exists"), Taint("gpu", "", "NoSchedule"), False),
])
def test_toleration_matches_taint(toleration: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_does_not_block() -> None:
    assert untolerated((Taint("a", "", "PreferNoSchedule"),), ()) is None
    assert untolerated((Taint("a", "", "NoSchedule"),), ()) == Taint("a", "", "NoSchedule")


@pytest.mark.parametrize(("op", "values", "labels", "expected"), [
    ("In", ("a", "b"), {"k": "b"}, True),
    ("In", ("a",), {}, False),
    ("NotIn", ("a",), {"k": "b"}, True),
    ("NotIn", ("a",), {}, True),
    ("NotIn", ("a",), {"k": "a"}, False),
    ("Exists", (), {"k": ""}, True),
    ("DoesNotExist", (), {"k": "x"}, False),
    ("Gt", ("4",), {"k": "8"}, True),
    ("Gt", ("4",), {"k": "4"}, False),
    ("Lt", ("4",), {"k": "2"}, True),
    ("Lt", ("4",), {"k": "two"}, False),
])
def test_requirement_operators(op: str, values: tuple[str, ...], labels: dict[str, str], expected: bool) -> None:
    assert requirement_matches(Requirement("k", op, values), labels) is expected


def test_node_affinity_terms_are_ored_and_requirements_anded() -> None:
    terms = ((Requirement("zone", "In", ("a",)), Requirement("disk", "Exists")), (Requirement("zone", "In", ("b",)),))
    assert node_affinity_matches(terms, {"zone": "a", "disk": "ssd"})
    assert not node_affinity_matches(terms, {"zone": "a"})
    assert node_affinity_matches(terms, {"zone": "b"})
    assert node_affinity_matches((), {})


def test_eviction_time() -> None:
    taint = Taint("maint", "", "NoExecute", added=NOW - 10)
    assert eviction_time((taint,), (), NOW) == NOW
    assert eviction_time((taint,), (Toleration("maint", "Exists", "", "NoExecute", 30),), NOW) == NOW + 20
    assert eviction_time((taint,), (Toleration("maint", "Exists", "", "NoExecute"),), NOW) is None
    assert eviction_time((Taint("x", "", "NoSchedule"),), (), NOW) is None


# -- in the scheduler ----------------------------------------------------------------------------


def test_tainted_node_only_takes_pods_that_tolerate() -> None:
    nodes = [node("a", taints=(Taint("gpu", "yes", "NoSchedule"),)), node("b")]
    tolerant = Constraints(tolerations=(Toleration("gpu", "Equal", "yes", "NoSchedule"),))
    got = placed(nodes, [pod("p1"), pod("p2"), pod("t1", tolerant)])
    assert got["p1"] == got["p2"] == "b"
    assert got["t1"] == "a"  # emptier node, allowed by the toleration


def test_untolerated_taint_is_named_in_the_reason() -> None:
    nodes = [node("a", taints=(Taint("dedicated", "db", "NoExecute"),))]
    plan = schedule_all(nodes, [pod("p")])
    assert plan.unschedulable[0].reason == "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}."


def test_required_node_affinity() -> None:
    nodes = [node("a", labels={"zone": "x"}), node("b", labels={"zone": "y"})]
    want_y = Constraints(required=((Requirement("zone", "In", ("y",)),),))
    assert placed(nodes, [pod("p", want_y)]) == {"p": "b"}
    plan = schedule_all(nodes, [pod("q", Constraints(required=((Requirement("zone", "In", ("z",)),),)))])
    assert "2 node(s) didn't match Pod's node affinity/selector" in plan.unschedulable[0].reason


def test_preferred_node_affinity_wins_over_least_allocated() -> None:
    busy = NodeInfo(name="busy", ready=True, unschedulable=False, labels={"ssd": "true"}, allocatable_cpu=4000,
                    allocatable_memory=16 * GI, allocatable_pods=110, used_cpu=3000, used_memory=8 * GI,
                    pod_count=3, host_ports=frozenset(), owner_pods={})
    prefer = Constraints(preferred=((100, (Requirement("ssd", "Exists"),)),))
    assert placed([busy, node("idle")], [pod("p", prefer)]) == {"p": "busy"}
    assert placed([busy, node("idle")], [pod("p")]) == {"p": "idle"}


def test_required_anti_affinity_puts_replicas_on_distinct_nodes_and_names_the_rule() -> None:
    spread = Constraints(anti_required=((("app", "web"),),))
    nodes = [node("a"), node("b"), node("c")]
    pods = [pod(f"web-{i}", spread, {"app": "web"}) for i in range(4)]
    plan = schedule_all(nodes, pods)
    assert sorted(b.node for b in plan.bindings) == ["a", "b", "c"]
    assert [u.name for u in plan.unschedulable] == ["web-3"]
    assert plan.unschedulable[0].reason == \
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."


def test_anti_affinity_sees_running_pods_and_only_its_namespace() -> None:
    spread = Constraints(anti_required=((("app", "web"),),))
    nodes = [node("a", pods=(("default", {"app": "web"}),)), node("b", pods=(("other", {"app": "web"}),))]
    assert placed(nodes, [pod("p", spread, {"app": "web"})]) == {"p": "b"}


def test_preferred_anti_affinity_spreads_when_it_can() -> None:
    soft = Constraints(anti_preferred=((100, (("app", "web"),)),))
    nodes = [node("a", pods=(("default", {"app": "web"}),)), node("b", pods=(("default", {"app": "web"}),))]
    # Both nodes break the preference: the pod still runs.
    assert len(placed(nodes, [pod("p", soft, {"app": "web"})])) == 1
    nodes.append(node("c"))
    assert placed(nodes, [pod("p", soft, {"app": "web"})]) == {"p": "c"}


def test_prefer_no_schedule_taint_is_avoided_when_possible() -> None:
    nodes = [node("a", taints=(Taint("old", "", "PreferNoSchedule"),)), node("b")]
    assert placed(nodes, [pod("p")]) == {"p": "b"}
    assert placed(nodes[:1], [pod("p")]) == {"p": "a"}
