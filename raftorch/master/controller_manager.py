"""The controller-manager process: the scheduler and the controllers, beside a master.

`python -m raftorch.master.controller_manager --socket unix:PATH --master NAME` is started by
its master (raftorch.master.controller_process) and talks to that master alone, over its local
socket, as ``system:controller-manager``. It asks the master whether it leads, a few times a
second; while it does, the same ControllerManager that can run inside the master runs here,
with:

- a RemoteCache: one Resources.Watch per kind (current objects, then changes), decoded into
  the same tables and indexes as the in-process cache. A watch that ends means the cache may
  have missed a change: the control loop then starts over with a fresh cache (a relist);
- a RemoteWriter: the Resources API with every write fenced by the term the process saw its
  master lead in, so a deposed leader's process has its writes refused (FAILED_PRECONDITION)
  by the store, whatever it still believes;
- its own mirror pod in raftorch-system (`raftctl get pods -A`).

It stops when its master goes away (the parent-death signal) or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import click
import grpc
import structlog
from google.protobuf.message import Message

from raftorch import logs
from raftorch.api.v1 import cluster_pb2, cluster_pb2_grpc, objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.errors import AlreadyExists, Conflict, RaftorchError, Unavailable, error_for_code, from_grpc_code
from raftorch.master.cache import ObjectCache
from raftorch.master.events import DEFAULT_TTL as DEFAULT_EVENT_TTL
from raftorch.master.indexes import CacheIndex
from raftorch.master.manager import LOOP_STEPS, ControllerManager, ManagerSettings
from raftorch.master.registry import SYSTEM_NAMESPACE
from raftorch.objects import (
    KINDS,
    MIRROR_ANNOTATION,
    Kind,
    format_time,
    kind_of_message,
    set_condition,
    store_key,
    unwrap,
    wrap,
)
from raftorch.stopping import stop_on_signals

log = structlog.get_logger("raftorch.controller_manager")

POLL = 0.2
WRITE_TIMEOUT = 10.0
CACHE_SYNC_TIMEOUT = 60.0
SETTLE_TIMEOUT = 5.0
MIRROR_PERIOD = 5.0
# Events are written by the controllers, never read by them.
WATCHED = tuple(k for k in KINDS if k.name != "Event")
MIRROR_PREFIX = "controller-manager-"
CREATE_BATCH = 100  # the servicer's bound
CREATES_IN_FLIGHT = 4
# Status updates are checked whole by the master (a full update each), all in one call: fewer
# per call keep each call's hold on the master's event loop short.
STATUS_BATCH = 25


def _error(exc: BaseException) -> BaseException:
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return from_grpc_code(exc.code(), exc.details() or "")
    return exc


class _Deleted(Future[Message]):
    """A delete's future, with the key the cache must see go."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class _Batcher:
    """Writes queued as they come and sent together: while `in_flight` calls are out, new
    writes wait, and go in the next call (up to `size`, one kind and one fence term per call)."""

    def __init__(self, send: Callable[[list[Message], int], grpc.Future], in_flight: int, size: int) -> None:
        self._send = send
        self._max_in_flight = in_flight
        self._size = size
        self._lock = threading.Lock()
        self._queued: deque[tuple[Message, int, Future[Message]]] = deque()
        self._in_flight = 0

    def add(self, msg: Message, fence_term: int) -> Future[Message]:
        out: Future[Message] = Future()
        with self._lock:
            self._queued.append((msg, fence_term, out))
        self._pump()
        return out

    def _pump(self) -> None:
        with self._lock:
            if self._in_flight >= self._max_in_flight or not self._queued:
                return
            first, fence, _ = self._queued[0]
            kind = kind_of_message(first)
            batch: list[tuple[Message, int, Future[Message]]] = []
            while self._queued and len(batch) < self._size:
                msg, term, _ = self._queued[0]
                if term != fence or kind_of_message(msg) != kind:
                    break
                batch.append(self._queued.popleft())
            self._in_flight += 1
        outs = [out for _, _, out in batch]
        try:
            call = self._send([m for m, _, _ in batch], fence)
        except BaseException as exc:
            self._sent(outs, None, exc)
            return
        call.add_done_callback(lambda c: self._sent(outs, c, None))

    def _sent(self, outs: list[Future[Message]], call: grpc.Future | None, error: BaseException | None) -> None:
        try:
            RemoteWriter._resolve(outs, call, error)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._pump()


