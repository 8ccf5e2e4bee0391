"""Pods of one container run as that one container, without a sandbox, at a fixed address they keep."""

from __future__ import annotations

from dataclasses import replace

from agent_sim import CONFIG, Node, make_pod, removes, starts, stops

from raftorch.agent.addresses import AddressRange
from raftorch.agent.reconciler import AgentPodState, is_solo
from raftorch.agent.runtime.base import LABEL_POD_IP, SANDBOX_CONTAINER, container_spec, sandbox_spec

SOLO = replace(CONFIG, sandbox_image="pause:1", network="raftorch-node-1", pod_cidr="10.88.0.0/24")
TOP = "10.88.0.254"


def test_a_one_container_pod_starts_as_one_container_at_a_fixed_address() -> None:
    pod = make_pod()
    node = Node([pod], SOLO)
    [start] = starts(node.step())
    assert (start.spec.container, start.spec.sandbox, start.then) == ("app", None, ())
    assert (start.spec.network, start.spec.ip_address) == ("raftorch-node-1", TOP)
    assert start.spec.labels()[LABEL_POD_IP] == TOP
    assert node.containers(pod, SANDBOX_CONTAINER) == []
    assert starts(node.step(1)) == []
    status = node.status(pod)
    assert (status.phase, status.pod_ip) == ("Running", TOP)


def test_the_replacement_of_an_exited_container_has_the_same_address() -> None:
    pod = make_pod()
    node = Node([pod], SOLO)
    node.step()
    [first] = node.containers(pod)
    node.runtime.exit(first.id, 137)
    [again] = starts(node.step(1))
    assert (again.spec.attempt, again.spec.ip_address) == (1, TOP)
    assert node.status(pod).pod_ip == TOP  # held while no container runs
    node.step(1)
    status = node.status(pod)
    assert (status.pod_ip, status.container_statuses[0].restart_count) == (TOP, 1)


def test_pods_get_distinct_addresses_and_a_deleted_pods_address_is_free_once_its_container_is_gone() -> None:
    a, b = make_pod("a"), make_pod("b")
    node = Node([a, b], SOLO)
    plan = node.step()
    assert [s.spec.ip_address for s in starts(plan)] == [TOP, "10.88.0.253"]
    node.pods = [b]
    assert {s.container for s in stops(node.step(1))} == {"app"}
    node.step(1)
    node.pods = [b, make_pod("c")]
    [start] = starts(node.step(1))
    assert start.spec.ip_address == TOP


def test_a_restarted_agent_adopts_the_container_and_keeps_its_address() -> None:
    pod = make_pod()
    node = Node([pod], SOLO)
    node.step()
    node.step(1)
    fresh = Node([pod, make_pod("other")], SOLO)
    fresh.runtime, fresh.now = node.runtime, node.now
    plan = fresh.step(1)
    assert [s.spec.pod_name for s in starts(plan)] == ["other"]
    assert starts(plan)[0].spec.ip_address != TOP
    assert stops(plan) == [] and removes(plan) == []
    assert fresh.state.pods[pod.metadata.uid].address == TOP


def test_a_restarted_agent_finds_the_address_on_an_exited_container() -> None:
    pod = make_pod()
    node = Node([pod], SOLO)
    node.step()
    [first] = node.containers(pod)
    node.runtime.exit(first.id, 0)
    fresh = Node([make_pod("first-come"), pod], SOLO)  # another pod is planned before it
    fresh.runtime, fresh.now = node.runtime, node.now
    plan = fresh.step(1)
    assert {s.spec.pod_name: s.spec.ip_address for s in starts(plan)} == {"first-come": "10.88.0.253", "web": TOP}


def test_a_restarted_agent_takes_the_address_from_the_status_when_no_container_is_left() -> None:
    pod = make_pod()
    pod.status.pod_ip = "10.88.0.200"
    node = Node([pod], SOLO)
    [start] = starts(node.step())
    assert start.spec.ip_address == "10.88.0.200"


def test_an_address_in_use_by_another_container_is_not_given() -> None:
    other = make_pod("legacy")
    node = Node([], SOLO)
    spec = container_spec(other, other.spec.containers[0], SOLO.node, 0, ip_address=TOP)
    node.runtime.create_and_start(spec)  # running at TOP, a pod this agent no longer has
    node.pods = [make_pod()]
    [start] = [s for s in starts(node.step()) if s.spec.pod_name == "web"]
    assert start.spec.ip_address == "10.88.0.253"


