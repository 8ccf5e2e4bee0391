"""The controller manager's steps for jobs, cron jobs, daemon sets and NoExecute taints.

Thin executors: each reads the leader's cache, asks a pure planner (controllers.plan_job, ...)
what to change and writes it through the registry, fenced by term like every controller write.
Time-driven work (deadlines, TTLs, schedules, toleration seconds) asks for a pass at a given
wall-clock time with `_wake`; the manager runs one when `_timer_due` says so.
"""

from __future__ import annotations

import math
import secrets
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.master.admission import (
    DEFAULT_LEVEL,
    HOST_PROCESS_RUNTIME,
    host_processes_allowed,
    level_of,
    pod_spec_violations,
)
from raftorch.master.cache import ObjectCache
from raftorch.master.constraints import NO_EXECUTE, taints_of
from raftorch.master.controllers import (
    DaemonNode,
    plan_cronjob,
    plan_daemonset,
    plan_job,
    plan_taint_evictions,
)
from raftorch.master.controllers._util import FAILED
from raftorch.master.controllers.job import COMPLETE
from raftorch.master.events import EventRecorder
from raftorch.objects import kind_of
from raftorch.objects.events import NORMAL, WARNING, Ref

if TYPE_CHECKING:
    from raftorch.master.manager import Writer

log = structlog.get_logger("raftorch.controllers")

# The kinds whose objects own others, and the kinds that have owners, for the garbage collector.
OWNER_KINDS = ("Job", "CronJob", "DaemonSet")
OWNED_KINDS = ("Job",)


def _suffix() -> str:
    return secrets.token_hex(3)[:5]


def _owned(cache: ObjectCache, kind: str, owners: list[Message]) -> dict[str, list[Message]]:
    """The `kind` objects each owner controls, by owner uid (from the cache's index: no scan of
    every pod when there are no jobs or daemon sets)."""
    out: dict[str, list[Message]] = defaultdict(list)
    for owner in owners:
        uid = owner.metadata.uid  # type: ignore[attr-defined]
        for _, key in cache.index.children(uid, kind):
            obj = cache.at(kind, key)
            if obj is not None:
                out[uid].append(obj)
    return out


def _changed(old: Message, new: Message) -> bool:
    return old.SerializeToString(deterministic=True) != new.SerializeToString(deterministic=True)


def _finished(status: objects_pb2.JobStatus) -> objects_pb2.Condition | None:
    return next((c for c in status.conditions if c.type in (COMPLETE, FAILED) and c.status == "True"), None)


def _level(cache: ObjectCache, namespace: str) -> str:
    for ns in cache.items("Namespace"):
        if isinstance(ns, objects_pb2.Namespace) and ns.metadata.name == namespace:
            return level_of(ns.metadata.labels)
    return DEFAULT_LEVEL


def _forbidden(cache: ObjectCache, kind: str, meta: objects_pb2.ObjectMeta, spec: objects_pb2.PodSpec) -> bool:
    """The namespace's level was raised since the template was admitted: create no pods that break it."""
    violations = pod_spec_violations(spec, _level(cache, meta.namespace), "spec.template.spec")
    if violations:
        log.warning("pods_forbidden", kind=kind, name=f"{meta.namespace}/{meta.name}", violations=violations)
    return bool(violations)


