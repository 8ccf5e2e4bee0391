"""The pure pod reconciler: starts, adoption, orphans, restart policies, back-off, image errors, probes, status."""

from __future__ import annotations

import pytest
from agent_sim import (
    CONFIG,
    HOST_IP,
    NODE,
    T0,
    Node,
    condition,
    exec_probe,
    make_pod,
    removes,
    starts,
    stops,
)

from raftorch.agent.reconciler import (
    AgentPodState,
    ReconcileConfig,
    StopContainer,
    due_probes,
    plan_pod_actions,
    record_probe,
)
from raftorch.agent.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_GRACE,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerInfo,
    PortMapping,
    container_spec,
)
from raftorch.api.v1 import objects_pb2
from raftorch.objects import format_time


def start_previous_agent_container(node: Node, pod: objects_pb2.Pod, attempt: int, name: str = "app",
                                   grace: int | None = None) -> ContainerInfo:
    """A container as an earlier agent process left it."""
    container = next((c for c in pod.spec.containers if c.name == name), objects_pb2.Container(name=name, image="x"))
    spec = container_spec(pod, container, NODE, attempt)
    info = node.runtime.create_and_start(spec)
    if grace is not None:
        labels = dict(info.labels, **{LABEL_GRACE: str(grace)})
        node.runtime.add_container(ContainerInfo(id=info.id, state=info.state, labels=labels, ip=info.ip,
                                                 started_at=info.started_at))
    return info


# -- starting and adopting ------------------------------------------------------------------


def test_first_start_then_running_and_ready() -> None:
    pod = make_pod()
    node = Node([pod])
    plan = node.step()
    [start] = starts(plan)
    spec = start.spec
    assert (spec.attempt, spec.node, spec.pod_uid, spec.container) == (0, NODE, "uid-web", "app")
    status = node.status(pod)
    assert status.phase == "Pending"
    assert status.container_statuses[0].state.state == "waiting"
    assert status.container_statuses[0].state.reason == "ContainerCreating"
    assert condition(status, "Ready").status == "False"

    plan = node.step(1)
    assert plan.actions == ()
    status = node.status(pod)
    [info] = node.containers(pod)
    assert status.phase == "Running"
    assert (status.pod_ip, status.host_ip, status.start_time) == (info.ip, HOST_IP, format_time(T0))
    [cs] = status.container_statuses
    assert (cs.state.state, cs.ready, cs.restart_count, cs.container_id, cs.image) == ("running", True, 0, info.id,
                                                                                       "img:1")
    assert cs.state.started_at == format_time(T0)
    assert condition(status, "Ready").status == "True"
    assert condition(status, "ContainersReady").status == "True"


def test_start_spec_carries_the_container_and_pod() -> None:
    pod = make_pod(grace=45)
    c = pod.spec.containers[0]
    c.command.extend(["/bin/server"])
    c.args.extend(["--port", "8080"])
    c.env.add(name="MODE", value="prod")
    c.ports.add(name="http", container_port=8080, host_port=18080, protocol="TCP")
    c.resources.limits["cpu"] = "500m"
    c.resources.limits["memory"] = "128Mi"
    c.image_pull_policy = "Always"
    plan = plan_pod_actions([pod], [], AgentPodState(), T0, ReconcileConfig(node=NODE, network="raftorch0"))
    [start] = starts(plan)
    spec = start.spec
    assert (spec.command, spec.args, spec.env) == (("/bin/server",), ("--port", "8080"), (("MODE", "prod"),))
    assert spec.ports == (PortMapping(8080, 18080, "TCP"),)
    assert (spec.cpu_millis, spec.memory_bytes, spec.pull_policy) == (500, 128 * 2**20, "Always")
    assert (spec.network, spec.grace_seconds) == ("raftorch0", 45)
    assert spec.labels() == {
        LABEL_MANAGED: "true", LABEL_NODE: NODE, LABEL_POD_UID: "uid-web", LABEL_POD_NAMESPACE: "default",
        LABEL_POD_NAME: "web", LABEL_CONTAINER: "app", LABEL_ATTEMPT: "0", LABEL_GRACE: "45"}
    assert spec.runtime_name == "raftorch_default_web_app_uid-web_0"


def test_running_containers_are_adopted_not_restarted() -> None:
    pod = make_pod()
    node = Node([pod])
    info = start_previous_agent_container(node, pod, attempt=3)
    plan = node.step()  # a fresh agent: empty state
    assert plan.actions == ()
    [cs] = node.status(pod).container_statuses
    assert (cs.state.state, cs.restart_count, cs.container_id) == ("running", 3, info.id)
    assert node.status(pod).phase == "Running"


