"""Init containers: one at a time, in order, to success, before the app containers start."""

from __future__ import annotations

from agent_sim import CONFIG, Node, make_pod, starts

from raftorch.api.v1 import objects_pb2
from raftorch.cli.printers import pod_summary


def with_inits(restart_policy: str = "Always") -> objects_pb2.Pod:
    pod = make_pod(containers=("app",), restart_policy=restart_policy)
    pod.spec.init_containers.add(name="first", image="img:1")
    pod.spec.init_containers.add(name="second", image="img:1")
    return pod


def shown(node: Node, pod: objects_pb2.Pod) -> str:
    shown_pod = objects_pb2.Pod()
    shown_pod.CopyFrom(pod)
    shown_pod.status.CopyFrom(node.status(pod))
    return pod_summary(shown_pod, node.now).status


def test_init_containers_run_in_order_then_the_apps() -> None:
    pod = with_inits()
    node = Node([pod], CONFIG)
    assert [s.spec.container for s in starts(node.step())] == ["first"]
    assert shown(node, pod) == "Init:0/2"
    [first] = node.containers(pod, "first")
    assert starts(node.step(1)) == []  # first still runs: nothing else starts
    node.runtime.exit(first.id, 0)
    assert [s.spec.container for s in starts(node.step(1))] == ["second"]
    assert shown(node, pod) == "Init:1/2"
    [second] = node.containers(pod, "second")
    node.runtime.exit(second.id, 0)
    assert [s.spec.container for s in starts(node.step(1))] == ["app"]
    node.step(1)
    status = node.status(pod)
    assert status.phase == "Running"
    assert [s.state.state for s in status.init_container_statuses] == ["terminated", "terminated"]
    assert shown(node, pod) == "Running"
    # Completed init containers stay (their exit is the record) and do not run again.
    assert starts(node.step(30)) == [] and len(node.containers(pod, "first")) == 1


def test_a_failing_init_container_blocks_the_apps_with_back_off() -> None:
    pod = with_inits()
    node = Node([pod], CONFIG)
    node.step()
    [first] = node.containers(pod, "first")
    node.runtime.exit(first.id, 1)
    assert [s.spec.container for s in starts(node.step(1))] == ["first"]  # the first restart is at once
    [_, again] = sorted(node.containers(pod, "first"), key=lambda c: c.attempt)
    node.runtime.exit(again.id, 1)
    assert starts(node.step(1)) == []  # then it backs off
    assert shown(node, pod) == "Init:CrashLoopBackOff"
    assert [s.state.reason for s in node.status(pod).container_statuses] == ["PodInitializing"]
    assert [s.spec.container for s in starts(node.step(CONFIG.backoff_base))] == ["first"]


def test_with_restart_policy_never_a_failed_init_container_fails_the_pod() -> None:
    pod = with_inits("Never")
    node = Node([pod], CONFIG)
    node.step()
    [first] = node.containers(pod, "first")
    node.runtime.exit(first.id, 2)
    assert starts(node.step(1)) == []
    assert node.status(pod).phase == "Failed"
    assert shown(node, pod) == "Init:Error"