class RemoteWriter:
    """The Writer of the ControllerManager over the Resources API.

    Creates and status updates are batched as they come (`_Batcher`): a replica set's hundred
    pods, or the status of every replica set and deployment after a pass, cost the master a
    few calls (and Raft entries) instead of one each."""

    def __init__(self, stub: resources_pb2_grpc.ResourcesStub) -> None:
        self._stub = stub
        self._creates = _Batcher(lambda msgs, fence: stub.CreateMany.future(resources_pb2.CreateManyRequest(
            objects=[wrap(m) for m in msgs], fence_term=fence), timeout=WRITE_TIMEOUT), CREATES_IN_FLIGHT, CREATE_BATCH)
        self._statuses = _Batcher(lambda msgs, fence: stub.UpdateMany.future(resources_pb2.UpdateManyRequest(
            objects=[wrap(m) for m in msgs], status_only=True, fence_term=fence), timeout=WRITE_TIMEOUT),
            CREATES_IN_FLIGHT, STATUS_BATCH)

    @staticmethod
    def _finish(call: grpc.Future, out: Future[Message], result: Any) -> None:
        def done(c: grpc.Future) -> None:
            try:
                out.set_result(result(c.result()))
            except BaseException as exc:
                out.set_exception(_error(exc).with_traceback(None))

        call.add_done_callback(done)

    def _object(self, method: Any, request: Message, out: Future[Message] | None = None) -> Future[Message]:
        out = out if out is not None else Future()
        self._finish(method.future(request, timeout=WRITE_TIMEOUT), out, lambda obj: unwrap(obj)[1])
        return out

    def create(self, msg: Message, request_id: str = "", fence_term: int = 0) -> Future[Message]:
        if request_id:
            return self._object(self._stub.Create, resources_pb2.CreateRequest(
                object=wrap(msg), request_id=request_id, fence_term=fence_term))
        return self._creates.add(msg, fence_term)

    def get(self, kind: Kind, namespace: str, name: str) -> Message:
        request = resources_pb2.GetRequest(kind=kind.name, namespace=namespace if kind.namespaced else "", name=name)
        try:
            return unwrap(self._stub.Get(request, timeout=WRITE_TIMEOUT))[1]
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def list_kind(self, kind: Kind, namespace: str = "") -> tuple[list[Message], int]:
        try:
            found = self._stub.List(resources_pb2.ListRequest(kind=kind.name, namespace=namespace),
                                    timeout=WRITE_TIMEOUT)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        return [unwrap(o)[1] for o in found.items], found.resource_version

    def update(self, msg: Message, status_only: bool = False, request_id: str = "",
               fence_term: int = 0) -> Future[Message]:
        if status_only and not request_id:
            return self._statuses.add(msg, fence_term)
        method = self._stub.UpdateStatus if status_only else self._stub.Update
        return self._object(method, resources_pb2.UpdateRequest(object=wrap(msg), request_id=request_id,
                                                                 fence_term=fence_term))

    def update_many(self, msgs: Sequence[Message], status_only: bool = False,
                    fence_term: int = 0) -> list[Future[Message]]:
        outs: list[Future[Message]] = [Future() for _ in msgs]
        if not msgs:
            return outs
        call = self._stub.UpdateMany.future(resources_pb2.UpdateManyRequest(
            objects=[wrap(m) for m in msgs], status_only=status_only, fence_term=fence_term), timeout=WRITE_TIMEOUT)
        call.add_done_callback(lambda c: self._resolve(outs, c, None))
        return outs

    @staticmethod
    def _resolve(outs: list[Future[Message]], call: grpc.Future | None, error: BaseException | None) -> None:
        """Each future from its outcome in a WriteManyResponse, or all from the call's error."""
        try:
            if error is not None:
                raise error
            assert call is not None
            outcomes = list(call.result().outcomes)
        except BaseException as exc:
            for out in outs:
                out.set_exception(_error(exc).with_traceback(None))
            return
        for i, out in enumerate(outs):
            if i >= len(outcomes):
                out.set_exception(Unavailable("the master answered fewer outcomes than writes"))
            elif outcomes[i].error_code:
                out.set_exception(error_for_code(outcomes[i].error_code, outcomes[i].error_message))
            else:
                out.set_result(unwrap(outcomes[i].object)[1])

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: int = 0,
               request_id: str = "", fence_term: int = 0) -> Future[Message]:
        namespace = (namespace or "default") if kind.namespaced else ""
        return self._object(self._stub.Delete, resources_pb2.DeleteRequest(
            kind=kind.name, namespace=namespace, name=name, resource_version=resource_version,
            request_id=request_id, fence_term=fence_term), _Deleted(store_key(kind, namespace, name)))

    def ensure_namespaces(self, names: Iterable[str], fence_term: int = 0,
                          labels: Mapping[str, Mapping[str, str]] | None = None) -> list[Future[Message]]:
        # The master keeps its namespaces (the master steps); this is here for completeness.
        return [self.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(
            name=n, labels=dict((labels or {}).get(n, {})))), fence_term=fence_term) for n in names]