class WorkloadSteps:
    """Mixed into the ControllerManager, which provides these attributes."""

    registry: Writer
    term: int
    wall: Callable[[], float]
    events: EventRecorder
    _wake_at: float = math.inf
    # cron job uid -> the last skip recorded as an event: a skip is re-planned on every pass
    # until the next schedule, and must not make an event write each time.
    _cron_skips: dict[str, str]

    def _pods_created_and_deleted(self, source: str, owner: objects_pb2.Job | objects_pb2.DaemonSet,
                                  created: tuple[objects_pb2.Pod, ...], deleted: tuple[str, ...]) -> None:
        ref = Ref.of(owner)
        for pod in created:
            self.events.emit(source, ref, "SuccessfulCreate", f"Created pod: {pod.metadata.name}")
        for name in deleted:
            self.events.emit(source, ref, "SuccessfulDelete", f"Deleted pod: {name}")

    def _wake(self, when: float | None) -> None:
        if when is not None and when < self._wake_at:
            self._wake_at = when

    def _timer_due(self) -> bool:
        if self.wall() < self._wake_at:
            return False
        self._wake_at = math.inf  # the pass about to run asks again for what it still needs
        return True

    # -- jobs ------------------------------------------------------------------------------------

    def _jobs(self, cache: ObjectCache) -> list[Future[Message]]:
        jobs = list(cache.items("Job"))
        pods_by_owner = _owned(cache, "Pod", jobs)
        futures: list[Future[Message]] = []
        pod_kind, job_kind = kind_of("Pod"), kind_of("Job")
        now = self.wall()
        for job in jobs:
            assert isinstance(job, objects_pb2.Job)
            pods = [p for p in pods_by_owner.get(job.metadata.uid, []) if isinstance(p, objects_pb2.Pod)]
            plan = plan_job(job, pods, now, _suffix)
            self._wake(plan.wake_at)
            if plan.create and _forbidden(cache, "job", job.metadata, job.spec.template.spec):
                plan = replace(plan, create=())
            if plan.delete_job:
                log.info("job_expired", job=f"{job.metadata.namespace}/{job.metadata.name}")
                futures.append(self.registry.delete(job_kind, job.metadata.namespace, job.metadata.name,
                                                    job.metadata.resource_version, fence_term=self.term))
                continue
            for pod in plan.create:
                futures.append(self.registry.create(pod, fence_term=self.term))
            by_name = {p.metadata.name: p for p in pods}
            for name in plan.delete:
                futures.append(self.registry.delete(pod_kind, job.metadata.namespace, name,
                                                    by_name[name].metadata.resource_version, fence_term=self.term))
            self._pods_created_and_deleted("job-controller", job, plan.create, plan.delete)
            done = _finished(plan.status)
            if done is not None and _finished(job.status) is None:
                if done.type == COMPLETE:
                    self.events.emit("job-controller", Ref.of(job), "Completed", "Job completed")
                else:
                    self.events.emit("job-controller", Ref.of(job), done.reason, done.message, WARNING)
            if _changed(job.status, plan.status):
                updated = objects_pb2.Job()
                updated.CopyFrom(job)
                updated.status.CopyFrom(plan.status)
                futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- cron jobs -------------------------------------------------------------------------------

    def _cronjobs(self, cache: ObjectCache) -> list[Future[Message]]:
        crons = list(cache.items("CronJob"))
        alive = {c.metadata.uid for c in crons if isinstance(c, objects_pb2.CronJob)}
        for uid in [u for u in self._cron_skips if u not in alive]:
            del self._cron_skips[uid]
        jobs_by_owner = _owned(cache, "Job", crons)
        futures: list[Future[Message]] = []
        job_kind = kind_of("Job")
        now = self.wall()
        for cron in crons:
            assert isinstance(cron, objects_pb2.CronJob)
            jobs = [j for j in jobs_by_owner.get(cron.metadata.uid, []) if isinstance(j, objects_pb2.Job)]
            plan = plan_cronjob(cron, jobs, now)
            self._wake(plan.wake_at)
            where = f"{cron.metadata.namespace}/{cron.metadata.name}"
            ref = Ref.of(cron)
            if plan.skipped and self._cron_skips.get(cron.metadata.uid) != plan.skipped:
                self._cron_skips[cron.metadata.uid] = plan.skipped
                log.info("cronjob_skipped", cronjob=where, reason=plan.skipped)
                self.events.emit("cronjob-controller", ref, plan.skipped_reason, plan.skipped,
                                 WARNING if plan.skipped_reason == "MissSchedule" else NORMAL)
            by_name = {j.metadata.name: j for j in jobs}
            for name in plan.delete:
                futures.append(self.registry.delete(job_kind, cron.metadata.namespace, name,
                                                    by_name[name].metadata.resource_version, fence_term=self.term))
                self.events.emit("cronjob-controller", ref, "SuccessfulDelete", f"Deleted job {name}")
            if plan.create is not None:
                log.info("cronjob_run", cronjob=where, job=plan.create.metadata.name)
                self.events.emit("cronjob-controller", ref, "SuccessfulCreate",
                                 f"Created job {plan.create.metadata.name}")
                # The job first: if this leader dies before the status write, the next one finds
                # the job by its name and only records the time.
                futures.append(self.registry.create(plan.create, fence_term=self.term))
            if _changed(cron.status, plan.status):
                updated = objects_pb2.CronJob()
                updated.CopyFrom(cron)
                updated.status.CopyFrom(plan.status)
                futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- daemon sets -----------------------------------------------------------------------------

    def _daemonsets(self, cache: ObjectCache) -> list[Future[Message]]:
        daemonsets = list(cache.items("DaemonSet"))
        if not daemonsets:
            return []
        nodes = [DaemonNode(n.metadata.name, dict(n.metadata.labels),
                            any(c.type == "Ready" and c.status == "True" for c in n.status.conditions),
                            n.spec.unschedulable, taints_of(n))
                 for n in cache.items("Node") if isinstance(n, objects_pb2.Node)]
        process_nodes = {n.metadata.name for n in cache.items("Node")
                         if isinstance(n, objects_pb2.Node) and n.status.runtime == HOST_PROCESS_RUNTIME}
        pods_by_owner = _owned(cache, "Pod", daemonsets)
        futures: list[Future[Message]] = []
        pod_kind = kind_of("Pod")
        now = self.wall()
        for ds in daemonsets:
            assert isinstance(ds, objects_pb2.DaemonSet)
            pods = [p for p in pods_by_owner.get(ds.metadata.uid, []) if isinstance(p, objects_pb2.Pod)]
            level = _level(cache, ds.metadata.namespace)
            # Nodes that run pods as host processes take only pods of namespaces that allow it.
            fit = nodes if host_processes_allowed(level) else [n for n in nodes if n.name not in process_nodes]
            plan = plan_daemonset(ds, fit, pods, now, _suffix)
            if plan.create and _forbidden(cache, "daemonset", ds.metadata, ds.spec.template.spec):
                plan = replace(plan, create=())
            if ds.spec.min_ready_seconds:
                # Availability waits on time: look again once the newest pods may count.
                self._wake(now + ds.spec.min_ready_seconds)
            for pod in plan.create:
                futures.append(self.registry.create(pod, fence_term=self.term))
            by_name = {p.metadata.name: p for p in pods}
            for name in plan.delete:
                futures.append(self.registry.delete(pod_kind, ds.metadata.namespace, name,
                                                    by_name[name].metadata.resource_version, fence_term=self.term))
            self._pods_created_and_deleted("daemonset-controller", ds, plan.create, plan.delete)
            if _changed(ds.status, plan.status):
                updated = objects_pb2.DaemonSet()
                updated.CopyFrom(ds)
                updated.status.CopyFrom(plan.status)
                futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- NoExecute taints -------------------------------------------------------------------------

    def _taint_evictions(self, cache: ObjectCache) -> list[Future[Message]]:
        taints = {}
        for node in cache.items("Node"):
            assert isinstance(node, objects_pb2.Node)
            if any(t.effect == NO_EXECUTE for t in node.spec.taints):
                taints[node.metadata.name] = taints_of(node)
        if not taints:
            return []
        pods = [p for p in cache.items("Pod") if isinstance(p, objects_pb2.Pod) and p.spec.node_name in taints]
        plan = plan_taint_evictions(taints, pods, self.wall())
        self._wake(plan.wake_at)
        futures: list[Future[Message]] = []
        pod_kind = kind_of("Pod")
        for pod in plan.evict:
            log.info("pod_evicted", pod=f"{pod.metadata.namespace}/{pod.metadata.name}", node=pod.spec.node_name,
                     reason="NoExecute taint")
            futures.append(self.registry.delete(pod_kind, pod.metadata.namespace, pod.metadata.name,
                                                pod.metadata.resource_version, fence_term=self.term))
        return futures