def test_adopted_container_keeps_its_reported_readiness() -> None:
    pod = make_pod(readiness=exec_probe())
    node = Node([pod])
    info = start_previous_agent_container(node, pod, attempt=0)
    node.step()
    assert condition(node.status(pod), "Ready").status == "False"  # never reported ready: must prove it

    pod.status.container_statuses.add(name="app", container_id=info.id, ready=True)
    node.state = AgentPodState()  # the agent restarts
    node.step()
    assert condition(node.status(pod), "Ready").status == "True"


def test_restart_count_survives_an_agent_restart() -> None:
    pod = make_pod()
    node = Node([pod])
    node.step()
    for _ in range(2):
        node.runtime.exit(node.containers(pod)[-1].id, 1)
        node.step(1000)
    node.state = AgentPodState()
    plan = node.step(1)
    assert plan.actions == ()
    cs = node.status(pod).container_statuses[0]
    assert (cs.restart_count, cs.last_state.exit_code) == (2, 1)


# -- stopping what should not run ------------------------------------------------------------


def test_deleted_pod_is_stopped_with_its_grace_and_removed() -> None:
    pod = make_pod(grace=45)
    node = Node([pod])
    node.step()
    node.step(1)
    node.pods = []
    plan = node.step(1)
    [stop] = stops(plan)
    assert (stop.grace_seconds, stop.remove, stop.pod_uid) == (45, True, "uid-web")
    assert plan.statuses == {}
    assert "uid-web" in plan.state.pods  # its grace is remembered while containers remain
    assert node.runtime.list_containers(NODE) == []
    assert node.step(1).actions == ()
    assert node.state.pods == {}


def test_orphans_of_an_earlier_agent_use_the_grace_label_or_the_default() -> None:
    other = make_pod("gone")
    node = Node([])
    labelled = start_previous_agent_container(node, other, attempt=0, grace=12)
    unlabelled = ContainerInfo(id="old", state="running", labels={LABEL_MANAGED: "true", LABEL_NODE: NODE,
                                                                   LABEL_POD_UID: "uid-older"})
    node.runtime.add_container(unlabelled)
    exited = ContainerInfo(id="dead", state="exited", exit_code=0,
                           labels={LABEL_MANAGED: "true", LABEL_NODE: NODE, LABEL_POD_UID: "uid-dead"})
    node.runtime.add_container(exited)
    plan = node.plan()
    assert {(s.container_id, s.grace_seconds, s.remove) for s in stops(plan)} == {
        (labelled.id, 12, True), ("old", 30, True)}
    assert [r.container_id for r in removes(plan)] == ["dead"]


def test_containers_not_in_the_spec_are_removed() -> None:
    pod = make_pod()
    node = Node([pod])
    stray = start_previous_agent_container(node, pod, attempt=0, name="old-sidecar")
    plan = node.plan()
    [stop] = stops(plan)
    assert (stop.container_id, stop.remove) == (stray.id, True)
    assert [s.spec.container for s in starts(plan)] == ["app"]


def test_terminating_pod_is_stopped_with_grace_and_not_restarted() -> None:
    pod = make_pod(grace=20)
    node = Node([pod])
    node.step()
    pod.metadata.deletion_timestamp = format_time(T0 + 5)
    plan = node.step(5)
    [stop] = stops(plan)
    assert (stop.grace_seconds, stop.remove, stop.reason) == (20, False, "pod is terminating")
    plan = node.step(1)
    assert plan.actions == ()
    assert node.status(pod).container_statuses[0].state.state == "terminated"


def test_older_attempts_are_cleaned_up_keeping_the_newest_dead_one() -> None:
    pod = make_pod()
    node = Node([pod])
    first = start_previous_agent_container(node, pod, attempt=0)
    second = start_previous_agent_container(node, pod, attempt=1)
    node.runtime.exit(first.id, 1)
    node.runtime.exit(second.id, 2)
    running = start_previous_agent_container(node, pod, attempt=2)
    duplicate = start_previous_agent_container(node, pod, attempt=1, name="app")
    plan = node.plan()
    assert [(s.container_id, s.remove) for s in stops(plan)] == [(duplicate.id, True)]
    assert [r.container_id for r in removes(plan)] == [first.id]
    cs = node.status(pod).container_statuses[0]
    assert (cs.container_id, cs.restart_count, cs.last_state.exit_code) == (running.id, 2, 2)


