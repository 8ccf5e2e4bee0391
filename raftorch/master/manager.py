"""Leader-only work: the scheduler and the controllers, on one thread, fenced by term.

Each pass reads the leader's object cache, asks the pure planners what to change
(scheduler.schedule, controllers.plan_*, node_lifecycle.plan_lifecycle), and carries the
plans out through the registry. Every write carries the term it was decided in, so a deposed
leader's writes are rejected by the store. Passes run after any change and every RESYNC
seconds.

The deployment, replica set, endpoints and garbage collection steps are incremental: each has
a keyed work queue (raftorch.master.workqueue) filled from the cache's changes through its
indexes (a pod's change queues its replica set, that one's deployment and the services whose
selector picks it), and plans only the keys queued, reading fresh state for each. A key whose
write fails is queued again after a back-off of its own; every key is queued again every
RESYNC_ALL seconds, so the loops stay level-triggered. The scheduler runs over the pending
pods only, with node usage kept by the cache's index; it does not wait for its bindings (it
assumes them in the cache until the watch confirms them, as Kubernetes' scheduler does), and it
also runs while the other steps wait for their writes.

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import AlreadyExists, Conflict, RaftorchError, Unavailable, UnknownOutcome
from raftorch.master.admission import (
    DEFAULT_LEVEL,
    LEVEL_LABEL,
    PRIVILEGED,
    level_of,
    pod_spec_violations,
)
from raftorch.master.backoff import Backoff
from raftorch.master.cache import REGISTRY_PREFIX, BadObject, ObjectCache
from raftorch.master.controllers import endpoints_equal, plan_deployment, plan_endpoints, plan_gc, plan_replicaset
from raftorch.master.events import DEFAULT_TTL as DEFAULT_EVENT_TTL
from raftorch.master.events import EventRecorder, EventWriter
from raftorch.master.heartbeats import HeartbeatTracker
from raftorch.master.indexes import pod_request
from raftorch.master.metrics import MasterMetrics
from raftorch.master.node_lifecycle import LifecycleSettings, plan_lifecycle
from raftorch.master.queues import KindKey, NameKey, Queues
from raftorch.master.registry import SYSTEM_NAMESPACE, Registry
from raftorch.master.scheduler_step import SchedulerStep
from raftorch.master.stored import undecodable_event_name
from raftorch.master.workload_steps import WorkloadSteps
from raftorch.master.workqueue import WorkQueue
from raftorch.objects import (
    CREATE_CONTAINER_CONFIG_ERROR,
    MIRROR_ANNOTATION,
    Kind,
    format_time,
    is_mirror,
    kind_of,
    set_condition,
    store_prefix,
)
from raftorch.objects.events import NORMAL, WARNING, Ref
from raftorch.store.replica import RaftReplica

log = structlog.get_logger("raftorch.controllers")

RESYNC = 5.0
RESYNC_ALL = 30.0
# The longest pause after a pass (as long as the CPU time the pass took): the control loop takes at
# most about half of the process's time, leaving the rest to Raft and the API.
PASS_PAUSE_CAP = 0.5
WRITE_WAIT = 10.0
WAIT_STEP = 0.1
SETTLE_WAIT = 5.0
# A step whose writes outlast both waits is not run again until they are done and in the cache,
# or this long has passed: planned from a cache without them, it would make them again (a
# replica set's pods twice over, seen with a leader slowed down by a profiler). Kubernetes'
# controllers keep such "expectations" for five minutes too.
OUTSTANDING_FOR = 300.0
# Write failures worth trying again after a back-off; others (bad input) are terminal.
RETRIED = (Conflict, Unavailable, UnknownOutcome)


__all__ = ["ALL_STEPS", "LOOP_STEPS", "MASTER_PREFIXES", "MASTER_STEPS", "MIRROR_ANNOTATION", "ControllerManager",
           "Link", "ManagerSettings", "ReplicaLink", "Writer", "is_mirror", "pod_request"]


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    lifecycle_period: float = 0.5
    # Pause after a pass as long as it took: only where the loop shares a process with Raft.
    pass_pause: bool = True
    # Events older than this many seconds are deleted.
    event_ttl: float = DEFAULT_EVENT_TTL
    record_events: bool = True


# The steps, by where they run. Node lifecycle needs the leader's in-memory heartbeats, the
# master pods its Raft links, and undecodable objects are seen only in the store itself: those
# stay with the master; the rest read and write through the API as well as in-process. (With
# the controller-manager process the master's cache holds nodes and raftorch-system pods only,
# so only those get an Undecodable event; lists and watches skip and log the others.)
MASTER_STEPS = frozenset({"node lifecycle", "master pods", "undecodable objects"})
LOOP_STEPS = frozenset({"scheduler", "deployments", "replicasets", "endpoints", "jobs", "cronjobs", "daemonsets",
                        "taint evictions", "garbage collector", "pod config events"})
ALL_STEPS = MASTER_STEPS | LOOP_STEPS
# What the master steps read: nodes, and the pods of raftorch-system (the masters' own). Pods on
# a node being evicted are listed from the store when needed (seldom).
MASTER_PREFIXES = (store_prefix(kind_of("Node"), None), store_prefix(kind_of("Pod"), SYSTEM_NAMESPACE))


class Writer(Protocol):
    """The writes the controllers make: the registry in-process, the Resources API from the
    controller-manager process. (Events also read back what they fold repeats into.)"""

    def get(self, kind: Kind, namespace: str, name: str) -> Message: ...

    def list_kind(self, kind: Kind, namespace: str = "") -> tuple[list[Message], int]: ...

    def create(self, msg: Message, request_id: str = "", fence_term: int = 0) -> Future[Message]: ...

    def update(self, msg: Message, status_only: bool = False, request_id: str = "",
               fence_term: int = 0) -> Future[Message]: ...

    def update_many(self, msgs: Sequence[Message], status_only: bool = False,
                    fence_term: int = 0) -> list[Future[Message]]: ...

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: int = 0,
               request_id: str = "", fence_term: int = 0) -> Future[Message]: ...

    def ensure_namespaces(self, names: Iterable[str], fence_term: int = 0,
                          labels: Mapping[str, Mapping[str, str]] | None = None) -> list[Future[Message]]: ...


class Link(Protocol):
    """Where the control loop reads from and how it knows it may still act."""

    def leading(self, term: int) -> bool: ...

    def open_cache(self) -> ObjectCache: ...

    def settle(self, cache: ObjectCache, futures: list[Future[Message]], timeout: float) -> bool:
        """Wait up to `timeout` for the cache to see the writes of `futures`; True once it has."""


class ReplicaLink:
    """The in-process link: the local replica's state and watch hub. `prefixes`: what the
    cache keeps (MASTER_PREFIXES when only the master steps run here)."""

    def __init__(self, replica: RaftReplica, prefixes: tuple[str, ...] = (REGISTRY_PREFIX,)) -> None:
        self.replica = replica
        self.prefixes = prefixes
        self._settling: list[Future[Message]] | None = None
        self._target = 0

    def leading(self, term: int) -> bool:
        return self.replica.is_leader and self.replica.term == term

    def open_cache(self) -> ObjectCache:
        return ObjectCache(self.replica, self.prefixes)

    def settle(self, cache: ObjectCache, futures: list[Future[Message]], timeout: float) -> bool:
        # The revision when the wait for these futures began: asked again in short waits, a
        # revision taken each time could move on forever under a steady stream of writes.
        if futures is not self._settling:
            self._settling, self._target = futures, self.replica.machine.revision
        return self.replica.hub.wait_dispatched(self._target, timeout)


class ControllerManager(WorkloadSteps, SchedulerStep):
    def __init__(self, registry: Writer, heartbeats: HeartbeatTracker | None, term: int,
                 settings: ManagerSettings | None = None,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic, *,
                 link: Link | None = None, steps: frozenset[str] = ALL_STEPS,
                 metrics: MasterMetrics | None = None) -> None:
        self.registry = registry
        if link is None:
            assert isinstance(registry, Registry), "in-process controllers need the registry or a link"
            link = ReplicaLink(registry.replica)
        self.link = link
        self.metrics = metrics if metrics is not None else MasterMetrics()
        self.heartbeats = heartbeats
        self.term = term
        self.settings = settings or ManagerSettings()
        self.steps = steps
        self.event_writer = EventWriter(registry, self.metrics, fence_term=term, ttl=self.settings.event_ttl,
                                        wall=wall)
        self.events = EventRecorder(self.event_writer, wall=wall, enabled=self.settings.record_events)
        self.wall = wall
        self.mono = mono
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"controllers-term-{term}", daemon=True)
        self._unschedulable_reasons: dict[str, str] = {}
        self._config_problems: dict[NameKey, str] = {}  # pod -> the config problem an event told
        self._create_failures: dict[str, str] = {}  # replica set uid -> why its pods may not be created
        self._cron_skips = {}
        self.bound = 0
        # Back-off of the whole loop, and of each step on its own.
        self.loop_backoff = Backoff(mono)
        self.step_backoff: dict[str, Backoff] = {}
        # Undecodable stored versions (key, revision) whose event is written or on its way.
        self._reported_bad: set[tuple[str, int]] = set()
        self.queues = Queues(mono)
        # Bindings written and not yet confirmed (the scheduler's "assumed" pods): pod uid ->
        # (store key, the pod as it was, the bound copy put in the cache). Outcomes arrive on
        # other threads, through `_bind_outcomes`, and are handled on the loop's thread.
        self._assumed: dict[str, tuple[str, objects_pb2.Pod, objects_pb2.Pod]] = {}
        self._bind_outcomes: deque[tuple[str, bool]] = deque()
        self._in_meanwhile = False
        # Steps whose last writes were not yet done or seen: step -> (since, the writes, and once
        # all are done, the list the cache is asked about: the same object each time, so that
        # the in-process link measures from one revision).
        self._outstanding: dict[str, tuple[float, list[Future[Message]], list[Future[Message]] | None]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.event_writer.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _leading(self) -> bool:
        return not self._stop.is_set() and self.link.leading(self.term)

    def _run(self) -> None:
        """Supervise the control loop: restart it after a crash, until leadership ends."""
        log.info("controllers_started", term=self.term, steps=len(self.steps))
        self.event_writer.start()
        while self._leading():
            try:
                self._control_loop()
            except Exception:
                delay = self.loop_backoff.failed()
                log.exception("controllers_crashed", term=self.term, restart_in=delay,
                              crashes=self.loop_backoff.failures)
                self._stop.wait(delay)
        self.event_writer.stop()
        log.info("controllers_stopped", term=self.term)

    def _control_loop(self) -> None:
        """Run passes until leadership ends or the cache fell behind (then it is rebuilt)."""
        cache = self.link.open_cache()
        self.queues = queues = Queues(self.mono)
        self._assumed.clear()  # a fresh cache holds none of them (late outcomes are ignored)
        cache.listen(functools.partial(queues.route, cache))
        queues.add_all(cache)
        try:
            if "master pods" in self.steps:
                self._wait(self.registry.ensure_namespaces(
                    ["default", SYSTEM_NAMESPACE], fence_term=self.term,
                    # The masters' and agents' own pods run on the host, as processes of their own.
                    labels={SYSTEM_NAMESPACE: {LEVEL_LABEL: PRIVILEGED}}), cache)
            last_full = 0.0
            last_all = self.mono()
            last_lifecycle = 0.0
            dirty = True
            steps = tuple((name, step) for name, step in (
                ("scheduler", self._schedule), ("deployments", self._deployments),
                ("replicasets", self._replicasets), ("endpoints", self._endpoints),
                ("jobs", self._jobs), ("cronjobs", self._cronjobs), ("daemonsets", self._daemonsets),
                ("taint evictions", self._taint_evictions), ("garbage collector", self._gc),
                ("undecodable objects", self._undecodable),
                ("pod config events", self._config_events)) if name in self.steps)
            periodic = tuple((name, step) for name, step in (
                ("node lifecycle", self._node_lifecycle), ("master pods", self._master_pods),
            ) if name in self.steps)
            owed: set[str] = set()  # steps that failed or were backing off: run when they may
            while self._leading():
                changed = cache.drain()
                if cache.overflowed:
                    log.warning("controllers_cache_overflowed", term=self.term)
                    return
                now = self.mono()
                if changed or queues.ready():
                    dirty = True
                if now - last_all >= RESYNC_ALL:
                    last_all = now
                    queues.add_all(cache)
                if now - last_lifecycle >= self.settings.lifecycle_period:
                    last_lifecycle = now
                    for name, step in periodic:
                        self._pass(name, step, cache)
                full = dirty or now - last_full >= RESYNC or self._timer_due()
                cpu_before = time.thread_time()
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
                if full and self.settings.pass_pause:
                    # Give the GIL back for as long as the pass held it (up to a cap): Raft's thread
                    # and the gRPC handlers share this process, and a control loop that plans flat
                    # out under load starves them (elections). Changes meanwhile are coalesced.
                    self._stop.wait(min(time.thread_time() - cpu_before, PASS_PAUSE_CAP))
                # Sleep until a change, or a key's back-off ends (briefly at least: a step that is
                # itself backing off leaves its keys due).
                cache.wait(max(0.02, min(0.2, queues.delay())))
        finally:
            cache.close()

    def _pass(self, name: str, step: Callable[[ObjectCache], list[Future[Message]]], cache: ObjectCache) -> bool:
        """Run one step; False when it did not run to the end (failed or backing off)."""
        backoff = self.step_backoff.setdefault(name, Backoff(self.mono))
        if not backoff.ready() or self._held(name, cache):
            return False
        started = time.perf_counter()
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
        self._wait(futures, cache, name)
        elapsed = time.perf_counter() - started
        self.metrics.reconcile_seconds.labels(name).observe(elapsed)
        if name == "scheduler" and futures:
            self.metrics.scheduler_seconds.observe(elapsed)
        return True

    def _held(self, name: str, cache: ObjectCache) -> bool:
        """Whether `name`'s last writes still keep it from running (see OUTSTANDING_FOR)."""
        held = self._outstanding.get(name)
        if held is None:
            return False
        since, futures, done = held
        if done is None and all(f.done() for f in futures):
            done = list(futures)
            self._outstanding[name] = (since, futures, done)
        if (done is not None and self.link.settle(cache, done, 0.0)) or self.mono() - since >= OUTSTANDING_FOR:
            del self._outstanding[name]
            return False
        return True

    def _wait(self, futures: list[Future[Message]], cache: ObjectCache, step: str | None = None) -> None:
        if not futures:
            return
        deadline = self.mono() + WRITE_WAIT
        pending = set(futures)
        # In short steps: a deposed leader stops waiting as soon as it knows.
        while pending and self._leading() and self.mono() < deadline:
            _, pending = wait_all(pending, timeout=WAIT_STEP)
            if pending:
                self._meanwhile(cache)
        for f in futures:
            if f.done() and f.exception() is not None:
                log.debug("controller_write_failed", error=str(f.exception()))
        # The next pass must see these writes in the cache, or it would make them again. The
        # scheduler binds meanwhile: this wait lasted seconds while 10,000 pods were created,
        # with no pod bound in the time.
        deadline = self.mono() + SETTLE_WAIT
        seen = False
        while not (seen := self.link.settle(cache, futures, WAIT_STEP)) and self._leading() \
                and self.mono() < deadline:
            self._meanwhile(cache)
        if step is not None and (pending or not seen):
            log.info("controller_writes_outstanding", controller=step, writes=len(futures),
                     unfinished=len(pending))
            self._outstanding[step] = (self.mono(), futures, None)

    # -- node lifecycle ---------------------------------------------------------------------

    def _meanwhile(self, cache: ObjectCache) -> None:
        """While a step waits for its writes, the scheduler binds the pods that arrived: it
        waits for nothing itself, and pods created by the replica sets by the thousand would
        otherwise wait for the whole batch (seconds) before the first is bound."""
        if self._in_meanwhile or "scheduler" not in self.steps:
            return
        self._in_meanwhile = True
        try:
            cache.drain()
            if self.queues.schedule:
                self._pass("scheduler", self._schedule, cache)
        finally:
            self._in_meanwhile = False

    def _node_lifecycle(self, cache: ObjectCache) -> list[Future[Message]]:
        nodes = [n for n in cache.items("Node") if isinstance(n, objects_pb2.Node)]
        assert self.heartbeats is not None, "node lifecycle runs beside the heartbeats"
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
            self.events.emit("node-controller", Ref.of(node), "NodeReady" if change.ready else "NodeNotReady",
                             f"Node {change.node} status is now: {'NodeReady' if change.ready else 'NodeNotReady'}",
                             NORMAL if change.ready else WARNING)
            futures.append(self.registry.update(node, status_only=True, fence_term=self.term))
        for evicted in plan.evict:
            for pod in self._pods_on(cache, evicted):
                if not is_mirror(pod):
                    log.info("pod_evicted", pod=f"{pod.metadata.namespace}/{pod.metadata.name}",
                             node=pod.spec.node_name)
                    self.events.emit("node-controller", Ref.of(pod), "Evicted",
                                     f"Marking for deletion Pod {pod.metadata.namespace}/{pod.metadata.name}: "
                                     f"node {pod.spec.node_name} is NotReady", WARNING)
                    futures.append(self.registry.delete(kind_of("Pod"), pod.metadata.namespace, pod.metadata.name,
                                                        pod.metadata.resource_version, fence_term=self.term))
        return futures

    def _pods_on(self, cache: ObjectCache, node: str) -> list[objects_pb2.Pod]:
        if cache.complete:
            return [p for k in cache.index.pods_on(node) if isinstance(p := cache.at("Pod", k), objects_pb2.Pod)]
        assert isinstance(self.registry, Registry), "a partial cache is the master's own"
        pods, _ = self.registry.list_kind(kind_of("Pod"), "")
        return [p for p in pods if isinstance(p, objects_pb2.Pod) and p.spec.node_name == node]

    # -- the masters as pods of raftorch-system ---------------------------------------------------

    def _master_pods(self, cache: ObjectCache) -> list[Future[Message]]:
        """Each master shows up in `get pods -A`, Ready while the leader has a Raft link to it."""
        assert isinstance(self.registry, Registry), "the master pods step runs in the master"
        replica = self.registry.replica
        with replica.reading() as machine:
            members = list(machine.members.values())
        connected = replica.connected_peers() | {replica.peer_addr}
        existing = {p.metadata.name: p for k in cache.index.in_namespace("Pod", SYSTEM_NAMESPACE)
                    if isinstance(p := cache.at("Pod", k), objects_pb2.Pod)}
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

    def _config_events(self, cache: ObjectCache) -> list[Future[Message]]:
        """A Warning event when a pod's containers wait for configuration (a missing ConfigMap,
        Secret or key: the agent's CreateContainerConfigError), once per pod and problem, as the
        kubelet's "Failed" event; agents may not write events themselves (node restriction).
        Only the pods that changed since the last pass are looked at."""
        futures: list[Future[Message]] = []
        changed, self.queues.pods_changed = self.queues.pods_changed, set()
        for key in changed:
            pod = cache.get("Pod", *key)
            problem = "" if not isinstance(pod, objects_pb2.Pod) else next(
                (s.state.message for s in [*pod.status.init_container_statuses, *pod.status.container_statuses]
                 if s.state.state == "waiting" and s.state.reason == CREATE_CONTAINER_CONFIG_ERROR), "")
            if not problem:
                self._config_problems.pop(key, None)
                continue
            assert isinstance(pod, objects_pb2.Pod)
            if self._config_problems.get(key) != problem:
                self._config_problems[key] = problem
                self.events.emit(f"agent/{pod.spec.node_name}", Ref.of(pod), "Failed", f"Error: {problem}", WARNING)
        return futures

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

    # -- keyed reconciles ----------------------------------------------------------------------

    def _each(self, queue: WorkQueue[Any], reconcile: Callable[[ObjectCache, Any], list[Future[Message]]],
              cache: ObjectCache, name: str) -> list[Future[Message]]:
        """Reconcile every key queued; a key whose writes fail comes back after its back-off."""
        keys = queue.drain()
        futures: list[Future[Message]] = []
        done = 0
        try:
            for key in keys:
                try:
                    written = reconcile(cache, key)
                except RaftorchError as err:  # terminal for this key until it changes
                    log.warning("controller_pass_failed", controller=name, key="/".join(key), error=str(err))
                    written = []
                done += 1
                self._track(queue, key, written)
                futures.extend(written)
        except Exception:
            queue.add_all(keys[done:])  # the step is retried after its back-off, with these keys
            raise
        finally:
            for key in keys:
                queue.done(key)
        return futures

    @staticmethod
    def _track(queue: WorkQueue[Any], key: Any, futures: list[Future[Message]]) -> None:
        if not futures:
            queue.forget(key)
            return
        # Counters only: a callback that referred to `futures` would make a reference cycle
        # (future -> callback -> list -> future) per reconcile, for the garbage collector.
        state = [len(futures), 0]  # left, failed
        lock = threading.Lock()

        def finished(f: Future[Message]) -> None:
            error = f.exception()
            if error is not None and isinstance(error, RETRIED):
                queue.retry(key)
            with lock:
                state[0] -= 1
                state[1] += error is not None
                last = state[0] == 0 and state[1] == 0
            if last:
                queue.forget(key)

        for f in futures:
            f.add_done_callback(finished)

    # -- deployments and replica sets ----------------------------------------------------------

    def _deployments(self, cache: ObjectCache) -> list[Future[Message]]:
        return self._each(self.queues.deployments, self._deployment, cache, "deployments")

    def _deployment(self, cache: ObjectCache, key: NameKey) -> list[Future[Message]]:
        deploy = cache.get("Deployment", *key)
        if not isinstance(deploy, objects_pb2.Deployment) or deploy.metadata.deletion_timestamp:
            return []
        owned = [rs for _, k in cache.index.children(deploy.metadata.uid, "ReplicaSet")
                 if isinstance(rs := cache.at("ReplicaSet", k), objects_pb2.ReplicaSet)]
        pods = [p for rs in owned for p in _pods_of(cache, rs.metadata.uid)]
        futures: list[Future[Message]] = []
        rs_kind = kind_of("ReplicaSet")
        plan = plan_deployment(deploy, owned, pods, now=format_time(self.wall()))
        if deploy.spec.min_ready_seconds and plan.status.available_replicas < plan.status.replicas:
            # Availability comes with time, not only with a change: look again soon.
            self.queues.deployments.add_after(key, 1.0)
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
            return futures
        by_name = {rs.metadata.name: rs for rs in owned}
        if plan.create is not None:
            futures.append(self.registry.create(plan.create, fence_term=self.term))
            self._scaled(deploy, plan.create.metadata.name, 0, plan.create.spec.replicas)
        changes: dict[str, objects_pb2.ReplicaSet] = {}
        for name, replicas in plan.scale:
            rs = changes.setdefault(name, _copy_rs(by_name[name]))
            self._scaled(deploy, name, rs.spec.replicas, replicas)
            rs.spec.replicas = replicas
        for name, revision in plan.update_revision:
            rs = changes.setdefault(name, _copy_rs(by_name[name]))
            rs.metadata.annotations["deployment.raftorch.io/revision"] = revision
        for rs in changes.values():
            futures.append(self.registry.update(rs, fence_term=self.term))
        for name in plan.delete:
            futures.append(self.registry.delete(rs_kind, deploy.metadata.namespace, name,
                                                by_name[name].metadata.resource_version, fence_term=self.term))
        if plan.status.SerializeToString(deterministic=True) != deploy.status.SerializeToString(deterministic=True):
            updated = objects_pb2.Deployment()
            updated.CopyFrom(deploy)
            updated.status.CopyFrom(plan.status)
            futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    def _scaled(self, deploy: objects_pb2.Deployment, rs_name: str, old: int, new: int) -> None:
        if new == old or (old == 0 and new == 0):
            return
        way = "up" if new > old else "down"
        self.events.emit("deployment-controller", Ref.of(deploy), "ScalingReplicaSet",
                         f"Scaled {way} replica set {rs_name} to {new}" + (f" from {old}" if old else ""))

    def _rollback_status(self, written: Future[Message], *, status: objects_pb2.DeploymentStatus) -> None:
        if written.exception() is not None:
            return
        deploy = written.result()
        assert isinstance(deploy, objects_pb2.Deployment)
        deploy.status.CopyFrom(status)
        self.registry.update(deploy, status_only=True, fence_term=self.term)

    def _replicasets(self, cache: ObjectCache) -> list[Future[Message]]:
        return self._each(self.queues.replicasets, self._replicaset, cache, "replicasets")

    def _replicaset(self, cache: ObjectCache, key: NameKey) -> list[Future[Message]]:
        rs = cache.get("ReplicaSet", *key)
        if not isinstance(rs, objects_pb2.ReplicaSet):
            return []
        pods = _pods_of(cache, rs.metadata.uid)
        futures: list[Future[Message]] = []
        pod_kind = kind_of("Pod")
        plan = plan_replicaset(rs, pods, lambda: secrets.token_hex(3)[:5])
        if plan.create:
            # The namespace's level may have been raised since the template was admitted.
            level = _level(cache, rs.metadata.namespace)
            violations = pod_spec_violations(rs.spec.template.spec, level, "spec.template.spec")
            if violations:
                message = (f'pods of replicaset "{rs.metadata.name}" are forbidden: violates pod-security '
                           f'level "{level}": ' + ", ".join(violations))
                if self._create_failures.get(rs.metadata.uid) != message:
                    self._create_failures[rs.metadata.uid] = message
                    self.events.emit("replicaset-controller", Ref.of(rs), "FailedCreate", message, WARNING)
                plan = replace(plan, create=())
            else:
                self._create_failures.pop(rs.metadata.uid, None)
        for pod in plan.create:
            futures.append(self.registry.create(pod, fence_term=self.term))
            self.events.emit("replicaset-controller", Ref.of(rs), "SuccessfulCreate",
                             f"Created pod: {pod.metadata.name}")
        by_name = {p.metadata.name: p for p in pods}
        for name in plan.delete:
            futures.append(self.registry.delete(pod_kind, rs.metadata.namespace, name,
                                                by_name[name].metadata.resource_version, fence_term=self.term))
            self.events.emit("replicaset-controller", Ref.of(rs), "SuccessfulDelete", f"Deleted pod: {name}")
        if plan.status.SerializeToString(deterministic=True) != rs.status.SerializeToString(deterministic=True):
            updated = _copy_rs(rs)
            updated.status.CopyFrom(plan.status)
            futures.append(self.registry.update(updated, status_only=True, fence_term=self.term))
        return futures

    # -- endpoints and garbage collection ------------------------------------------------------

    def _endpoints(self, cache: ObjectCache) -> list[Future[Message]]:
        return self._each(self.queues.endpoints, self._endpoints_of, cache, "endpoints")

    def _endpoints_of(self, cache: ObjectCache, key: NameKey) -> list[Future[Message]]:
        svc = cache.get("Service", *key)
        current = cache.get("Endpoints", *key)
        if not isinstance(svc, objects_pb2.Service) or not svc.spec.selector:
            if isinstance(current, objects_pb2.Endpoints):
                return [self.registry.delete(kind_of("Endpoints"), key[0], key[1],
                                             current.metadata.resource_version, fence_term=self.term)]
            return []
        pods = [p for k in cache.index.in_namespace("Pod", key[0])
                if isinstance(p := cache.at("Pod", k), objects_pb2.Pod)]
        desired = plan_endpoints(svc, pods)
        if not isinstance(current, objects_pb2.Endpoints):
            return [self.registry.create(desired, fence_term=self.term)]
        if not endpoints_equal(current, desired):
            desired.metadata.resource_version = current.metadata.resource_version
            return [self.registry.update(desired, fence_term=self.term)]
        return []

    def _gc(self, cache: ObjectCache) -> list[Future[Message]]:
        return self._each(self.queues.gc, self._collect, cache, "garbage collector")

    def _collect(self, cache: ObjectCache, key: KindKey) -> list[Future[Message]]:
        kind_name, namespace, name = key
        obj = cache.get(kind_name, namespace, name)
        if obj is None:
            return []
        candidates = [(kind_name, obj.metadata)]  # type: ignore[attr-defined]
        return [self.registry.delete(kind_of(k), ns, n, fence_term=self.term)
                for k, ns, n in plan_gc(candidates, cache.index.live_uids)]


def _level(cache: ObjectCache, namespace: str) -> str:
    ns = cache.get("Namespace", "", namespace)
    return level_of(ns.metadata.labels) if isinstance(ns, objects_pb2.Namespace) else DEFAULT_LEVEL


def _pods_of(cache: ObjectCache, owner_uid: str) -> list[objects_pb2.Pod]:
    return [p for _, k in cache.index.children(owner_uid, "Pod")
            if isinstance(p := cache.at("Pod", k), objects_pb2.Pod)]


def _copy_rs(rs: objects_pb2.ReplicaSet) -> objects_pb2.ReplicaSet:
    out = objects_pb2.ReplicaSet()
    out.CopyFrom(rs)
    return out
