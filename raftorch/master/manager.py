"""Leader-only work: the scheduler and the controllers, on one thread, fenced by term.

Each pass reads the leader's object cache, asks the pure planners what to change
(scheduler.schedule, controllers.plan_*, node_lifecycle.plan_lifecycle), and carries the
plans out through the registry. Every write carries the term it was decided in, so a deposed
leader's writes are rejected by the store. Passes are level-triggered: they run after any
change and every RESYNC seconds, re-reading state each time; a failed write is simply
planned again on the next pass.

Nothing stops the control plane silently: a step that raises is logged with its traceback and
retried after a back-off of its own while the other steps go on, and a loop that raises outside
the steps is restarted (with a fresh cache) after a back-off. Objects the cache cannot decode
are skipped and reported as Warning events in their namespace.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field, replace

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import AlreadyExists, RaftorchError
from raftorch.master.admission import (
    DEFAULT_LEVEL,
    HOST_PROCESS_RUNTIME,
    LEVEL_LABEL,
    PRIVILEGED,
    host_processes_allowed,
    level_of,
    pod_spec_violations,
)
from raftorch.master.backoff import Backoff
from raftorch.master.cache import BadObject, ObjectCache
from raftorch.master.constraints import HOSTNAME_KEY, constraints_of, taints_of
from raftorch.master.controllers import endpoints_equal, plan_deployment, plan_endpoints, plan_gc, plan_replicaset
from raftorch.master.heartbeats import HeartbeatTracker
from raftorch.master.node_lifecycle import LifecycleSettings, plan_lifecycle
from raftorch.master.registry import SYSTEM_NAMESPACE, Registry, undecodable_event_name
from raftorch.master.scheduler import NodeInfo, PodRequest, Snapshot, Unschedulable, schedule
from raftorch.master.workload_steps import OWNED_KINDS, OWNER_KINDS, WorkloadSteps
from raftorch.objects import (
    controller_of,
    format_time,
    kind_of,
    parse_count,
    parse_cpu,
    parse_memory,
    pod_is_terminal,
    set_condition,
)

CONFIG_ERROR = "CreateContainerConfigError"  # what an agent shows while a pod waits for its configuration
log = structlog.get_logger("raftorch.controllers")

RESYNC = 5.0
WRITE_WAIT = 10.0
MIRROR_ANNOTATION = "raftorch.io/mirror"


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    lifecycle_period: float = 0.5


def is_mirror(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.annotations.get(MIRROR_ANNOTATION) == "true"


class ControllerManager(WorkloadSteps):
    def __init__(self, registry: Registry, heartbeats: HeartbeatTracker, term: int,
                 settings: ManagerSettings | None = None,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.heartbeats = heartbeats
        self.term = term
        self.settings = settings or ManagerSettings()
        self.wall = wall
        self.mono = mono
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"controllers-term-{term}", daemon=True)
        self._unschedulable_reasons: dict[str, str] = {}
        self._config_problems: dict[str, str] = {}  # pod uid -> the config problem an event told
        self._create_failures: dict[str, str] = {}  # replica set uid -> why its pods may not be created
        self.bound = 0
        # Back-off of the whole loop, and of each step on its own.
        self.loop_backoff = Backoff(mono)
        self.step_backoff: dict[str, Backoff] = {}
        # Undecodable stored versions (key, revision) whose event is written or on its way.
        self._reported_bad: set[tuple[str, int]] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _leading(self) -> bool:
        replica = self.registry.replica
        return not self._stop.is_set() and replica.is_leader and replica.term == self.term

    def _run(self) -> None:
        """Supervise the control loop: restart it after a crash, until leadership ends."""
        log.info("controllers_started", term=self.term)
        while self._leading():
            try:
                self._control_loop()
            except Exception:
                delay = self.loop_backoff.failed()
                log.exception("controllers_crashed", term=self.term, restart_in=delay,
                              crashes=self.loop_backoff.failures)
                self._stop.wait(delay)
        log.info("controllers_stopped", term=self.term)

    def _control_loop(self) -> None:
        """Run passes until leadership ends or the cache fell behind (then it is rebuilt)."""
        cache = ObjectCache(self.registry.replica)
        try:
            self._wait(self.registry.ensure_namespaces(
                ["default", SYSTEM_NAMESPACE], fence_term=self.term,
                # The masters' and agents' own pods run on the host, as processes of their own.
                labels={SYSTEM_NAMESPACE: {LEVEL_LABEL: PRIVILEGED}}))
            last_full = 0.0
            last_lifecycle = 0.0
            dirty = True
            steps = (("scheduler", self._schedule), ("deployments", self._deployments),
                     ("replicasets", self._replicasets), ("endpoints", self._endpoints),
                     ("jobs", self._jobs), ("cronjobs", self._cronjobs), ("daemonsets", self._daemonsets),
                     ("taint evictions", self._taint_evictions), ("garbage collector", self._gc),
                     ("undecodable objects", self._undecodable), ("pod config events", self._config_events))
            owed: set[str] = set()  # steps that failed or were backing off: run when they may
            while self._leading():
                changed = cache.drain()
                if cache.overflowed:
                    log.warning("controllers_cache_overflowed", term=self.term)
                    return
                now = self.mono()
                if changed:
                    dirty = True
                if now - last_lifecycle >= self.settings.lifecycle_period:
                    last_lifecycle = now
                    self._pass("node lifecycle", self._node_lifecycle, cache)
                    self._pass("master pods", self._master_pods, cache)
                full = dirty or now - last_full >= RESYNC or self._timer_due()
                if full:
                    dirty = False
                    last_full = now
                for name, step in steps:
                    if not self._leading():
                        break
                    if not full and (name not in owed or not self.step_backoff[name].ready()):
                        continue
                    if self._pass(name, step, cache):
                        owed.discard(name)
                    else:
                        owed.add(name)
                    # What a step changed (pods a replica set created, ...) is work for the next pass.
                    if cache.drain():
                        dirty = True
                cache.wait(0.2)
        finally:
            cache.close()

    def _pass(self, name: str, step: Callable[[ObjectCache], list[Future[Message]]], cache: ObjectCache) -> bool:
        """Run one step; False when it did not run to the end (failed or backing off)."""
        backoff = self.step_backoff.setdefault(name, Backoff(self.mono))
        if not backoff.ready():
            return False
        try:
            futures = step(cache)
        except RaftorchError as err:
            log.warning("controller_pass_failed", controller=name, error=str(err))
            return True
        except Exception:
            delay = backoff.failed()
            log.exception("controller_pass_crashed", controller=name, term=self.term, retry_in=delay,
                          crashes=backoff.failures)
            return False
        self._wait(futures)
        return True

    def _wait(self, futures: list[Future[Message]]) -> None:
        if not futures:
            return
        deadline = self.mono() + WRITE_WAIT
        pending = set(futures)
        # In short steps: a deposed leader stops waiting as soon as it knows.
        while pending and self._leading() and self.mono() < deadline:
            _, pending = wait_all(pending, timeout=0.2)
        for f in futures:
            if f.done() and f.exception() is not None:
                log.debug("controller_write_failed", error=str(f.exception()))
        # The next pass must see these writes in the cache, or it would make them again.
        replica = self.registry.replica
        replica.hub.wait_dispatched(replica.machine.revision, 5.0)

    # -- node lifecycle ---------------------------------------------------------------------

    def _node_lifecycle(self, cache: ObjectCache) -> list[Future[Message]]:
        nodes = [n for n in cache.items("Node") if isinstance(n, objects_pb2.Node)]
        seen, since = self.heartbeats.snapshot()
        plan = plan_lifecycle(nodes, seen, since, self.mono(), self.wall(), self.settings.lifecycle)
        futures: list[Future[Message]] = []
        now_text = format_time(self.wall())
        by_name = {n.metadata.name: n for n in nodes}
        for change in plan.changes:
            node = objects_pb2.Node()
            node.CopyFrom(by_name[change.node])
            set_condition(node.status.conditions, "Ready", "True" if change.ready else "False",
                          change.reason, change.message, now_text)
            log.info("node_readiness", node=change.node, ready=change.ready, reason=change.reason)
            futures.append(self.registry.update(node, status_only=True, fence_term=self.term))
        if plan.evict:
            evicted = set(plan.evict)
            for pod in cache.items("Pod"):
                assert isinstance(pod, objects_pb2.Pod)
                if pod.spec.node_name in evicted and not is_mirror(pod):
                    log.info("pod_evicted", pod=f"{pod.metadata.namespace}/{pod.metadata.name}",
                             node=pod.spec.node_name)
                    futures.append(self.registry.delete(kind_of("Pod"), pod.metadata.namespace, pod.metadata.name,
                                                        pod.metadata.resource_version, fence_term=self.term))
        return futures

    # -- the masters as pods of raftorch-system ---------------------------------------------------

    def _master_pods(self, cache: ObjectCache) -> list[Future[Message]]:
        """Each master shows up in `get pods -A`, Ready while the leader has a Raft link to it."""
        replica = self.registry.replica
        with replica.reading() as machine:
            members = list(machine.members.values())
        connected = replica.connected_peers() | {replica.peer_addr}
        existing = {p.metadata.name: p for p in cache.items("Pod")
                    if isinstance(p, objects_pb2.Pod) and p.metadata.namespace == SYSTEM_NAMESPACE}
        futures: list[Future[Message]] = []
        now = format_time(self.wall())
        for member in members:
            name = f"master-{member.name}"
            ready = "True" if member.peer_addr in connected else "False"
            pod = existing.get(name)
            if pod is None:
                pod = objects_pb2.Pod(
                    metadata=objects_pb2.ObjectMeta(name=name, namespace=SYSTEM_NAMESPACE,
                                                    labels={"component": "raftorch-master"},
                                                    annotations={MIRROR_ANNOTATION: "true"}),
                    spec=objects_pb2.PodSpec(node_name=member.name, containers=[objects_pb2.Container(
                        name="master", image="raftorch-master", ports=[objects_pb2.ContainerPort(
                            name="grpc", container_port=int(member.client_addr.rpartition(":")[2] or 0))])]))
                futures.append(self.registry.create(pod, fence_term=self.term))
                continue
            current = next((c.status for c in pod.status.conditions if c.type == "Ready"), "")
            if current == ready and pod.status.phase == "Running":
                continue
            updated = objects_pb2.Pod()
            updated.CopyFrom(pod)
            host = member.client_addr.rpartition(":")[0]
            updated.status.phase = "Running"
            updated.status.host_ip = host
            updated.status.pod_ip = host
            updated.status.start_time = updated.status.start_time or now
            set_condition(updated.status.conditions, "Ready", ready, "RaftLink",
                          "connected to the leader" if ready == "True" else "no Raft link to the leader", now)
            del updated.status.container_statuses[:]
            updated.status.container_statuses.add(
                name="master", ready=ready == "True", image="raftorch-master",
                state=objects_pb2.ContainerState(state="running", started_at=updated.status.start_time))
            futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- scheduler -------------------------------------------------------------------------------

    def _schedule(self, cache: ObjectCache) -> list[Future[Message]]:
        pods = [p for p in cache.items("Pod") if isinstance(p, objects_pb2.Pod)]
        claims = {(c.metadata.namespace, c.metadata.name): c for c in cache.items("PersistentVolumeClaim")
                  if isinstance(c, objects_pb2.PersistentVolumeClaim)}
        claim_nodes = nodes_of_claims(claims.values(), pods)
        futures: list[Future[Message]] = [self._bind_claim(c, claim_nodes[key]) for key, c in claims.items()
                                          if not c.status.node_name and key in claim_nodes]
        pending = [p for p in pods if not p.spec.node_name and not p.metadata.deletion_timestamp
                   and not pod_is_terminal(p)]
        if not pending:
            return futures
        nodes = [n for n in cache.items("Node") if isinstance(n, objects_pb2.Node)]
        snapshot = build_snapshot(nodes, pods)
        pending.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
        by_uid = {p.metadata.uid: p for p in pending}
        levels = _levels(cache)
        requests = []
        waiting: list[Unschedulable] = []
        claimed: set[tuple[str, str]] = set()  # unbound claims a pod of this pass takes
        for p in pending:
            req = pod_request(p, host_processes_allowed(levels.get(p.metadata.namespace, DEFAULT_LEVEL)))
            pinned, problem, unbound = claim_placement(p, claims, claim_nodes)
            if problem:
                waiting.append(Unschedulable(p.metadata.namespace, p.metadata.name, p.metadata.uid, problem))
                continue
            if unbound & claimed:
                continue  # its claim's node is decided by an earlier pod: next pass
            claimed |= unbound
            if pinned:
                req = replace(req, node_selector={**req.node_selector, HOSTNAME_KEY: pinned})
            requests.append(req)
        plan = schedule(snapshot, requests, self.wall())
        plan = replace(plan, unschedulable=(*plan.unschedulable, *waiting))
        for binding in plan.bindings:
            pod = objects_pb2.Pod()
            pod.CopyFrom(by_uid[binding.uid])
            pod.spec.node_name = binding.node
            self._unschedulable_reasons.pop(binding.uid, None)
            futures.append(self.registry.update(pod, fence_term=self.term))
        self.bound += len(plan.bindings)
        for item in plan.unschedulable:
            if self._unschedulable_reasons.get(item.uid) != item.reason:
                self._unschedulable_reasons[item.uid] = item.reason
                futures.append(self._event(by_uid[item.uid], "FailedScheduling", item.reason, "Warning"))
        return futures

    def _bind_claim(self, claim: objects_pb2.PersistentVolumeClaim, node: str) -> Future[Message]:
        bound = objects_pb2.PersistentVolumeClaim()
        bound.CopyFrom(claim)
        bound.status.phase = "Bound"
        bound.status.node_name = node
        if "storage" in claim.spec.resources.requests:
            bound.status.capacity["storage"] = claim.spec.resources.requests["storage"]
        return self.registry.update(bound, status_only=True, fence_term=self.term)

    def _config_events(self, cache: ObjectCache) -> list[Future[Message]]:
        """A Warning event when a pod's containers wait for configuration (a missing ConfigMap,
        Secret or key: the agent's CreateContainerConfigError), once per pod and problem, as the
        kubelet's "Failed" event; agents may not write events themselves (node restriction)."""
        futures: list[Future[Message]] = []
        seen: set[str] = set()
        for pod in cache.items("Pod"):
            if not isinstance(pod, objects_pb2.Pod):
                continue
            problem = next((s.state.message for s in [*pod.status.init_container_statuses,
                                                      *pod.status.container_statuses]
                            if s.state.state == "waiting" and s.state.reason == CONFIG_ERROR), "")
            if not problem:
                continue
            seen.add(pod.metadata.uid)
            if self._config_problems.get(pod.metadata.uid) != problem:
                self._config_problems[pod.metadata.uid] = problem
                futures.append(self._event(pod, "Failed", f"Error: {problem}", "Warning",
                                           source=f"agent {pod.spec.node_name}"))
        for uid in set(self._config_problems) - seen:
            del self._config_problems[uid]
        return futures

    def _event(self, obj: objects_pb2.Pod | objects_pb2.ReplicaSet, reason: str, message: str, kind: str,
               source: str = "scheduler") -> Future[Message]:
        now = format_time(self.wall())
        meta = obj.metadata
        event = objects_pb2.Event(
            metadata=objects_pb2.ObjectMeta(name=f"{meta.name}.{secrets.token_hex(4)}", namespace=meta.namespace),
            involved_object=objects_pb2.ObjectReference(kind=obj.DESCRIPTOR.name, namespace=meta.namespace,
                                                        name=meta.name, uid=meta.uid),
            reason=reason, message=message, type=kind, count=1, first_timestamp=now, last_timestamp=now,
            source=source)
        return self.registry.create(event, fence_term=self.term)

    # -- objects the cache cannot decode ---------------------------------------------------------

    def _undecodable(self, cache: ObjectCache) -> list[Future[Message]]:
        """One Warning event per stored version that cannot be decoded, in its namespace."""
        futures: list[Future[Message]] = []
        for key, bad in list(cache.undecodable.items()):
            if (key, bad.revision) in self._reported_bad:
                continue
            self._reported_bad.add((key, bad.revision))
            written = self.registry.create(self._bad_object_event(cache, key, bad), fence_term=self.term)
            written.add_done_callback(functools.partial(self._bad_event_written, item=(key, bad.revision)))
            futures.append(written)
        return futures

    def _bad_object_event(self, cache: ObjectCache, key: str, bad: BadObject) -> objects_pb2.Event:
        namespaces = {ns.metadata.name for ns in cache.items("Namespace")}  # type: ignore[attr-defined]
        # An object of a namespace that does not exist, or of no namespace, reports in default.
        namespace = bad.namespace if bad.namespace in namespaces else "default"
        now = format_time(self.wall())
        how = f" -n {bad.namespace}" if bad.namespace else ""
        return objects_pb2.Event(
            metadata=objects_pb2.ObjectMeta(name=undecodable_event_name(key, bad.revision), namespace=namespace),
            involved_object=objects_pb2.ObjectReference(kind=bad.kind.name, namespace=bad.namespace, name=bad.name),
            reason="Undecodable", type="Warning", count=1, first_timestamp=now, last_timestamp=now,
            source="controller-manager",
            message=(f"{key} (revision {bad.revision}) cannot be decoded: {bad.problem}. Lists, watches and "
                     f"controllers skip it; remove it with: raftctl delete {bad.kind.name.lower()} {bad.name}{how}"))

    def _bad_event_written(self, written: Future[Message], *, item: tuple[str, int]) -> None:
        error = written.exception()
        if error is not None and not isinstance(error, AlreadyExists):
            self._reported_bad.discard(item)  # tried again on the next pass

    # -- deployments and replica sets ----------------------------------------------------------

    def _deployments(self, cache: ObjectCache) -> list[Future[Message]]:
        rs_by_owner: dict[str, list[objects_pb2.ReplicaSet]] = defaultdict(list)
        for rs in cache.items("ReplicaSet"):
            assert isinstance(rs, objects_pb2.ReplicaSet)
            ref = controller_of(rs.metadata)
            if ref is not None:
                rs_by_owner[ref.uid].append(rs)
        pods_by_owner = _pods_by_owner(cache)
        futures: list[Future[Message]] = []
        rs_kind = kind_of("ReplicaSet")
        for deploy in cache.items("Deployment"):
            assert isinstance(deploy, objects_pb2.Deployment)
            if deploy.metadata.deletion_timestamp:
                continue
            owned = rs_by_owner.get(deploy.metadata.uid, [])
            pods = [p for rs in owned for p in pods_by_owner.get(rs.metadata.uid, [])]
            plan = plan_deployment(deploy, owned, pods, now=format_time(self.wall()))
            if plan.template_from_rollback is not None or plan.clear_rollback:
                updated = objects_pb2.Deployment()
                updated.CopyFrom(deploy)
                if plan.template_from_rollback is not None:
                    updated.spec.template.CopyFrom(plan.template_from_rollback)
                updated.spec.ClearField("rollback_to")
                rolled = self.registry.update(updated, fence_term=self.term)
                futures.append(rolled)
                # The rollback's outcome condition goes in once the spec is written.
                rolled.add_done_callback(functools.partial(self._rollback_status, status=plan.status))
                continue
            by_name = {rs.metadata.name: rs for rs in owned}
            if plan.create is not None:
                futures.append(self.registry.create(plan.create, fence_term=self.term))
            changes: dict[str, objects_pb2.ReplicaSet] = {}
            for name, replicas in plan.scale:
                rs = changes.setdefault(name, _copy_rs(by_name[name]))
                rs.spec.replicas = replicas
            for name, revision in plan.update_revision:
                rs = changes.setdefault(name, _copy_rs(by_name[name]))
                rs.metadata.annotations["deployment.raftorch.io/revision"] = revision
            for rs in changes.values():
                futures.append(self.registry.update(rs, fence_term=self.term))
            for name in plan.delete:
                futures.append(self.registry.delete(rs_kind, deploy.metadata.namespace, name,
                                                    by_name[name].metadata.resource_version, fence_term=self.term))
            if plan.status.SerializeToString(deterministic=True) != \
                    deploy.status.SerializeToString(deterministic=True):
                updated = objects_pb2.Deployment()
                updated.CopyFrom(deploy)
                updated.status.CopyFrom(plan.status)
                futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    def _rollback_status(self, written: Future[Message], *, status: objects_pb2.DeploymentStatus) -> None:
        if written.exception() is not None:
            return
        deploy = written.result()
        assert isinstance(deploy, objects_pb2.Deployment)
        deploy.status.CopyFrom(status)
        self.registry.update(deploy, status_only=True, fence_term=self.term)

    def _replicasets(self, cache: ObjectCache) -> list[Future[Message]]:
        pods_by_owner = _pods_by_owner(cache)
        futures: list[Future[Message]] = []
        pod_kind = kind_of("Pod")
        levels = _levels(cache)
        for rs in cache.items("ReplicaSet"):
            assert isinstance(rs, objects_pb2.ReplicaSet)
            pods = pods_by_owner.get(rs.metadata.uid, [])
            plan = plan_replicaset(rs, pods, lambda: secrets.token_hex(3)[:5])
            if plan.create:
                # The namespace's level may have been raised since the template was admitted.
                level = levels.get(rs.metadata.namespace, DEFAULT_LEVEL)
                violations = pod_spec_violations(rs.spec.template.spec, level, "spec.template.spec")
                if violations:
                    message = (f'pods of replicaset "{rs.metadata.name}" are forbidden: violates pod-security '
                               f'level "{level}": ' + ", ".join(violations))
                    if self._create_failures.get(rs.metadata.uid) != message:
                        self._create_failures[rs.metadata.uid] = message
                        futures.append(self._event(rs, "FailedCreate", message, "Warning", "replicaset-controller"))
                    plan = replace(plan, create=())
                else:
                    self._create_failures.pop(rs.metadata.uid, None)
            for pod in plan.create:
                futures.append(self.registry.create(pod, fence_term=self.term))
            by_name = {p.metadata.name: p for p in pods}
            for name in plan.delete:
                futures.append(self.registry.delete(pod_kind, rs.metadata.namespace, name,
                                                    by_name[name].metadata.resource_version, fence_term=self.term))
            if plan.status.SerializeToString(deterministic=True) != rs.status.SerializeToString(deterministic=True):
                updated = _copy_rs(rs)
                updated.status.CopyFrom(plan.status)
                futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- endpoints and garbage collection ------------------------------------------------------

    def _endpoints(self, cache: ObjectCache) -> list[Future[Message]]:
        pods_by_ns: dict[str, list[objects_pb2.Pod]] = defaultdict(list)
        for pod in cache.items("Pod"):
            assert isinstance(pod, objects_pb2.Pod)
            pods_by_ns[pod.metadata.namespace].append(pod)
        stored = {(e.metadata.namespace, e.metadata.name): e for e in cache.items("Endpoints")
                  if isinstance(e, objects_pb2.Endpoints)}
        futures: list[Future[Message]] = []
        wanted: set[tuple[str, str]] = set()
        for svc in cache.items("Service"):
            assert isinstance(svc, objects_pb2.Service)
            if not svc.spec.selector:
                continue
            key = (svc.metadata.namespace, svc.metadata.name)
            wanted.add(key)
            desired = plan_endpoints(svc, pods_by_ns.get(svc.metadata.namespace, []))
            current = stored.get(key)
            if current is None:
                futures.append(self.registry.create(desired, fence_term=self.term))
            elif not endpoints_equal(current, desired):
                desired.metadata.resource_version = current.metadata.resource_version
                futures.append(self.registry.update(desired, fence_term=self.term))
        ep_kind = kind_of("Endpoints")
        for key, ep in stored.items():
            if key not in wanted:
                futures.append(self.registry.delete(ep_kind, key[0], key[1], ep.metadata.resource_version,
                                                    fence_term=self.term))
        return futures

    def _gc(self, cache: ObjectCache) -> list[Future[Message]]:
        live: set[str] = set()
        candidates: list[tuple[str, objects_pb2.ObjectMeta]] = []
        for kind_name in ("Deployment", "ReplicaSet", "Pod", "Service", "Node", *OWNER_KINDS):
            for obj in cache.items(kind_name):
                meta: objects_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
                live.add(meta.uid)
                if kind_name in ("ReplicaSet", "Pod", *OWNED_KINDS) and meta.owner_references:
                    candidates.append((kind_name, meta))
        futures: list[Future[Message]] = []
        for kind_name, namespace, name in plan_gc(candidates, live):
            futures.append(self.registry.delete(kind_of(kind_name), namespace, name, fence_term=self.term))
        return futures