def test_half_created_container_is_removed_and_started_again() -> None:
    pod = make_pod()
    node = Node([pod])
    spec = container_spec(pod, pod.spec.containers[0], NODE, 0)
    node.runtime.add_container(ContainerInfo(id="half", state="created", labels=spec.labels()))
    plan = node.plan()
    assert [type(a).__name__ for a in plan.actions] == ["RemoveContainer", "StartContainer"]
    assert starts(plan)[0].spec.attempt == 0


# -- restart policies and back-off ------------------------------------------------------------


@pytest.mark.parametrize(("policy", "code", "restarts", "phase"), [
    ("Always", 0, True, "Running"),
    ("Always", 1, True, "Running"),
    ("OnFailure", 0, False, "Succeeded"),
    ("OnFailure", 3, True, "Running"),
    ("Never", 0, False, "Succeeded"),
    ("Never", 3, False, "Failed"),
])
def test_restart_policy(policy: str, code: int, restarts: bool, phase: str) -> None:
    pod = make_pod(restart_policy=policy)
    node = Node([pod])
    node.step()
    node.runtime.exit(node.containers(pod)[0].id, code, at=T0 + 5)
    plan = node.step(6)
    status = node.status(pod)
    cs = status.container_statuses[0]
    assert status.phase == phase
    if restarts:
        assert [s.spec.attempt for s in starts(plan)] == [1]  # the first restart is immediate
        assert cs.last_state.exit_code == code
        assert cs.last_state.finished_at == format_time(T0 + 5)
    else:
        assert starts(plan) == []
        assert (cs.state.state, cs.state.exit_code) == ("terminated", code)
        assert cs.state.reason == ("Completed" if code == 0 else "Error")
        assert condition(status, "Ready").reason == "PodCompleted"
        assert node.step(1000).actions == ()


def test_crash_loop_backs_off_exponentially_to_the_cap() -> None:
    pod = make_pod()
    node = Node([pod])
    node.step()
    for restarts, delay in enumerate([0, 10, 20, 40, 80, 160, 300, 300], start=1):
        node.runtime.exit(node.containers(pod)[-1].id, 1)
        finished = node.now
        plan = node.step(0.5)
        if delay:
            assert starts(plan) == []
            cs = node.status(pod).container_statuses[0]
            assert (cs.state.state, cs.state.reason) == ("waiting", "CrashLoopBackOff")
            assert cs.state.message == f"back-off {delay}s restarting failed container=app pod=default/web"
            assert (cs.restart_count, cs.last_state.exit_code) == (restarts - 1, 1)
            assert node.status(pod).phase == "Running"
            assert plan.wake_at == finished + delay
            assert starts(node.step(finished + delay - 0.01 - node.now)) == []
            plan = node.step(0.01)
        assert [s.spec.attempt for s in starts(plan)] == [restarts]
        node.step(0.5)
        assert node.status(pod).container_statuses[0].restart_count == restarts
        assert len(node.containers(pod)) <= 2  # the running one and the newest dead one


def test_a_long_run_resets_the_back_off() -> None:
    pod = make_pod()
    node = Node([pod], ReconcileConfig(node=NODE, backoff_base=0.5, backoff_reset=60))
    node.step()
    for _ in range(4):  # back-off now 0.5, 1, 2, ...
        node.runtime.exit(node.containers(pod)[-1].id, 1)
        node.step(0.1)
        node.step(5)
    assert node.record(pod).backoff_steps == 4
    node.step(60)  # a long, healthy run
    node.runtime.exit(node.containers(pod)[-1].id, 1)
    assert [s.spec.attempt for s in starts(node.step(0.1))] == [5]  # immediately again
    node.runtime.exit(node.containers(pod)[-1].id, 1)
    plan = node.step(0.1)
    assert starts(plan) == [] and plan.wake_at == pytest.approx(node.now - 0.1 + 0.5)


def test_vanished_container_counts_as_failed() -> None:
    pod = make_pod(restart_policy="Never")
    node = Node([pod])
    node.step()
    node.step(1)
    node.runtime.remove(node.containers(pod)[0].id)  # someone ran `docker rm -f`
    plan = node.step(1)
    assert starts(plan) == []
    cs = node.status(pod).container_statuses[0]
    assert (cs.state.state, cs.state.reason, cs.state.exit_code) == ("terminated", "ContainerStatusUnknown", 137)
    assert node.status(pod).phase == "Failed"


# -- image and config errors --------------------------------------------------------------------