class RemoteCache(ObjectCache):
    """The in-process cache's tables and indexes, filled by one Resources watch per kind."""

    def __init__(self, stub: resources_pb2_grpc.ResourcesStub, kinds: Sequence[Kind] = WATCHED) -> None:
        # Not ObjectCache.__init__: that one registers with a local replica.
        self._events: deque[tuple[Kind, str, Message, int]] = deque()
        self._wake = threading.Event()
        self.objects = {k.name: {} for k in KINDS}
        self.undecodable = {}
        self.revision = 0
        self.overflowed = False
        self.complete = True
        self.index = CacheIndex()
        self._listeners = []
        self._seen = threading.Condition()
        self._received: dict[str, int] = {}  # kind -> revision of the last event received
        self._gone: set[str] = set()  # keys whose DELETED event was received and not drained
        self._closed = False
        self._watched = frozenset(k.name for k in kinds)
        self._initial: dict[str, list[tuple[Message, int]]] = {}
        self._synced: dict[str, threading.Event] = {k.name: threading.Event() for k in kinds}
        self._calls = [stub.Watch(resources_pb2.WatchObjectsRequest(kind=k.name)) for k in kinds]
        self._threads = [threading.Thread(target=self._follow, args=(k, call), name=f"cm-watch-{k.name}",
                                          daemon=True) for k, call in zip(kinds, self._calls, strict=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + CACHE_SYNC_TIMEOUT
        for name, synced in self._synced.items():
            if not synced.wait(max(0.0, deadline - time.monotonic())) or self.overflowed:
                self.close()
                raise Unavailable(f"the controller manager's cache could not list {name} objects")
        for kind in kinds:
            for msg, revision in self._initial.pop(kind.name):
                meta = msg.metadata  # type: ignore[attr-defined]
                self._put(kind, meta.namespace, meta.name, store_key(kind, meta.namespace, meta.name), msg)
                self.revision = max(self.revision, revision)

    def _follow(self, kind: Kind, call: Any) -> None:
        initial: list[tuple[Message, int]] = []
        try:
            for event in call:
                if event.type == "BOOKMARK":
                    if not self._synced[kind.name].is_set():
                        self._initial[kind.name] = initial
                        self._synced[kind.name].set()
                    with self._seen:
                        self._received[kind.name] = max(self._received.get(kind.name, 0), event.resource_version)
                        self._seen.notify_all()
                    continue
                _, msg = unwrap(event.object)
                if not self._synced[kind.name].is_set():
                    initial.append((msg, event.resource_version))
                    continue
                self._events.append((kind, event.type, msg, event.resource_version))
                with self._seen:
                    self._received[kind.name] = event.resource_version
                    if event.type == "DELETED":
                        meta = msg.metadata  # type: ignore[attr-defined]
                        self._gone.add(store_key(kind, meta.namespace, meta.name))
                    self._seen.notify_all()
                self._wake.set()
        except grpc.RpcError as exc:
            if not self._closed:
                log.warning("controller_manager_watch_ended", kind=kind.name, error=str(_error(exc)))
        finally:
            # Whatever ends a watch, changes may have been missed: the loop relists.
            self.overflowed = True
            self._synced[kind.name].set()
            self._wake.set()

    def drain(self) -> list[tuple[str, str, str]]:
        changed: list[tuple[str, str, str]] = []
        while self._events:
            kind, type_, msg, revision = self._events.popleft()
            meta = msg.metadata  # type: ignore[attr-defined]
            key = store_key(kind, meta.namespace, meta.name)
            if type_ == "DELETED":
                with self._seen:
                    self._gone.discard(key)
            changed.append(self._put(kind, meta.namespace, meta.name, key, None if type_ == "DELETED" else msg))
            self.revision = max(self.revision, revision)
        return changed

    def settle(self, futures: list[Future[Message]], timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait (briefly) until the watches delivered what `futures` wrote; False if they did not."""
        wanted: list[tuple[str, int]] = []
        gone: list[str] = []
        for f in futures:
            if not f.done() or f.exception() is not None:
                continue
            if isinstance(f, _Deleted):
                gone.append(f.key)
                continue
            obj = f.result()
            kind = kind_of_message(obj).name
            if kind in self._watched:  # events are written, never watched
                wanted.append((kind, obj.metadata.resource_version))  # type: ignore[attr-defined]

        def seen() -> bool:
            return self.overflowed or (all(self._received.get(k, 0) >= rv for k, rv in wanted)
                                       and all(key in self._gone or self._absent(key) for key in gone))

        with self._seen:
            return self._seen.wait_for(seen, timeout)

    def _absent(self, key: str) -> bool:
        return all(key not in table for table in self.objects.values())

    def close(self) -> None:
        self._closed = True
        for call in self._calls:
            call.cancel()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)


class LocalLink:
    """The controller manager's view of its master: who leads, the cache, the writes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.resources = resources_pb2_grpc.ResourcesStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)
        self.status = cluster_pb2.MemberStatus()

    def poll(self) -> cluster_pb2.MemberStatus:
        self.status = self.cluster.LocalStatus(cluster_pb2.LocalStatusRequest(), timeout=2.0)
        return self.status

    def leading(self, term: int) -> bool:
        return self.status.role == "leader" and self.status.term == term

    def open_cache(self) -> ObjectCache:
        return RemoteCache(self.resources)

    def settle(self, cache: ObjectCache, futures: list[Future[Message]], timeout: float) -> bool:
        assert isinstance(cache, RemoteCache)
        return cache.settle(futures, timeout)


def mirror_pod(master: str, now: str, ready: bool) -> objects_pb2.Pod:
    """This process as a pod of raftorch-system, like the masters' and the agents' own."""
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=MIRROR_PREFIX + master, namespace=SYSTEM_NAMESPACE,
                                        labels={"component": "raftorch-controller-manager"},
                                        annotations={MIRROR_ANNOTATION: "true"}),
        spec=objects_pb2.PodSpec(node_name=master, containers=[objects_pb2.Container(
            name="controller-manager", image="raftorch-controller-manager")]))
    _set_status(pod, now, ready, os.getpid())
    return pod


def _set_status(pod: objects_pb2.Pod, now: str, ready: bool, pid: int) -> None:
    pod.status.phase = "Running"
    pod.status.start_time = pod.status.start_time or now
    set_condition(pod.status.conditions, "Ready", "True" if ready else "False",
                  "Leading" if ready else "Standby",
                  "runs the controllers: its master leads" if ready else "standing by: its master does not lead",
                  now)
    del pod.status.container_statuses[:]
    state = objects_pb2.ContainerState(state="running", started_at=pod.status.start_time)
    pod.status.container_statuses.add(name="controller-manager", ready=ready, image="raftorch-controller-manager",
                                      container_id=f"pid://{pid}", state=state)


class ControllerManagerMain:
    def __init__(self, address: str, master: str, settings: ManagerSettings) -> None:
        self.master = master
        self.settings = settings
        self.channel = grpc.insecure_channel(address)
        self.link = LocalLink(self.channel)
        self.writer = RemoteWriter(self.link.resources)
        self.manager: ControllerManager | None = None
        self.stop = threading.Event()
        self._mirrored = (0, 0.0)  # term, when

    def run(self) -> None:
        log.info("controller_manager_running", master=self.master, pid=os.getpid())
        while not self.stop.is_set():
            try:
                status = self.link.poll()
            except grpc.RpcError as exc:
                log.warning("controller_manager_no_master", error=str(_error(exc)))
                self.link.status = cluster_pb2.MemberStatus()
                status = self.link.status
            leading = status.role == "leader"
            manager = self.manager
            if manager is not None and (not manager.running or not leading or manager.term != status.term):
                manager._stop.set()  # it ends by itself; its writes are fenced meanwhile
                self.manager = manager = None
            if leading and manager is None:
                self.manager = ControllerManager(self.writer, None, int(status.term), self.settings,
                                                 link=self.link, steps=LOOP_STEPS)
                self.manager.start()
                log.info("controller_manager_active", term=status.term)
            if leading:
                self._mirror(int(status.term))
            self.stop.wait(POLL)
        if self.manager is not None:
            self.manager.stop()
        self.channel.close()

    def _mirror(self, term: int) -> None:
        """Keep this process's mirror pod Ready, and its standby peers' not Ready."""
        last_term, when = self._mirrored
        if last_term == term and time.monotonic() - when < MIRROR_PERIOD:
            return
        self._mirrored = (term, time.monotonic())
        now = format_time(time.time())
        try:
            listed = self.link.resources.List(resources_pb2.ListRequest(
                kind="Pod", namespace=SYSTEM_NAMESPACE, serializable=True), timeout=5.0)
            pods = {p.metadata.name: p for p in (unwrap(o)[1] for o in listed.items)
                    if isinstance(p, objects_pb2.Pod) and p.metadata.name.startswith(MIRROR_PREFIX)}
            mine = pods.pop(MIRROR_PREFIX + self.master, None)
            if mine is None:
                with contextlib.suppress(AlreadyExists):
                    self.writer.create(mirror_pod(self.master, now, True), fence_term=term).result(WRITE_TIMEOUT)
            elif not _is_ready(mine) or mine.status.container_statuses[0].container_id != f"pid://{os.getpid()}":
                _set_status(mine, now, True, os.getpid())
                self.writer.update(mine, status_only=True, fence_term=term).result(WRITE_TIMEOUT)
            for other in pods.values():
                if _is_ready(other):
                    pid = other.status.container_statuses[0].container_id.removeprefix("pid://") \
                        if other.status.container_statuses else "0"
                    _set_status(other, now, False, int(pid) if pid.isdigit() else 0)
                    self.writer.update(other, status_only=True, fence_term=term).result(WRITE_TIMEOUT)
        except (RaftorchError, grpc.RpcError) as exc:
            if not isinstance(exc, Conflict):
                log.warning("controller_manager_mirror_pod", error=str(_error(exc)))
            self._mirrored = (0, 0.0)  # try again on the next poll


def _is_ready(pod: objects_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


# How often the child checks that its master is still its parent (the death signal below is
# per thread on Linux and is set only once this process runs: the check covers both gaps).
PARENT_CHECK = 0.5
# After a stop is asked for, the process ends within this long even if a thread is stuck in a
# call to its (gone) master: its writes are fenced by term, it holds nothing to flush.
EXIT_GRACE = 5.0


def _exit_within(seconds: float) -> None:
    timer = threading.Timer(seconds, os._exit, (0,))
    timer.daemon = True
    timer.start()


def _die_with_parent(parent: int) -> None:
    """End when the master that started this process dies, however it dies (SIGKILL included):
    it is this process's only way to the cluster, and an orphan would hold memory for ever."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        log.warning("controller_manager_master_gone", parent=parent)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "address", required=True, help="The master's local socket: unix:PATH.")
@click.option("--master", required=True, help="The name of the master this process runs beside.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--event-ttl", type=click.FloatRange(min=1.0), default=DEFAULT_EVENT_TTL, show_default=True,
              help="Seconds an event is kept.")
@click.option("--events/--no-events", default=True, help="Record events (the master's record-events).")
@click.option("--parent-pid", type=int, default=None,
              help="The master's process id: this process ends when it does (default: the parent).")
def main(address: str, master: str, log_level: str, event_ttl: float, events: bool,
         parent_pid: int | None) -> None:
    """The scheduler and the controllers of one master, active while it leads."""
    logs.configure(service=True, level=log_level)
    _die_with_parent(parent_pid if parent_pid is not None else os.getppid())
    runner = ControllerManagerMain(address, master, ManagerSettings(pass_pause=False, event_ttl=event_ttl,
                                                                    record_events=events))

    stop_on_signals(runner.stop, then=lambda: _exit_within(EXIT_GRACE))
    runner.run()
    _exit_within(EXIT_GRACE)  # threads still waiting on a gone master must not keep it alive


if __name__ == "__main__":
    main()