def _copy_rs(rs: objects_pb2.ReplicaSet) -> objects_pb2.ReplicaSet:
    out = objects_pb2.ReplicaSet()
    out.CopyFrom(rs)
    return out


def _levels(cache: ObjectCache) -> dict[str, str]:
    """Each namespace's pod-security level."""
    return {ns.metadata.name: level_of(ns.metadata.labels) for ns in cache.items("Namespace")
            if isinstance(ns, objects_pb2.Namespace)}


def _pods_by_owner(cache: ObjectCache) -> dict[str, list[objects_pb2.Pod]]:
    out: dict[str, list[objects_pb2.Pod]] = defaultdict(list)
    for pod in cache.items("Pod"):
        assert isinstance(pod, objects_pb2.Pod)
        ref = controller_of(pod.metadata)
        if ref is not None:
            out[ref.uid].append(pod)
    return out


def pod_request(pod: objects_pb2.Pod, host_processes_allowed: bool = False) -> PodRequest:
    cpu = memory = 0
    ports: set[tuple[str, int]] = set()
    for c in pod.spec.containers:
        cpu += parse_cpu(c.resources.requests["cpu"]) if "cpu" in c.resources.requests else 0
        memory += parse_memory(c.resources.requests["memory"]) if "memory" in c.resources.requests else 0
        ports.update((p.protocol or "TCP", p.host_port) for p in c.ports if p.host_port)
    ref = controller_of(pod.metadata)
    return PodRequest(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, cpu, memory,
                      dict(pod.spec.node_selector), frozenset(ports), ref.uid if ref else "",
                      labels=dict(pod.metadata.labels), constraints=constraints_of(pod.spec),
                      host_processes_allowed=host_processes_allowed)


