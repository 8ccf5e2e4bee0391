"""The pure scheduler: filters, scores, spreading, reasons, in-plan accounting and sampling."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from raftorch.master.scheduler import (
    Binding,
    NodeInfo,
    Plan,
    PodRequest,
    Snapshot,
    Unschedulable,
    schedule,
)

GI = 1024**3
MI = 1024**2
NOW = 1_700_000_000.0


def node(name: str, *, cpu: int = 4000, memory: int = 16 * GI, pods: int = 110, used_cpu: int = 0,
         used_memory: int = 0, pod_count: int = 0, ready: bool = True, unschedulable: bool = False,
         labels: Mapping[str, str] | None = None, host_ports: frozenset[tuple[str, int]] = frozenset(),
         owner_pods: Mapping[str, int] | None = None, host_processes: bool = False) -> NodeInfo:
    return NodeInfo(name=name, ready=ready, unschedulable=unschedulable, labels=labels or {},
                    allocatable_cpu=cpu, allocatable_memory=memory, allocatable_pods=pods,
                    used_cpu=used_cpu, used_memory=used_memory, pod_count=pod_count,
                    host_ports=host_ports, owner_pods=owner_pods or {}, host_processes=host_processes)


def pod(name: str, *, cpu: int = 100, memory: int = 128 * MI, selector: Mapping[str, str] | None = None,
        ports: frozenset[tuple[str, int]] = frozenset(), owner: str = "", privileged: bool = False) -> PodRequest:
    return PodRequest(namespace="default", name=name, uid=f"uid-{name}", cpu=cpu, memory=memory,
                      node_selector=selector or {}, host_ports=ports, owner_uid=owner,
                      host_processes_allowed=privileged)


def replicas(owner: str, count: int) -> list[PodRequest]:
    return [pod(f"{owner}-{i}", owner=owner) for i in range(count)]


def placed(plan: Plan) -> dict[str, str]:
    """Pod name -> node name."""
    return {b.name: b.node for b in plan.bindings}


def per_node(plan: Plan) -> Counter[str]:
    return Counter(b.node for b in plan.bindings)


def assert_valid(nodes: Sequence[NodeInfo], pods: Sequence[PodRequest], plan: Plan) -> None:
    """Every pod is decided exactly once, and every binding passes every filter, plan included."""
    assert sorted(p.uid for p in pods) == sorted([b.uid for b in plan.bindings] + [u.uid for u in plan.unschedulable])
    by_name = {n.name: n for n in nodes}
    by_uid = {p.uid: p for p in pods}
    cpu = {n.name: n.used_cpu for n in nodes}
    memory = {n.name: n.used_memory for n in nodes}
    count = {n.name: n.pod_count for n in nodes}
    ports = {n.name: set(n.host_ports) for n in nodes}
    for b in plan.bindings:
        n, p = by_name[b.node], by_uid[b.uid]
        assert n.ready and not n.unschedulable
        assert all(n.labels.get(k) == v for k, v in p.node_selector.items())
        assert not ports[n.name] & p.host_ports
        assert p.host_processes_allowed or not n.host_processes
        cpu[n.name] += p.cpu
        memory[n.name] += p.memory
        count[n.name] += 1
        ports[n.name] |= p.host_ports
    for n in nodes:
        assert cpu[n.name] <= n.allocatable_cpu
        assert memory[n.name] <= n.allocatable_memory
        assert count[n.name] <= n.allocatable_pods


def test_pod_goes_to_the_only_node_with_enough_cpu() -> None:
    nodes = (node("a", used_cpu=3500), node("b", used_cpu=2000), node("c", used_cpu=3900))
    plan = schedule(Snapshot(nodes), [pod("p", cpu=1000)], NOW)
    assert plan.bindings == (Binding("default", "p", "uid-p", "b"),)
    assert plan.unschedulable == ()


def test_pod_goes_to_the_only_node_with_enough_memory() -> None:
    nodes = (node("a", used_memory=15 * GI), node("b", used_memory=14 * GI))
    plan = schedule(Snapshot(nodes), [pod("p", memory=2 * GI)], NOW)
    assert placed(plan) == {"p": "b"}


def test_full_node_by_pod_count_is_skipped() -> None:
    nodes = (node("a", pods=10, pod_count=10), node("b", pods=10, pod_count=9, used_cpu=3000))
    plan = schedule(Snapshot(nodes), [pod("p")], NOW)
    assert placed(plan) == {"p": "b"}


def test_node_selector_restricts_nodes() -> None:
    nodes = (node("a", labels={"disk": "hdd"}), node("b", labels={"disk": "ssd", "zone": "z1"}, used_cpu=3000),
             node("c"))
    pods = [pod(f"p{i}", selector={"disk": "ssd"}) for i in range(3)]
    plan = schedule(Snapshot(nodes), pods, NOW)
    assert set(placed(plan).values()) == {"b"}


def test_node_selector_needs_every_label() -> None:
    nodes = (node("a", labels={"disk": "ssd"}), node("b", labels={"disk": "ssd", "zone": "z1"}))
    plan = schedule(Snapshot(nodes), [pod("p", selector={"disk": "ssd", "zone": "z1"})], NOW)
    assert placed(plan) == {"p": "b"}


@pytest.mark.parametrize(("count", "each"), [(6, 2), (9, 3)])
def test_replicas_spread_evenly_over_identical_nodes(count: int, each: int) -> None:
    nodes = (node("a"), node("b"), node("c"))
    plan = schedule(Snapshot(nodes), replicas("web", count), NOW)
    assert per_node(plan) == {"a": each, "b": each, "c": each}


def test_spreading_counts_replicas_already_running() -> None:
    nodes = (node("a", used_cpu=200, pod_count=2, owner_pods={"web": 2}), node("b"), node("c"))
    plan = schedule(Snapshot(nodes), replicas("web", 4), NOW)
    assert per_node(plan) == {"b": 2, "c": 2}


def test_spreading_beats_free_resources_for_one_owner() -> None:
    # "b" is nearly full of other pods, but has no replica of web: spreading wins.
    nodes = (node("a", owner_pods={"web": 1}, pod_count=1, used_cpu=100), node("b", used_cpu=3000, pod_count=30))
    plan = schedule(Snapshot(nodes), replicas("web", 1), NOW)
    assert per_node(plan) == {"b": 1}


def test_owners_spread_independently() -> None:
    nodes = (node("a"), node("b"), node("c"))
    pods = [p for pair in zip(replicas("web", 3), replicas("api", 3), strict=True) for p in pair]
    plan = schedule(Snapshot(nodes), pods, NOW)
    for owner in ("web", "api"):
        assert sorted(n for name, n in placed(plan).items() if name.startswith(owner)) == ["a", "b", "c"]


def test_pods_wanting_the_same_host_port_go_to_different_nodes() -> None:
    nodes = (node("a"), node("b"))
    port = frozenset({("TCP", 8080)})
    pods = [pod("p1", ports=port), pod("p2", ports=port), pod("p3", ports=port)]
    plan = schedule(Snapshot(nodes), pods, NOW)
    assert sorted(placed(plan).values()) == ["a", "b"]
    assert plan.unschedulable == (Unschedulable(
        "default", "p3", "uid-p3",
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."),)


def test_host_port_taken_by_running_pod_or_other_protocol() -> None:
    nodes = (node("a", host_ports=frozenset({("TCP", 80)})),
             node("b", host_ports=frozenset({("UDP", 80)}), used_cpu=3000))
    plan = schedule(Snapshot(nodes), [pod("p", ports=frozenset({("TCP", 80)}))], NOW)
    assert placed(plan) == {"p": "b"}


def test_host_process_nodes_take_only_pods_of_privileged_namespaces() -> None:
    nodes = (node("proc", host_processes=True), node("dock", used_cpu=3900))
    plan = schedule(Snapshot(nodes), [pod("a"), pod("b"), pod("sys", privileged=True)], NOW)
    # "proc" is emptier, but only the privileged pod may go there; "dock" has room for one more.
    assert placed(plan) == {"a": "dock", "sys": "proc"}
    assert [(u.name, u.reason) for u in plan.unschedulable] == [
        ("b", "0/2 nodes are available: 1 Insufficient cpu, "
              "1 node(s) run pods as host processes, which the pod's namespace does not allow.")]


def test_not_ready_and_cordoned_nodes_are_skipped() -> None:
    nodes = (node("a", ready=False), node("b", unschedulable=True), node("c", used_cpu=3000))
    plan = schedule(Snapshot(nodes), [pod(f"p{i}") for i in range(5)], NOW)
    assert set(placed(plan).values()) == {"c"}


def test_least_allocated_node_is_preferred() -> None:
    nodes = (node("a", used_cpu=2000, used_memory=2 * GI), node("b", used_cpu=1000, used_memory=8 * GI),
             node("c", used_cpu=500, used_memory=4 * GI))
    plan = schedule(Snapshot(nodes), [pod("p")], NOW)
    assert placed(plan) == {"p": "c"}


def test_pods_without_owner_fill_the_emptiest_node_first() -> None:
    nodes = (node("a", used_cpu=1000), node("b"))
    plan = schedule(Snapshot(nodes), [pod(f"p{i}", cpu=250) for i in range(6)], NOW)
    # b takes pods until it is about as loaded as a; then the emptier of the two, each time.
    assert per_node(plan) == {"a": 1, "b": 5}


def test_equal_nodes_do_not_all_get_the_first_pod() -> None:
    nodes = tuple(node(f"n{i}") for i in range(5))
    chosen = {placed(schedule(Snapshot(nodes), [pod(f"p{i}", owner=f"o{i}")], NOW))[f"p{i}"] for i in range(30)}
    assert len(chosen) > 1


def test_no_node_fits_names_each_nodes_first_failed_filter() -> None:
    nodes = (
        node("a", ready=False, used_cpu=4000),  # not ready counts first, though also full
        node("b", unschedulable=True),
        node("c", labels={"disk": "hdd"}),
        node("d", labels={"disk": "ssd"}, pods=5, pod_count=5),
        node("e", labels={"disk": "ssd"}, used_cpu=3500),
        node("f", labels={"disk": "ssd"}, used_cpu=3600),
        node("g", labels={"disk": "ssd"}, used_memory=16 * GI),
        node("h", labels={"disk": "ssd"}, host_ports=frozenset({("TCP", 443)})),
    )
    p = pod("p", cpu=1000, selector={"disk": "ssd"}, ports=frozenset({("TCP", 443)}))
    plan = schedule(Snapshot(nodes), [p], NOW)
    assert plan.bindings == ()
    assert [u.reason for u in plan.unschedulable] == [
        "0/8 nodes are available: 2 Insufficient cpu, 1 Insufficient memory, 1 Too many pods, "
        "1 node(s) didn't have free ports for the requested pod ports, "
        "1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready, "
        "1 node(s) were unschedulable."]


def test_reason_orders_by_count_then_name() -> None:
    nodes = (node("a", ready=False), node("b", used_cpu=4000), node("c", used_cpu=4000))
    plan = schedule(Snapshot(nodes), [pod("p")], NOW)
    assert plan.unschedulable[0].reason == "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready."

    nodes = (node("a", ready=False), node("b", ready=False), node("c", used_memory=16 * GI), node("d", used_cpu=4000))
    plan = schedule(Snapshot(nodes), [pod("p")], NOW)
    assert plan.unschedulable[0].reason == (
        "0/4 nodes are available: 2 node(s) were not ready, 1 Insufficient cpu, 1 Insufficient memory.")


def test_no_nodes_registered() -> None:
    plan = schedule(Snapshot(()), [pod("p")], NOW)
    assert plan == Plan((), (Unschedulable("default", "p", "uid-p", "0/0 nodes are available: no nodes registered."),))


def test_one_plan_never_overcommits_a_node() -> None:
    nodes = (node("a", cpu=1000, memory=GI, pods=3),)
    pods = [pod(f"p{i}", cpu=400, memory=100 * MI) for i in range(3)]
    plan = schedule(Snapshot(nodes), pods, NOW)
    assert placed(plan) == {"p0": "a", "p1": "a"}
    assert plan.unschedulable == (
        Unschedulable("default", "p2", "uid-p2", "0/1 nodes are available: 1 Insufficient cpu."),)

    plan = schedule(Snapshot(nodes), [pod(f"q{i}", cpu=10) for i in range(4)], NOW)
    assert len(plan.bindings) == 3
    assert plan.unschedulable[0].reason == "0/1 nodes are available: 1 Too many pods."

    plan = schedule(Snapshot(nodes), [pod(f"r{i}", cpu=10, memory=400 * MI) for i in range(3)], NOW)
    assert len(plan.bindings) == 2
    assert plan.unschedulable[0].reason == "0/1 nodes are available: 1 Insufficient memory."


def test_a_later_pod_of_a_failed_shape_gets_an_up_to_date_reason() -> None:
    nodes = (node("a", pods=2, pod_count=1, used_cpu=1500), node("b", used_cpu=3500))
    pods = [pod("big1", cpu=3000), pod("small", cpu=100), pod("big2", cpu=3000), pod("big3", cpu=3000)]
    plan = schedule(Snapshot(nodes), pods, NOW)
    assert placed(plan) == {"small": "a"}
    assert [u.reason for u in plan.unschedulable] == [
        "0/2 nodes are available: 2 Insufficient cpu.",
        "0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods.",
        "0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods.",
    ]


def test_same_inputs_same_plan_whatever_the_node_order() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i:02d}", used_cpu=rng.randrange(0, 3000, 100), labels={"zone": f"z{i % 3}"},
                  host_processes=i % 7 == 0) for i in range(40)]
    pods = [pod(f"p{i}", cpu=rng.randrange(100, 1000, 100), owner=f"o{i % 4}",
                selector={"zone": "z1"} if i % 5 == 0 else None, privileged=i % 3 == 0) for i in range(120)]
    plan = schedule(Snapshot(tuple(nodes)), pods, NOW)
    assert schedule(Snapshot(tuple(nodes)), pods, NOW) == plan
    rng.shuffle(nodes)
    assert schedule(Snapshot(tuple(nodes)), pods, NOW + 60) == plan
    assert_valid(nodes, pods, plan)


def test_sampling_places_every_pod_within_the_filters() -> None:
    rng = random.Random(42)
    nodes = tuple(
        node(f"n{i:03d}", ready=i % 17 != 0, unschedulable=i % 23 == 0, labels={"zone": f"z{i % 4}"},
             used_cpu=rng.randrange(0, 3000, 100), pod_count=rng.randrange(0, 100), pods=110,
             host_ports=frozenset({("TCP", 9100)}) if i % 2 else frozenset())
        for i in range(500))
    pods = [pod(f"p{i}", cpu=rng.choice([100, 250, 500]), owner=f"o{i % 20}",
                selector={"zone": "z2"} if i % 7 == 0 else None,
                ports=frozenset({("TCP", 9100)}) if i % 31 == 0 else frozenset())
            for i in range(3000)]
    plan = schedule(Snapshot(nodes), pods, NOW)
    assert plan.unschedulable == ()
    assert_valid(nodes, pods, plan)
    # With 500 nodes only 100 feasible ones are scored per pod, starting at a rotating offset:
    # the load still reaches most of the cluster, and no owner doubles up on a node before it must.
    assert len(per_node(plan)) > 400
    owners: dict[str, Counter[str]] = {}
    for p, b in zip(pods, plan.bindings, strict=True):
        owners.setdefault(p.owner_uid, Counter())[b.node] += 1
    assert max(max(c.values()) for c in owners.values()) == 1


def test_spreading_holds_with_a_small_sample() -> None:
    nodes = tuple(node(f"n{i:03d}") for i in range(200))
    plan = schedule(Snapshot(nodes), replicas("web", 200), NOW, sample=10)
    assert set(per_node(plan).values()) == {1}


def test_explicit_sample_of_one_still_filters() -> None:
    nodes = (node("a", ready=False), node("b", used_cpu=4000), node("c"))
    plan = schedule(Snapshot(nodes), [pod(f"p{i}") for i in range(3)], NOW, sample=1)
    assert set(placed(plan).values()) == {"c"}


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="sample"):
        schedule(Snapshot((node("a"),)), [pod("p")], NOW, sample=0)
    with pytest.raises(ValueError, match="twice"):
        schedule(Snapshot((node("a"), node("a"))), [pod("p")], NOW)
