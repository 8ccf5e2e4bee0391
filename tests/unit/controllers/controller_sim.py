"""A tiny in-memory cluster that runs the deployment and replica set plans step by step.

One step: pods created during the previous step start and turn ready (unless their image is
in `broken_images`), the deployment plan is applied, then each replica set's plan. Observers
run after every change, so tests can assert invariants at every intermediate state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from raftorch.api.v1 import objects_pb2
from raftorch.master.controllers import DeploymentPlan, plan_deployment, plan_replicaset

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
NAMESPACE = "default"


def rfc3339(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_deployment(replicas: int = 10, image: str = "web:v1", *, max_surge: str = "", max_unavailable: str = "",
                    strategy: str = "", history: int | None = None, name: str = "web") -> objects_pb2.Deployment:
    deploy = objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=NAMESPACE, uid=f"uid-{name}", generation=1),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels={"app": name}),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels={"app": name}),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="main", image=image)]),
            ),
            strategy=objects_pb2.DeploymentStrategy(
                type=strategy,
                rolling_update=objects_pb2.RollingUpdateDeployment(max_surge=max_surge,
                                                                    max_unavailable=max_unavailable),
            ),
        ),
    )
    if history is not None:
        deploy.spec.revision_history_limit = history
    return deploy


def image_of(pod_or_template: objects_pb2.Pod | objects_pb2.PodTemplateSpec) -> str:
    return pod_or_template.spec.containers[0].image


def is_ready(pod: objects_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


class Sim:
    def __init__(self, deploy: objects_pb2.Deployment, *, new_rs_first: bool = False) -> None:
        self.deploy = deploy
        self.replica_sets: dict[str, objects_pb2.ReplicaSet] = {}
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.clock = 0
        self.broken_images: set[str] = set()
        self.observers: list[Callable[[Sim], None]] = []
        self.new_rs_first = new_rs_first
        self._uids = 0
        self._suffixes = 0
        self._ips = 0
        self._changed = False
        self.plans: list[DeploymentPlan] = []

    # -- what tests change -------------------------------------------------------------

    def set_image(self, image: str) -> None:
        self.deploy.spec.template.spec.containers[0].image = image
        self.deploy.metadata.generation += 1

    def set_replicas(self, replicas: int) -> None:
        self.deploy.spec.replicas = replicas
        self.deploy.metadata.generation += 1

    def undo(self, revision: int = 0) -> None:
        self.deploy.spec.rollback_to = revision
        self.deploy.metadata.generation += 1

    # -- views ---------------------------------------------------------------------------

    def now(self) -> str:
        return rfc3339(self.clock)

    def live_pods(self) -> list[objects_pb2.Pod]:
        return [p for p in self.pods.values() if not p.metadata.deletion_timestamp
                and p.status.phase not in ("Succeeded", "Failed")]

    def ready_pods(self) -> list[objects_pb2.Pod]:
        return [p for p in self.live_pods() if is_ready(p)]

    def pods_of(self, rs_name: str) -> list[objects_pb2.Pod]:
        return [p for p in self.pods.values() if p.metadata.owner_references[0].name == rs_name]

    def rs_for_image(self, image: str) -> objects_pb2.ReplicaSet:
        (rs,) = [rs for rs in self.replica_sets.values() if image_of(rs.spec.template) == image]
        return rs

    def plan(self) -> DeploymentPlan:
        return plan_deployment(self.deploy, list(self.replica_sets.values()), list(self.pods.values()),
                               now=self.now())

    # -- running ---------------------------------------------------------------------------

    def step(self) -> bool:
        """One round; True when anything changed."""
        self._changed = False
        self.clock += 1
        self._start_pending_pods()
        plan = self.plan()
        self.plans.append(plan)
        self._apply_deployment_plan(plan)
        if not plan.clear_rollback:  # a rollback rewrites the spec: the next plan is a rollout
            again = self.plan()
            assert again.is_noop(self.deploy), f"deployment plan not idempotent: {again}"
        for rs in self._rs_in_order():
            self._run_replicaset(rs)
        return self._changed

    def run(self, max_steps: int = 200) -> int:
        """Steps until nothing changes; the number of steps that changed something."""
        for n in range(max_steps):
            if not self.step():
                return n
        raise AssertionError(f"no steady state after {max_steps} steps")

    def _rs_in_order(self) -> list[objects_pb2.ReplicaSet]:
        ordered = sorted(self.replica_sets.values(), key=lambda rs: rs.metadata.creation_timestamp)
        return ordered[::-1] if self.new_rs_first else ordered

    def _changed_now(self) -> None:
        self._changed = True
        for observer in self.observers:
            observer(self)

    def _start_pending_pods(self) -> None:
        started = False
        for pod in self.pods.values():
            if pod.status.phase != "Pending":
                continue
            self._ips += 1
            pod.spec.node_name = "node-1"
            pod.status.phase = "Running"
            pod.status.pod_ip = f"10.0.{self._ips // 250}.{self._ips % 250 + 1}"
            if image_of(pod) not in self.broken_images:
                pod.status.conditions.append(objects_pb2.Condition(type="Ready", status="True",
                                                                   last_transition_time=self.now()))
            started = True
        if started:
            self._changed_now()

    def _apply_deployment_plan(self, plan: DeploymentPlan) -> None:
        touched = False
        if plan.create is not None:
            rs = objects_pb2.ReplicaSet()
            rs.CopyFrom(plan.create)
            assert rs.metadata.name not in self.replica_sets
            rs.metadata.uid = self._uid()
            rs.metadata.generation = 1
            self.clock += 1
            rs.metadata.creation_timestamp = self.now()
            self.replica_sets[rs.metadata.name] = rs
            touched = True
        for name, revision in plan.update_revision:
            self.replica_sets[name].metadata.annotations["deployment.raftorch.io/revision"] = revision
            touched = True
        for name, replicas in plan.scale:
            self.replica_sets[name].spec.replicas = replicas
            self.replica_sets[name].metadata.generation += 1
            touched = True
        for name in plan.delete:
            assert not self.pods_of(name), f"deleting {name} which still has pods"
            del self.replica_sets[name]
            touched = True
        if plan.template_from_rollback is not None:
            self.deploy.spec.template.CopyFrom(plan.template_from_rollback)
        if plan.clear_rollback:
            self.deploy.spec.ClearField("rollback_to")
            self.deploy.metadata.generation += 1
            touched = True
        if plan.status != self.deploy.status:
            self.deploy.status.CopyFrom(plan.status)
            self._changed = True
        if touched:
            self._changed_now()

    def _run_replicaset(self, rs: objects_pb2.ReplicaSet) -> None:
        plan = plan_replicaset(rs, list(self.pods.values()), self._suffix)
        for name in plan.delete:
            del self.pods[name]
        if plan.delete:
            self._changed_now()
        for pod in plan.create:
            created = objects_pb2.Pod()
            created.CopyFrom(pod)
            created.metadata.uid = self._uid()
            self.clock += 1
            created.metadata.creation_timestamp = self.now()
            self.pods[created.metadata.name] = created
        if plan.create:
            self._changed_now()
        if plan.status != rs.status:
            rs.status.CopyFrom(plan.status)
            self._changed = True
        again = plan_replicaset(rs, list(self.pods.values()), self._suffix)
        assert again.is_noop(rs), f"replica set plan not idempotent: {again}"

    def _uid(self) -> str:
        self._uids += 1
        return f"uid-{self._uids}"

    def _suffix(self) -> str:
        self._suffixes += 1
        return f"p{self._suffixes:03d}"


def images(pods: Iterable[objects_pb2.Pod]) -> set[str]:
    return {image_of(p) for p in pods}