def build_snapshot(nodes: list[objects_pb2.Node], pods: list[objects_pb2.Pod]) -> Snapshot:
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    ports: dict[str, set[tuple[str, int]]] = defaultdict(set)
    owners: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    labels: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    for pod in pods:
        if not pod.spec.node_name or pod_is_terminal(pod) or is_mirror(pod):
            continue
        req = pod_request(pod)
        u = used[pod.spec.node_name]
        u[0] += req.cpu
        u[1] += req.memory
        u[2] += 1
        ports[pod.spec.node_name].update(req.host_ports)
        if req.owner_uid:
            owners[pod.spec.node_name][req.owner_uid] += 1
        if pod.metadata.labels:
            labels[pod.spec.node_name].append((pod.metadata.namespace, dict(pod.metadata.labels)))
    infos = []
    for node in nodes:
        name = node.metadata.name
        alloc = node.status.allocatable or node.status.capacity
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        u = used[name]
        infos.append(NodeInfo(
            name=name, ready=ready, unschedulable=node.spec.unschedulable, labels=dict(node.metadata.labels),
            allocatable_cpu=parse_cpu(alloc.get("cpu", "0")), allocatable_memory=parse_memory(alloc.get("memory", "0")),
            allocatable_pods=parse_count(alloc.get("pods", "110")), used_cpu=u[0], used_memory=u[1], pod_count=u[2],
            host_ports=frozenset(ports[name]), owner_pods=dict(owners[name]),
            host_processes=node.status.runtime == HOST_PROCESS_RUNTIME, taints=taints_of(node),
            pod_labels=tuple(labels[name])))
    return Snapshot(tuple(infos))