def test_image_pull_failure_waits_and_retries_with_back_off() -> None:
    pod = make_pod(image="missing:1")
    node = Node([pod])
    node.runtime.fail_image("missing:1", 'failed to pull image "missing:1": manifest unknown')
    node.step()  # tries, fails
    plan = node.step(1)
    assert starts(plan) == [] and plan.wake_at == T0 + 10
    cs = node.status(pod).container_statuses[0]
    assert (cs.state.state, cs.state.reason) == ("waiting", "ErrImagePull")
    assert cs.state.message == 'failed to pull image "missing:1": manifest unknown'
    assert node.status(pod).phase == "Pending"

    assert len(starts(node.step(9))) == 1  # T0+10: retried, fails again; next wait 20 s
    assert node.status(pod).container_statuses[0].state.reason == "ErrImagePull"
    assert starts(node.step(19.9)) == []
    node.runtime.heal_image("missing:1")
    assert len(starts(node.step(0.1))) == 1  # T0+30
    node.step(1)
    cs = node.status(pod).container_statuses[0]
    assert (cs.state.state, cs.restart_count) == ("running", 0)
    assert node.record(pod).waiting_reason == ""
    assert [c for c in node.runtime.calls if c[0] == "ensure_image"] == [("ensure_image", "missing:1",
                                                                         "IfNotPresent")] * 3


def test_never_pull_policy_without_the_image() -> None:
    pod = make_pod(image="local-only:1")
    pod.spec.containers[0].image_pull_policy = "Never"
    node = Node([pod])
    node.step()
    node.step(1)
    cs = node.status(pod).container_statuses[0]
    assert cs.state.reason == "ErrImageNeverPull"
    assert cs.state.message == 'container image "local-only:1" is not present with pull policy of Never'


def test_bad_resource_quantity_is_a_config_error() -> None:
    pod = make_pod()
    pod.spec.containers[0].resources.limits["cpu"] = "lots"
    plan = plan_pod_actions([pod], [], AgentPodState(), T0, ReconcileConfig(node=NODE))
    assert starts(plan) == []
    state = plan.statuses["uid-web"].container_statuses[0].state
    assert state.reason == "CreateContainerConfigError" and "lots" in state.message


def test_one_container_waiting_keeps_the_pod_pending() -> None:
    pod = make_pod(containers=("a", "b"))
    pod.spec.containers[1].image = "bad:1"
    node = Node([pod])
    node.runtime.fail_image("bad:1")
    node.step()
    node.step(1)
    status = node.status(pod)
    assert status.phase == "Pending"
    assert [cs.state.state for cs in status.container_statuses] == ["running", "waiting"]
    ready = condition(status, "Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", "ContainersNotReady",
                                                           "containers with unready status: [b]")


# -- probes -------------------------------------------------------------------------------------


def test_readiness_gates_ready() -> None:
    pod = make_pod(readiness=exec_probe(initial_delay=5, period=10, success=2, failure=2))
    node = Node([pod])
    node.step()
    plan = node.step(1)
    assert plan.wake_at == T0 + 5
    status = node.status(pod)
    assert status.phase == "Running" and not status.container_statuses[0].ready
    assert condition(status, "Ready").status == "False"

    assert node.probe_all(True) == 0  # the initial delay
    assert node.probe_all(True, dt=4) == 1
    node.step()
    assert condition(node.status(pod), "Ready").status == "False"  # one success of two
    assert node.probe_all(True, dt=10) == 1
    node.step()
    assert condition(node.status(pod), "Ready").status == "True"
    assert node.status(pod).container_statuses[0].ready
    node.probe_all(False, dt=10)
    node.step()
    assert condition(node.status(pod), "Ready").status == "True"  # one failure of two
    node.probe_all(False, dt=10)
    node.step()
    assert condition(node.status(pod), "Ready").status == "False"


def test_liveness_failure_restarts_the_container() -> None:
    pod = make_pod(liveness=exec_probe(period=5, failure=3))
    node = Node([pod])
    node.step()
    node.step()  # sees it running: probes start
    for _ in range(2):
        assert node.probe_all(False, dt=5) == 1
        assert stops(node.step()) == []
    assert node.probe_all(False, dt=5) == 1
    plan = node.step()
    [stop] = stops(plan)
    assert stop == StopContainer(node.containers(pod)[0].id, "uid-web", "app", 30, False, "liveness probe failed")
    assert [s.spec.attempt for s in starts(node.step(1))] == [1]
    node.step(1)
    cs = node.status(pod).container_statuses[0]
    assert (cs.state.state, cs.restart_count, cs.last_state.state, cs.last_state.exit_code) == (
        "running", 1, "terminated", 143)
    liveness = node.record(pod).liveness
    assert liveness is not None and not liveness.failed  # a new container's


