"""A node simulated in memory: the pure reconciler's plans carried out against the FakeRuntime.

`step(dt)` advances the clock, plans, and executes the plan as the agent would (failed starts fed
back with `record_start_failure`); `probe(...)` feeds a probe result. Statuses in a plan describe
the containers as they were before its actions, as the agent reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from raftorch.agent.reconciler import (
    AgentPodState,
    ContainerRecord,
    ReconcileConfig,
    ReconcilePlan,
    RemoveContainer,
    StartContainer,
    StopContainer,
    due_probes,
    plan_pod_actions,
    record_probe,
    record_start_failure,
)
from raftorch.agent.runtime.base import ContainerInfo, RuntimeFailure, start_in_order
from raftorch.agent.runtime.fake import FakeRuntime
from raftorch.agent.volumes import PodInputs
from raftorch.api.v1 import objects_pb2

NODE = "node-1"
HOST_IP = "192.0.2.10"
T0 = 1_700_000_000.0
CONFIG = ReconcileConfig(node=NODE, host_ip=HOST_IP, backoff_base=10.0, backoff_max=300.0, backoff_reset=600.0)


def make_pod(name: str = "web", *, containers: Sequence[str] = ("app",), image: str = "img:1",
             restart_policy: str = "Always", grace: int = 30, uid: str = "",
             liveness: objects_pb2.Probe | None = None,
             readiness: objects_pb2.Probe | None = None) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=uid or f"uid-{name}"),
        spec=objects_pb2.PodSpec(restart_policy=restart_policy, node_name=NODE,
                                 termination_grace_period_seconds=grace))
    for container in containers:
        c = pod.spec.containers.add(name=container, image=image, image_pull_policy="IfNotPresent")
        if liveness is not None:
            c.liveness_probe.CopyFrom(liveness)
        if readiness is not None:
            c.readiness_probe.CopyFrom(readiness)
    return pod


def exec_probe(initial_delay: int = 0, period: int = 10, success: int = 1, failure: int = 3) -> objects_pb2.Probe:
    return objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["true"]), initial_delay_seconds=initial_delay,
                             period_seconds=period, success_threshold=success, failure_threshold=failure)


class Node:
    def __init__(self, pods: Sequence[objects_pb2.Pod] = (), config: ReconcileConfig = CONFIG) -> None:
        self.now = T0
        self.config = config
        self.runtime = FakeRuntime(clock=lambda: self.now)
        self.state = AgentPodState()
        self.pods = list(pods)
        self.plans: list[ReconcilePlan] = []

    def plan(self, dt: float = 0.0, inputs: Mapping[str, PodInputs] | None = None) -> ReconcilePlan:
        """Plan without acting."""
        self.now += dt
        plan = plan_pod_actions(self.pods, self.runtime.list_containers(self.config.node), self.state, self.now,
                                self.config, inputs=inputs)
        self.state = plan.state
        self.plans.append(plan)
        return plan

    def step(self, dt: float = 0.0, inputs: Mapping[str, PodInputs] | None = None) -> ReconcilePlan:
        plan = self.plan(dt, inputs)
        for action in plan.actions:
            if isinstance(action, StopContainer):
                self.runtime.stop(action.container_id, action.grace_seconds)
                if action.remove:
                    self.runtime.remove(action.container_id)
            elif isinstance(action, RemoveContainer):
                self.runtime.remove(action.container_id)
            elif isinstance(action, StartContainer):
                ready = []
                for spec in action.then:  # as the agent: a joining container's image is its own failure
                    try:
                        self.runtime.ensure_image(spec.image, spec.pull_policy)
                        ready.append(spec)
                    except RuntimeFailure as err:
                        self._failed(StartContainer(spec), err)
                try:
                    self.runtime.ensure_image(action.spec.image, action.spec.pull_policy)
                    started = start_in_order(self.runtime, action.spec, ready)
                except RuntimeFailure as err:
                    self._failed(action, err)
                    continue
                for spec, result in zip(ready, started.containers, strict=True):
                    if isinstance(result, RuntimeFailure):
                        self._failed(StartContainer(spec), result)
        return plan

    def _failed(self, action: StartContainer, err: RuntimeFailure) -> None:
        self.state = record_start_failure(self.state, action, err.reason, err.message, self.now, self.config)

    def probe_all(self, ok: bool, dt: float = 0.0) -> int:
        """Run every due probe with result `ok`; how many ran."""
        self.now += dt
        checks = due_probes(self.pods, self.state, self.now)
        for check in checks:
            self.state = record_probe(self.state, check, ok, self.now)
        return len(checks)

    def status(self, pod: objects_pb2.Pod) -> objects_pb2.PodStatus:
        """The status the latest plan computed for `pod`."""
        return self.plans[-1].statuses[pod.metadata.uid]

    def containers(self, pod: objects_pb2.Pod, name: str = "app") -> list[ContainerInfo]:
        return self.runtime.find(pod.metadata.uid, name)

    def record(self, pod: objects_pb2.Pod, name: str = "app") -> ContainerRecord:
        return self.state.pods[pod.metadata.uid].containers[name]


def starts(plan: ReconcilePlan) -> list[StartContainer]:
    return [a for a in plan.actions if isinstance(a, StartContainer)]


def stops(plan: ReconcilePlan) -> list[StopContainer]:
    return [a for a in plan.actions if isinstance(a, StopContainer)]


def removes(plan: ReconcilePlan) -> list[RemoveContainer]:
    return [a for a in plan.actions if isinstance(a, RemoveContainer)]


def condition(status: objects_pb2.PodStatus, type: str) -> objects_pb2.Condition:
    return next(c for c in status.conditions if c.type == type)