def claim_names(pod: objects_pb2.Pod) -> list[str]:
    return [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.HasField("persistent_volume_claim")]


def nodes_of_claims(claims: Iterable[objects_pb2.PersistentVolumeClaim],
                    pods: Iterable[objects_pb2.Pod]) -> dict[tuple[str, str], str]:
    """The node of each claim: where it is bound, else where a pod using it is (that pod was
    scheduled before the claim's binding was written)."""
    out = {(c.metadata.namespace, c.metadata.name): c.status.node_name for c in claims if c.status.node_name}
    for pod in pods:
        if pod.spec.node_name and not pod_is_terminal(pod):
            for name in claim_names(pod):
                out.setdefault((pod.metadata.namespace, name), pod.spec.node_name)
    return out


def claim_placement(pod: objects_pb2.Pod, claims: Mapping[tuple[str, str], objects_pb2.PersistentVolumeClaim],
                    claim_nodes: Mapping[tuple[str, str], str]) -> tuple[str, str, set[tuple[str, str]]]:
    """(the node the pod's claims pin it to or "", why it cannot be placed or "", its unbound claims)."""
    pinned: set[str] = set()
    unbound: set[tuple[str, str]] = set()
    for name in claim_names(pod):
        key = (pod.metadata.namespace, name)
        if key not in claims:
            return "", f'persistentvolumeclaim "{name}" not found', unbound
        if key in claim_nodes:
            pinned.add(claim_nodes[key])
        else:
            unbound.add(key)
    if len(pinned) > 1:
        return "", f"its claims are on different nodes: {', '.join(sorted(pinned))}", unbound
    return next(iter(pinned), ""), "", unbound