def test_a_finished_pod_gives_its_address_back() -> None:
    pod = make_pod(restart_policy="Never")
    node = Node([pod], SOLO)
    node.step()
    [app] = node.containers(pod)
    node.runtime.exit(app.id, 0)
    node.step(1)
    pod.status.phase = "Succeeded"
    node.step(1)
    assert node.state.pods[pod.metadata.uid].address == ""
    node.pods = [pod, make_pod("next")]
    [start] = starts(node.step(1))
    assert start.spec.ip_address == TOP


def test_a_pod_waits_while_no_address_is_free() -> None:
    tiny = replace(SOLO, pod_cidr="10.88.0.0/30")  # one address to give: .2
    a, b = make_pod("a"), make_pod("b")
    node = Node([a, b], tiny)
    plan = node.step()
    assert [(s.spec.pod_name, s.spec.ip_address) for s in starts(plan)] == [("a", "10.88.0.2")]
    [cs] = node.status(b).container_statuses
    assert (cs.state.reason, cs.state.message) == ("ContainerCreating", "no free pod address on this node")
    assert plan.wake_at is not None
    node.pods = [b]
    node.step(1)
    [start] = starts(node.step(1))
    assert (start.spec.pod_name, start.spec.ip_address) == ("b", "10.88.0.2")


def test_pods_of_two_containers_init_containers_or_the_host_network_keep_their_ways() -> None:
    pair = make_pod("pair", containers=("a", "b"))
    init = make_pod("init")
    init.spec.init_containers.add(name="setup", image="img:1")
    host = make_pod("host")
    host.spec.host_network = True
    node = Node([pair, init, host], SOLO)
    plan = node.step()
    by_pod = {s.spec.pod_name: s for s in starts(plan)}
    assert by_pod["pair"].spec.container == by_pod["init"].spec.container == SANDBOX_CONTAINER
    assert (by_pod["host"].spec.container, by_pod["host"].spec.ip_address) == ("app", None)
    assert not any(is_solo(p, SOLO) for p in (pair, init, host))
    assert not is_solo(make_pod(), replace(SOLO, pod_cidr=""))  # no bridge CIDR known: a sandbox


def test_a_pod_adopted_with_a_running_sandbox_keeps_it_and_runs_alone_once_it_died() -> None:
    pod = make_pod()
    node = Node([pod], replace(SOLO, pod_cidr=""))  # an agent of before: a sandbox for every pod
    node.step()
    node.step(1)
    [old] = node.containers(pod, SANDBOX_CONTAINER)
    [joined] = node.containers(pod)
    fresh = Node([pod], SOLO)
    fresh.runtime, fresh.now = node.runtime, node.now
    assert fresh.step(1).actions == ()
    assert fresh.status(pod).pod_ip == old.ip
    node.runtime.exit(old.id, 137)
    plan = fresh.step(1)
    assert {(s.container_id, s.reason) for s in stops(plan)} == {(joined.id, "pod sandbox changed")}
    assert {r.container_id for r in removes(plan)} == {old.id}
    [start] = starts(plan)
    assert (start.spec.sandbox, start.spec.ip_address, start.spec.attempt) == (None, TOP, 1)
    fresh.step(1)
    assert fresh.status(pod).pod_ip == TOP
    assert [c.running for c in fresh.containers(pod)] == [True]


def test_a_deleted_pod_goes_as_one_container() -> None:
    pod = make_pod()
    node = Node([pod], SOLO)
    node.step()
    node.pods = []
    node.step(1)
    assert node.runtime.list_containers(SOLO.node) == []
    node.step(1)
    assert node.state == AgentPodState()


def test_the_range_is_the_upper_half_without_broadcast_or_gateway() -> None:
    pool = AddressRange("10.88.0.0/24")
    assert "10.88.0.128" in pool and TOP in pool
    assert "10.88.0.127" not in pool and "10.88.0.255" not in pool and "10.88.1.1" not in pool
    assert "not an address" not in pool
    assert pool.first_free([TOP, "10.88.0.253"]) == "10.88.0.252"
    tiny = AddressRange("10.88.0.0/30")
    assert tiny.first_free([]) == "10.88.0.2"
    assert tiny.first_free(["10.88.0.2"]) is None
    assert sandbox_spec(make_pod(), SOLO.node, 0, "pause:1").labels().get(LABEL_POD_IP) is None
