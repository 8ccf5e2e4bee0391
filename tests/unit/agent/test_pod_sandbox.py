"""Pods with a sandbox: one network namespace and one IP for all their containers."""

from __future__ import annotations

from dataclasses import replace

from agent_sim import CONFIG, Node, make_pod, removes, starts, stops

from raftorch.agent.reconciler import plan_pod_actions
from raftorch.agent.runtime.base import SANDBOX_CONTAINER
from raftorch.api.v1 import objects_pb2

SANDBOXED = replace(CONFIG, sandbox_image="pause:1")


def running_pod(containers: tuple[str, ...] = ("a", "b")) -> tuple[Node, objects_pb2.Pod]:
    pod = make_pod(containers=containers)
    node = Node([pod], SANDBOXED)
    node.step()
    node.step(1)
    node.step(1)
    return node, pod


def test_sandbox_starts_first_and_containers_join_it_sharing_its_ip() -> None:
    pod = make_pod(containers=("a", "b"))
    node = Node([pod], SANDBOXED)
    [start] = starts(node.step())
    assert (start.spec.container, start.spec.image, start.spec.sandbox) == (SANDBOX_CONTAINER, "pause:1", None)
    # The containers go with the sandbox's start, to join it as soon as it exists.
    assert [(s.container, s.sandbox) for s in start.then] == [("a", None), ("b", None)]
    assert {c.state.reason for c in node.status(pod).container_statuses} == {"ContainerCreating"}
    [sandbox] = node.containers(pod, SANDBOX_CONTAINER)
    assert {(c.container, c.sandbox) for n in ("a", "b") for c in node.containers(pod, n)} == {
        ("a", sandbox.id), ("b", sandbox.id)}
    assert starts(node.step(1)) == []
    status = node.status(pod)
    assert status.phase == "Running"
    assert status.pod_ip == sandbox.ip
    assert node.containers(pod, "a")[0].sandbox == sandbox.id


def test_sandbox_publishes_the_pods_host_ports() -> None:
    pod = make_pod(containers=("a", "b"))
    pod.spec.containers[1].ports.add(container_port=80, host_port=8080)
    node = Node([pod], SANDBOXED)
    [start] = starts(node.step())
    assert [(p.container_port, p.host_port) for p in start.spec.ports] == [(80, 8080)]


def test_restarted_agent_adopts_sandbox_and_containers() -> None:
    node, pod = running_pod()
    fresh = Node([pod], SANDBOXED)
    fresh.runtime = node.runtime
    fresh.now = node.now
    assert fresh.step(1).actions == ()
    assert fresh.status(pod).phase == "Running"


def test_one_container_exit_restarts_it_alone_in_the_same_sandbox() -> None:
    node, pod = running_pod()
    [sandbox] = node.containers(pod, SANDBOX_CONTAINER)
    [a] = node.containers(pod, "a")
    node.runtime.exit(a.id, 137)
    plan = node.step(1)
    assert [(s.spec.container, s.spec.sandbox) for s in starts(plan)] == [("a", sandbox.id)]
    assert stops(plan) == []
    node.step(1)
    assert node.status(pod).pod_ip == sandbox.ip


def test_dead_sandbox_is_replaced_and_the_containers_start_again_in_the_new_one() -> None:
    node, pod = running_pod()
    [old] = node.containers(pod, SANDBOX_CONTAINER)
    node.runtime.exit(old.id, 137)
    plan = node.step(1)
    assert {s.container for s in stops(plan)} == {"a", "b"}
    assert [s.spec.container for s in starts(plan)] == [SANDBOX_CONTAINER]
    new = next(c for c in node.containers(pod, SANDBOX_CONTAINER) if c.running)
    plan = node.step(1)
    assert {(s.spec.container, s.spec.sandbox) for s in starts(plan)} == {("a", new.id), ("b", new.id)}
    node.step(1)
    assert node.status(pod).pod_ip == new.ip
    assert node.containers(pod, SANDBOX_CONTAINER) == [node.runtime.container(new.id)]


def test_deleted_pod_loses_its_sandbox_after_its_containers() -> None:
    node, pod = running_pod()
    node.pods = []
    plan = node.step(1)
    assert {s.container for s in stops(plan)} == {"a", "b"}
    assert node.containers(pod, SANDBOX_CONTAINER)
    plan = node.step(1)
    assert {s.container for s in stops(plan)} | {r.container for r in removes(plan)} == {SANDBOX_CONTAINER}
    assert node.runtime.list_containers(CONFIG.node) == []