def test_probe_result_for_a_replaced_container_is_dropped() -> None:
    pod = make_pod(readiness=exec_probe(success=1))
    node = Node([pod])
    node.step()
    node.step(1)
    [check] = due_probes(node.pods, node.state, node.now)
    node.runtime.exit(check.container_id, 1)
    node.step(1)
    node.step(1)  # a new container now
    assert record_probe(node.state, check, True, node.now) == node.state


def test_ready_transition_time_carries_over() -> None:
    pod = make_pod()
    pod.status.conditions.add(type="Ready", status="True", last_transition_time="2020-01-01T00:00:00Z")
    node = Node([pod])
    node.step()
    node.step(1)
    assert condition(node.status(pod), "Ready").last_transition_time == "2020-01-01T00:00:00Z"
    node.runtime.exit(node.containers(pod)[0].id, 1)
    node.plan(1)
    assert condition(node.status(pod), "Ready").last_transition_time == format_time(node.now)


def test_finished_pods_get_no_status_and_no_starts() -> None:
    pod = make_pod(restart_policy="Never")
    pod.status.phase = "Succeeded"
    plan = plan_pod_actions([pod], [], AgentPodState(), T0, ReconcileConfig(node=NODE))
    assert plan.actions == () and plan.statuses == {}


# -- starts in flight and containers killed from outside -----------------------------------------


def test_a_start_in_flight_is_neither_removed_nor_started_twice() -> None:
    pod = make_pod()
    node = Node([pod])
    [start] = starts(node.plan())
    # Docker shows the container created while the executor is still starting it.
    node.runtime.add_container(ContainerInfo(id="new", state="created", labels=start.spec.labels()))
    plan = plan_pod_actions([pod], node.runtime.list_containers(NODE), node.state, node.now, CONFIG,
                            starting=frozenset({("uid-web", "app")}))
    assert plan.actions == ()
    cs = plan.statuses["uid-web"].container_statuses[0]
    assert (cs.state.state, cs.state.reason) == ("waiting", "ContainerCreating")
    # Once the start is done (or given up), a container still only created is half-made.
    plan = node.plan()
    assert [type(a).__name__ for a in plan.actions] == ["RemoveContainer", "StartContainer"]


def test_a_container_killed_from_outside_restarts_at_once_every_time() -> None:
    pod = make_pod()
    node = Node([pod])
    node.step()
    for kills in range(1, 11):
        node.runtime.exit(node.containers(pod)[-1].id, 137, killed=True)
        plan = node.step(0.1)
        assert [s.spec.attempt for s in starts(plan)] == [kills]
        assert node.status(pod).container_statuses[0].state.reason != "CrashLoopBackOff"
        assert node.record(pod).backoff_steps == 0
        node.step(0.1)
        assert node.status(pod).container_statuses[0].restart_count == kills
    # Crashes after the kills back off as if the kills had not happened: immediately, then 10 s.
    node.runtime.exit(node.containers(pod)[-1].id, 1)
    assert [s.spec.attempt for s in starts(node.step(0.1))] == [11]
    node.step(0.1)
    node.runtime.exit(node.containers(pod)[-1].id, 1)
    plan = node.step(0.1)
    assert starts(plan) == []
    assert node.status(pod).container_statuses[0].state.reason == "CrashLoopBackOff"
    assert plan.wake_at == pytest.approx(node.now - 0.1 + 10)


def test_a_kill_during_a_crash_loop_restarts_at_once_and_keeps_the_back_off() -> None:
    pod = make_pod()
    node = Node([pod])
    node.step()
    for _ in range(3):  # crashes: back-off 0, 10, 20 s
        node.runtime.exit(node.containers(pod)[-1].id, 1)
        node.step(0.1)
        node.step(30)
    assert node.record(pod).backoff_steps == 3
    node.runtime.exit(node.containers(pod)[-1].id, 137, killed=True)
    assert len(starts(node.step(0.1))) == 1
    assert node.record(pod).backoff_steps == 3
    node.step(0.1)
    node.runtime.exit(node.containers(pod)[-1].id, 1)
    plan = node.step(0.1)
    assert starts(plan) == [] and plan.wake_at == pytest.approx(node.now - 0.1 + 40)
