"""The controller manager's scheduler step: pending pods placed by the pure scheduler, bound
in batches without waiting.

The step does not wait for its bindings. Like Kubernetes' scheduler it assumes each pod bound
in the cache at once (so the next pass counts its node's usage and does not place it again),
the watch's version replaces it when it comes, and a pod whose binding failed is put back as
the cache had it, to be scheduled again. The store re-checks each pod's revision when it
commits a binding (a pod bound or changed meanwhile is refused), so running ahead of the watch
never binds a pod twice. At most BINDINGS_IN_FLIGHT bindings are out at once.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.master.admission import DEFAULT_LEVEL, host_processes_allowed, level_of
from raftorch.master.cache import ObjectCache
from raftorch.master.constraints import HOSTNAME_KEY
from raftorch.master.events import EventRecorder
from raftorch.master.indexes import pod_request
from raftorch.master.metrics import MasterMetrics
from raftorch.master.placement import claim_names, claim_placement, nodes_of_claims, snapshot_from_index
from raftorch.master.queues import Queues
from raftorch.master.scheduler import Unschedulable, schedule
from raftorch.objects import kind_of, store_key
from raftorch.objects.events import WARNING, Ref

if TYPE_CHECKING:
    from raftorch.master.manager import Writer

log = structlog.get_logger("raftorch.controllers")

POD_KIND = kind_of("Pod")
BINDING_BATCH = 50
SCHEDULE_BATCH = 1000
# Bindings in flight at most: how far the scheduler runs ahead of the store.
BINDINGS_IN_FLIGHT = SCHEDULE_BATCH


class SchedulerStep:
    """Mixed into the ControllerManager, which provides these attributes."""

    registry: Writer
    term: int
    wall: Callable[[], float]
    queues: Queues
    events: EventRecorder
    metrics: MasterMetrics
    bound: int
    _unschedulable_reasons: dict[str, str]
    # Bindings written and not yet confirmed: pod uid -> (store key, the pod as it was, the bound
    # copy put in the cache). Outcomes arrive on other threads, through `_bind_outcomes`, and
    # are handled on the loop's thread.
    _assumed: dict[str, tuple[str, objects_pb2.Pod, objects_pb2.Pod]]
    _bind_outcomes: deque[tuple[str, bool]]

    def _schedule(self, cache: ObjectCache) -> list[Future[Message]]:
        self._settle_bindings(cache)
        if not self.queues.schedule:
            return []
        if len(self._assumed) >= BINDINGS_IN_FLIGHT:
            return []  # the next pass, once some are confirmed (the flag stays up)
        self.queues.schedule = False
        pending = [p for k in cache.index.pending if isinstance(p := cache.at("Pod", k), objects_pb2.Pod)]
        if not pending:
            return []
        nodes = [n for n in cache.items("Node") if isinstance(n, objects_pb2.Node)]
        snapshot = snapshot_from_index(nodes, cache.index)
        pending.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
        if len(pending) > SCHEDULE_BATCH:
            # Oldest first, a bounded number per pass: one pass over thousands of new pods held
            # the GIL for seconds; the rest go in the next pass, after the loop's pause.
            pending = pending[:SCHEDULE_BATCH]
            self.queues.schedule = True
        by_uid = {p.metadata.uid: p for p in pending}
        levels = _levels(cache)
        futures: list[Future[Message]] = []
        claims, claim_nodes = self._claims(cache, pending, futures)
        requests = []
        waiting: list[Unschedulable] = []
        claimed: set[tuple[str, str]] = set()  # unbound claims a pod of this pass takes
        for p in pending:
            req = pod_request(p, host_processes_allowed(levels.get(p.metadata.namespace, DEFAULT_LEVEL)))
            if claims:
                pinned, problem, unbound = claim_placement(p, claims, claim_nodes)
                if problem:
                    waiting.append(Unschedulable(p.metadata.namespace, p.metadata.name, p.metadata.uid, problem))
                    continue
                if unbound & claimed:
                    self.queues.schedule = True
                    continue  # its claim's node is decided by an earlier pod: next pass
                claimed |= unbound
                if pinned:
                    req = replace(req, node_selector={**req.node_selector, HOSTNAME_KEY: pinned})
            elif claim_names(p):
                waiting.append(Unschedulable(p.metadata.namespace, p.metadata.name, p.metadata.uid,
                                             f'persistentvolumeclaim "{claim_names(p)[0]}" not found'))
                continue
            requests.append(req)
        plan = schedule(snapshot, requests, self.wall())
        plan = replace(plan, unschedulable=(*plan.unschedulable, *waiting))
        bound: list[objects_pb2.Pod] = []
        for binding in plan.bindings:
            pod = objects_pb2.Pod()
            pod.CopyFrom(by_uid[binding.uid])
            pod.spec.node_name = binding.node
            self._unschedulable_reasons.pop(binding.uid, None)
            bound.append(pod)
            self.events.emit("default-scheduler", Ref.of(pod), "Scheduled",
                             f"Successfully assigned {pod.metadata.namespace}/{pod.metadata.name} to {binding.node}")
            for name in claim_names(pod):  # a claim binds where its first pod goes
                claim = claims.get((pod.metadata.namespace, name))
                if claim is not None and (pod.metadata.namespace, name) not in claim_nodes:
                    claim_nodes[(pod.metadata.namespace, name)] = binding.node
                    futures.append(self._bind_claim(claim, binding.node))
        # Bindings are committed in batches, one transaction each (the leader re-checks each
        # pod's revision as it commits; a pod changed meanwhile is bound on its own or planned again).
        # The pass does not wait for them: each pod is assumed bound in the cache at once (so the
        # next pass counts its node's usage and does not place it again), and put back as it was
        # if its binding fails. The store re-checks each pod's revision (a pod bound or changed
        # meanwhile is refused), so running ahead of the watch can never bind a pod twice.
        for pod in bound:
            key = store_key(POD_KIND, pod.metadata.namespace, pod.metadata.name)
            original = by_uid[pod.metadata.uid]
            cache.assume(POD_KIND, pod)
            self._assumed[pod.metadata.uid] = (key, original, pod)
        for start in range(0, len(bound), BINDING_BATCH):
            chunk = bound[start:start + BINDING_BATCH]
            for pod, written in zip(chunk, self.registry.update_many(chunk, fence_term=self.term), strict=True):
                written.add_done_callback(functools.partial(self._binding_done, pod.metadata.uid))
        self.bound += len(plan.bindings)
        attempts = self.metrics.scheduler_attempts
        attempts.labels("scheduled").inc(len(plan.bindings))
        attempts.labels("unschedulable").inc(len(plan.unschedulable))
        for item in plan.unschedulable:
            if self._unschedulable_reasons.get(item.uid) != item.reason:
                self._unschedulable_reasons[item.uid] = item.reason
                self.events.emit("default-scheduler", Ref.of(by_uid[item.uid]), "FailedScheduling", item.reason,
                                 WARNING)
        return futures

    def _binding_done(self, uid: str, written: Future[Message]) -> None:
        """On whatever thread settles the write: hand the outcome to the loop's thread."""
        error = written.exception()
        if error is not None:
            log.debug("binding_failed", uid=uid, error=str(error))
        self._bind_outcomes.append((uid, error is None))

    def _settle_bindings(self, cache: ObjectCache) -> None:
        """Forget confirmed bindings; put a pod whose binding failed back as the cache had it
        (unless a newer version arrived meanwhile), to be scheduled again."""
        failed = 0
        while self._bind_outcomes:
            uid, ok = self._bind_outcomes.popleft()
            entry = self._assumed.pop(uid, None)
            if entry is None or ok:
                continue
            failed += 1
            key, original, assumed = entry
            if cache.at("Pod", key) is assumed:
                cache.assume(POD_KIND, original)
            self.queues.schedule = True
        if failed:
            log.info("bindings_failed", count=failed, term=self.term)

    def _claims(self, cache: ObjectCache, pending: list[objects_pb2.Pod], futures: list[Future[Message]]
                ) -> tuple[dict[tuple[str, str], objects_pb2.PersistentVolumeClaim], dict[tuple[str, str], str]]:
        """The claims by (namespace, name), and the node of each that has one. Only when a pending pod
        uses a claim not bound yet are the running pods read: one of them may have been scheduled
        with it before the claim's binding was written (then that binding is written now)."""
        claims = {(c.metadata.namespace, c.metadata.name): c for c in cache.items("PersistentVolumeClaim")
                  if isinstance(c, objects_pb2.PersistentVolumeClaim)}
        if not claims:
            return claims, {}
        nodes = {key: c.status.node_name for key, c in claims.items() if c.status.node_name}
        wanted = {(p.metadata.namespace, n) for p in pending for n in claim_names(p)}
        if any(key in claims and key not in nodes for key in wanted):
            found = nodes_of_claims(claims.values(), (p for p in cache.items("Pod") if isinstance(p, objects_pb2.Pod)))
            for key, node in found.items():
                if key not in nodes:
                    futures.append(self._bind_claim(claims[key], node))
            nodes = found
        return claims, nodes

    def _bind_claim(self, claim: objects_pb2.PersistentVolumeClaim, node: str) -> Future[Message]:
        bound = objects_pb2.PersistentVolumeClaim()
        bound.CopyFrom(claim)
        bound.status.phase = "Bound"
        bound.status.node_name = node
        if "storage" in claim.spec.resources.requests:
            bound.status.capacity["storage"] = claim.spec.resources.requests["storage"]
        return self.registry.update(bound, status_only=True, fence_term=self.term)



def _levels(cache: ObjectCache) -> dict[str, str]:
    """Each namespace's pod-security level."""
    return {ns.metadata.name: level_of(ns.metadata.labels) for ns in cache.items("Namespace")
            if isinstance(ns, objects_pb2.Namespace)}