def test_terminating_pod_stops_containers_then_sandbox() -> None:
    node, pod = running_pod()
    pod.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"
    plan = node.step(1)
    assert {s.container for s in stops(plan)} == {"a", "b"}
    plan = node.step(1)
    assert [s.container for s in stops(plan)] == [SANDBOX_CONTAINER]


def test_failed_sandbox_start_shows_on_the_containers() -> None:
    pod = make_pod(containers=("a",))
    node = Node([pod], SANDBOXED)
    node.runtime.fail_image("pause:1", "no such image")
    node.step()
    node.step(1)
    [cs] = node.status(pod).container_statuses
    assert cs.state.reason == "ErrImagePull"
    assert "no such image" in cs.state.message


def test_host_network_pods_have_no_sandbox() -> None:
    pod = make_pod(containers=("a",))
    pod.spec.host_network = True
    node = Node([pod], SANDBOXED)
    [start] = starts(node.step())
    assert (start.spec.container, start.spec.sandbox) == ("a", None)


def test_completed_pod_keeps_its_exited_containers_after_its_sandbox_goes() -> None:
    node, pod = running_pod(("a",))
    pod.spec.restart_policy = "Never"
    [a] = node.containers(pod, "a")
    node.runtime.exit(a.id, 0)
    node.step(1)
    pod.status.phase = "Succeeded"
    for _ in range(3):
        node.step(1)
    assert node.containers(pod, SANDBOX_CONTAINER) == []
    assert [c.id for c in node.containers(pod, "a")] == [a.id]  # its logs stay readable


def test_a_container_that_cannot_start_in_a_new_sandbox_waits_with_its_reason_and_retries_there() -> None:
    pod = make_pod(containers=("a", "b"))
    pod.spec.containers[1].image = "broken:1"
    node = Node([pod], SANDBOXED)
    node.runtime.fail_image("broken:1", "manifest unknown")
    node.step()
    [sandbox] = node.containers(pod, SANDBOX_CONTAINER)
    assert [c.sandbox for c in node.containers(pod, "a")] == [sandbox.id]
    node.step(1)
    b = next(c for c in node.status(pod).container_statuses if c.name == "b")
    assert (b.state.reason, "manifest unknown" in b.state.message) == ("ErrImagePull", True)
    node.runtime.heal_image("broken:1")
    [retry] = starts(node.step(CONFIG.backoff_base))
    assert (retry.spec.container, retry.spec.sandbox, retry.then) == ("b", sandbox.id, ())


def test_a_new_sandbox_carries_only_the_first_init_container() -> None:
    pod = make_pod(containers=("app",))
    pod.spec.init_containers.add(name="init-1", image="img:1")
    pod.spec.init_containers.add(name="init-2", image="img:1")
    node = Node([pod], SANDBOXED)
    [start] = starts(node.step())
    assert [s.container for s in start.then] == ["init-1"]


def test_a_sandbox_replacing_one_whose_containers_still_run_carries_none() -> None:
    node, pod = running_pod()
    [old] = node.containers(pod, SANDBOX_CONTAINER)
    node.runtime.exit(old.id, 137)
    plan = node.plan(1)
    [start] = starts(plan)
    assert (start.spec.container, start.then) == (SANDBOX_CONTAINER, ())  # they join once the old ones stopped


def test_a_container_created_in_a_sandbox_still_starting_is_left_to_its_start() -> None:
    pod = make_pod(containers=("a",))
    node = Node([pod], SANDBOXED)
    [start] = starts(node.plan())
    # Under way: the container is created in the new sandbox, which is not listed yet.
    app = node.runtime.create_and_start(replace(start.then[0], sandbox="sandbox-being-started"))
    node.runtime.add_container(replace(app, state="created"))
    in_flight = frozenset({(pod.metadata.uid, SANDBOX_CONTAINER), (pod.metadata.uid, "a")})
    plan = plan_pod_actions([pod], node.runtime.list_containers(CONFIG.node), node.state, node.now, SANDBOXED,
                            starting=in_flight)
    assert plan.actions == ()
