"""The Resources gRPC service: create, read, update, delete and watch cluster objects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from raftorch.api.v1 import kv_pb2, objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.auth import Identity, identity_of
from raftorch.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    Invalid,
    NotFound,
    PermissionDenied,
    RaftorchError,
    UnknownOutcome,
)
from raftorch.master import admission
from raftorch.master.handlers import time_left, unary, wait_read, wait_write
from raftorch.master.node_restriction import (
    CONFIG_KINDS,
    authorize_node_config_read,
    authorize_node_delete,
    authorize_node_read,
    authorize_node_write,
)
from raftorch.master.registry import Registry
from raftorch.master.stored import try_decode
from raftorch.master.template_pods import TemplatePods
from raftorch.master.validation import MAX_ID, shown
from raftorch.master.watch_share import shared_events
from raftorch.objects import (
    NAMESPACE,
    NODE,
    POD,
    Kind,
    check_object_size,
    check_unknown_fields,
    kind_of,
    kind_of_message,
    matches,
    object_matches_fields,
    parse_field_selector,
    parse_label_selector,
    store_prefix,
    unwrap,
    wrap,
)
from raftorch.store.loop_wake import settled
from raftorch.store.machine import to_event
from raftorch.store.replica import RaftReplica
from raftorch.store.watch import Watcher

Filter = Callable[[Message], bool]
WATCH_BOOKMARK_INTERVAL = 10.0
DELETE_RETRIES = 5
CREATE_RETRIES = 5
WRITE_MANY_MAX = 100


def make_filter(kind: Kind, label_selector: str, field_selector: str) -> Filter:
    labels = parse_label_selector(label_selector) if label_selector else None
    fields = parse_field_selector(field_selector) if field_selector else []

    def accept(msg: Message) -> bool:
        if labels is not None and not matches(labels, msg.metadata.labels):  # type: ignore[attr-defined]
            return False
        return not fields or object_matches_fields(kind, msg, fields)

    return accept


class ResourcesService(resources_pb2_grpc.ResourcesServicer):
    def __init__(self, registry: Registry, write_timeout: float) -> None:
        self._registry = registry
        self._replica = registry.replica
        self._write_timeout = write_timeout

    async def _barrier(self, context: grpc.aio.ServicerContext) -> None:
        await wait_read(self._replica.read_barrier(), time_left(context, self._write_timeout))

    @unary
    async def Create(self, request: resources_pb2.CreateRequest, context: grpc.aio.ServicerContext
                     ) -> objects_pb2.Object:
        _check_object(request.object)
        _, original = unwrap(request.object)
        caller = identity_of(context)
        fence = _fence_term(caller, request.fence_term)
        _authorize_write(caller, kind_of_message(original), original)
        if not caller.is_controller_manager:
            # The controller manager's objects are the controllers' own (as when they ran in the
            # master): it checks its pods' security itself and writes system status.
            self._admit(original)
            _drop_system_status(original)
        for attempt in range(CREATE_RETRIES):
            msg = type(original)()
            msg.CopyFrom(original)
            future = self._registry.create(msg, f"{request.request_id}-{attempt}" if request.request_id else "",
                                           fence_term=fence)
            try:
                return wrap(await wait_write(future, time_left(context, self._write_timeout)))
            except AlreadyExists as err:
                # A ClusterIP or NodePort picked here was taken by a concurrent create: pick again.
                if "already allocated" not in err.message or attempt == CREATE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _admit(self, msg: Message, update: bool = False) -> None:
        """Pod security (admission.py): pods and pod templates against their namespace's level,
        when created and when an update changes the pod spec (so a workload admitted before its
        namespace's level was raised can still be scaled; the controller checks its new pods)."""
        if isinstance(msg, objects_pb2.Namespace):
            admission.check_namespace(msg)
            return
        if not isinstance(msg, (objects_pb2.Pod, objects_pb2.Deployment, objects_pb2.ReplicaSet)):
            return
        if update and self._same_pod_spec(msg):
            return
        level = admission.DEFAULT_LEVEL
        with contextlib.suppress(NotFound):  # the write itself reports a missing namespace
            ns = self._registry.get(NAMESPACE, "", msg.metadata.namespace or "default")
            level = admission.level_of(ns.metadata.labels)  # type: ignore[attr-defined]
        admission.admit(msg, level)
        if isinstance(msg, objects_pb2.Pod) and msg.spec.node_name:
            node: Message | None = None
            with contextlib.suppress(NotFound):
                node = self._registry.get(NODE, "", msg.spec.node_name)
            assert node is None or isinstance(node, objects_pb2.Node)
            admission.check_node(msg, level, node)

    def _same_pod_spec(self, msg: objects_pb2.Pod | objects_pb2.Deployment | objects_pb2.ReplicaSet) -> bool:
        try:
            stored = self._registry.get(kind_of_message(msg), msg.metadata.namespace or "default", msg.metadata.name)
        except NotFound:
            return False  # the update reports it
        if isinstance(msg, objects_pb2.Pod):
            assert isinstance(stored, objects_pb2.Pod)
            return _pod_spec_bytes(stored.spec) == _pod_spec_bytes(msg.spec)
        assert isinstance(stored, (objects_pb2.Deployment, objects_pb2.ReplicaSet))
        return _pod_spec_bytes(stored.spec.template.spec) == _pod_spec_bytes(msg.spec.template.spec)

    def _keep_system_status(self, msg: Message) -> None:
        """Addresses in a status are the system's to set (an agent's report, a registration):
        a client's update keeps the stored ones, so no pod or node can be pointed elsewhere."""
        if not isinstance(msg, (objects_pb2.Pod, objects_pb2.Node)):
            return
        kind = kind_of_message(msg)
        try:
            stored = self._registry.get(kind, msg.metadata.namespace or ("default" if kind.namespaced else ""),
                                        msg.metadata.name)
        except NotFound:
            return  # the update reports it
        if isinstance(msg, objects_pb2.Pod):
            assert isinstance(stored, objects_pb2.Pod)
            msg.status.pod_ip, msg.status.host_ip = stored.status.pod_ip, stored.status.host_ip
        else:
            assert isinstance(stored, objects_pb2.Node)
            msg.status.agent_endpoint = stored.status.agent_endpoint
            del msg.status.addresses[:]
            msg.status.addresses.extend(stored.status.addresses)

    @unary
    async def Get(self, request: resources_pb2.GetRequest, context: grpc.aio.ServicerContext
                  ) -> objects_pb2.Object:
        kind = kind_of(request.kind)
        await self._barrier(context)
        namespace = _namespace(kind, request.namespace)
        found = self._registry.get(kind, namespace, request.name)
        caller = identity_of(context)
        authorize_node_read(caller, kind, found)
        if caller.is_node and kind.name in CONFIG_KINDS:
            pods, _ = self._registry.list_kind(POD, namespace)
            authorize_node_config_read(caller, kind, namespace, request.name,
                                       (p for p in pods if isinstance(p, objects_pb2.Pod)))
        return wrap(found)

    @unary
    async def List(self, request: resources_pb2.ListRequest, context: grpc.aio.ServicerContext
                   ) -> resources_pb2.ListResponse:
        kind = kind_of(request.kind)
        authorize_node_read(identity_of(context), kind)
        accept = make_filter(kind, request.label_selector, request.field_selector)
        if not request.serializable:
            await self._barrier(context)
        items, revision = self._registry.list_kind(kind, request.namespace if kind.namespaced else "")
        return resources_pb2.ListResponse(items=[wrap(m) for m in items if accept(m)], resource_version=revision)

    @unary
    async def Update(self, request: resources_pb2.UpdateRequest, context: grpc.aio.ServicerContext
                     ) -> objects_pb2.Object:
        _check_object(request.object)
        _, msg = unwrap(request.object)
        caller = identity_of(context)
        fence = _fence_term(caller, request.fence_term)
        _authorize_write(caller, kind_of_message(msg), msg)
        if not caller.is_controller_manager:
            self._admit(msg, update=True)
            self._keep_system_status(msg)
        future = self._registry.update(msg, request_id=request.request_id, fence_term=fence)
        return wrap(await wait_write(future, time_left(context, self._write_timeout)))

    @unary
    async def UpdateStatus(self, request: resources_pb2.UpdateRequest, context: grpc.aio.ServicerContext
                           ) -> objects_pb2.Object:
        _check_object(request.object)
        _, msg = unwrap(request.object)
        caller = identity_of(context)
        fence = _fence_term(caller, request.fence_term)
        _authorize_write(caller, kind_of_message(msg), msg)
        if not caller.is_controller_manager:
            self._keep_system_status(msg)
        future = self._registry.update(msg, status_only=True, request_id=request.request_id, fence_term=fence)
        return wrap(await wait_write(future, time_left(context, self._write_timeout)))

    @unary
    async def UpdateMany(self, request: resources_pb2.UpdateManyRequest, context: grpc.aio.ServicerContext
                         ) -> resources_pb2.WriteManyResponse:
        """The scheduler's bindings, in one transaction: the controller manager's call only."""
        fence, msgs = self._many(request.objects, request.fence_term, context, "UpdateMany")
        if not request.status_only and all(isinstance(m, objects_pb2.Pod) for m in msgs):
            futures = self._registry.bind_pods(msgs, fence_term=fence)  # type: ignore[arg-type]
        else:
            futures = self._registry.update_many(msgs, status_only=request.status_only, fence_term=fence)
        return await self._outcomes(futures, context)

    @unary
    async def CreateMany(self, request: resources_pb2.CreateManyRequest, context: grpc.aio.ServicerContext
                         ) -> resources_pb2.WriteManyResponse:
        """The replica set controller's pods, one transaction each, in one call: the controller
        manager's only (a call per pod cost the master more than the create itself)."""
        fence, msgs = self._many(request.objects, request.fence_term, context, "CreateMany")
        # A replica set's pods that are its template need their metadata checked alone
        # (template_pods.py).
        templates = TemplatePods(self._current)
        futures = self._registry.create_many(msgs, fence_term=fence, checked=templates.checked)
        return await self._outcomes(futures, context)

    def _current(self, key: str) -> Any:
        with self._replica.reading() as machine:
            return machine.index.current(key)

    def _many(self, objects: Sequence[objects_pb2.Object], fence_term: int, context: grpc.aio.ServicerContext,
              method: str) -> tuple[int, list[Message]]:
        caller = identity_of(context)
        if not caller.is_controller_manager:
            raise PermissionDenied(f"{caller.describe()} may not call {method}: it is the controller manager's")
        if not 1 <= len(objects) <= WRITE_MANY_MAX:
            raise Invalid(f"objects: between 1 and {WRITE_MANY_MAX}, got {len(objects)}")
        fence = _fence_term(caller, fence_term)
        msgs: list[Message] = []
        for i, obj in enumerate(objects):
            check_object_size(f"objects[{i}]", obj.ByteSize())
            # The wrapper's own fields here; the object's are checked by the registry's create
            # and update, and a binding is compared whole with the stored pod (registry.bind_pods).
            if UnknownFieldSet(obj):
                raise Invalid(f"objects[{i}]: unknown fields, perhaps a kind this version does not know")
            kind, msg = unwrap(obj)
            if msgs and kind_of_message(msgs[0]) != kind:
                raise Invalid(f"objects[{i}]: a {kind.name} among {kind_of_message(msgs[0]).name}s: one kind per call")
            _authorize_write(caller, kind, msg)
            msgs.append(msg)
        return fence, msgs

    async def _outcomes(self, futures: list[Future[Message]], context: grpc.aio.ServicerContext
                        ) -> resources_pb2.WriteManyResponse:
        # Outcomes are read, never raised: a raised error's traceback holds the frames that hold
        # its future, a reference cycle per failed write for the garbage collector (tens of
        # thousands of objects per second when bindings or creates fail in numbers).
        waiting = [settled(f) for f in futures]
        done: set[asyncio.Future[Message]] = set()
        if waiting:
            done, _ = await asyncio.wait(waiting, timeout=time_left(context, self._write_timeout))
        outcomes = []
        for waited in waiting:
            error = waited.exception() if waited in done else UnknownOutcome(
                "the write was not confirmed in time (no quorum?); it may still be applied")
            if error is None:
                outcomes.append(resources_pb2.WriteOutcome(object=wrap(waited.result())))
            elif isinstance(error, RaftorchError):
                outcomes.append(resources_pb2.WriteOutcome(error_code=error.code, error_message=error.message))
            else:
                raise error
        return resources_pb2.WriteManyResponse(outcomes=outcomes)

    @unary
    async def Delete(self, request: resources_pb2.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> objects_pb2.Object:
        kind = kind_of(request.kind)
        caller = identity_of(context)
        fence = _fence_term(caller, request.fence_term)
        _authorize_write(caller, kind, None)
        if request.propagation not in ("", "Background", "Orphan"):
            raise Invalid(f"propagation: expected Background or Orphan, got {shown(request.propagation)}")
        _check_revision("resource_version", request.resource_version)
        if not fence:  # a fenced delete is the leader's own: nothing to catch up with
            await self._barrier(context)
        namespace = _namespace(kind, request.namespace)
        if request.propagation == "Orphan":
            await self._orphan_dependents(kind, namespace, request.name, context)
        for attempt in range(DELETE_RETRIES):
            future = self._registry.delete(kind, namespace, request.name, request.resource_version,
                                           f"{request.request_id}-{attempt}" if request.request_id else "",
                                           fence_term=fence)
            try:
                return wrap(await wait_write(future, time_left(context, self._write_timeout)))
            except Conflict:
                # An unconditional delete only lost a race with another writer: try again.
                if request.resource_version or fence or attempt == DELETE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _orphan_dependents(self, kind: Kind, namespace: str, name: str,
                                 context: grpc.aio.ServicerContext) -> None:
        owner = self._registry.get(kind, namespace, name)
        uid = owner.metadata.uid  # type: ignore[attr-defined]
        for dep_kind in (kind_of("ReplicaSet"), kind_of("Job"), kind_of("Pod")):
            items, _ = self._registry.list_kind(dep_kind, namespace)
            for item in items:
                refs = item.metadata.owner_references  # type: ignore[attr-defined]
                keep = [r for r in refs if r.uid != uid]
                if len(keep) != len(refs):
                    del refs[:]
                    refs.extend(keep)
                    await wait_write(self._registry.update(item), time_left(context, self._write_timeout))

    # Live events are yielded as bytes: encoded once for every watch (watch_share.py).
    async def Watch(self, request: resources_pb2.WatchObjectsRequest, context: grpc.aio.ServicerContext  # type: ignore[override]
                    ) -> AsyncIterator[resources_pb2.ObjectEvent | bytes]:
        # Errors raised here reach the client with their own code (see edge.py).
        kind = kind_of(request.kind)
        authorize_node_read(identity_of(context), kind)
        accept = make_filter(kind, request.label_selector, request.field_selector)
        namespace = request.namespace if kind.namespaced else ""
        _check_revision("resource_version", request.resource_version)
        async for event in watch_objects(self._replica, kind, namespace, accept, request.resource_version,
                                         context):
            yield event


def _fence_term(caller: Identity, term: int) -> int:
    """The term a write is fenced by: the controller manager's alone may carry one."""
    if not term:
        return 0
    if not caller.is_controller_manager:
        raise PermissionDenied(f"{caller.describe()} may not set fence_term: only the controller manager's "
                               "writes are fenced by term")
    if not 0 < term <= MAX_ID:
        raise Invalid(f"fence_term: must be between 1 and 2^62, got {term}")
    return term


def _check_object(obj: objects_pb2.Object) -> None:
    check_object_size("object", obj.ByteSize())
    check_unknown_fields(obj)


def _check_revision(field: str, value: int) -> None:
    if not 0 <= value <= MAX_ID:
        raise Invalid(f"{field}: must be between 0 and 2^62, got {value}")


def _authorize_write(caller: Identity, kind: Kind, msg: Message | None) -> None:
    """Endpoints list the addresses that service rules and proxies send traffic to: only the
    endpoints controller (on a master) writes them. Nodes are narrowed by node restriction."""
    if kind.name == "Endpoints" and not (caller.is_master or caller.is_controller_manager):
        raise PermissionDenied(f"{caller.describe()} may not write endpoints: the endpoints controller keeps "
                               "them, from the pods its services select")
    if msg is None:
        authorize_node_delete(caller, kind)
    else:
        authorize_node_write(caller, msg)


def _pod_spec_bytes(spec: objects_pb2.PodSpec) -> bytes:
    return spec.SerializeToString(deterministic=True)


def _drop_system_status(msg: Message) -> None:
    """A new pod's status is the system's to fill in, and so are a new node's addresses: a
    client that presets a pod IP or an agent endpoint would steer tunnels to an address of its
    choice."""
    if isinstance(msg, objects_pb2.Pod):
        msg.ClearField("status")
    elif isinstance(msg, objects_pb2.Node):
        msg.status.ClearField("agent_endpoint")
        msg.status.ClearField("addresses")


def _namespace(kind: Kind, namespace: str) -> str:
    return (namespace or "default") if kind.namespaced else ""


def to_object_event(kind: Kind, ev: kv_pb2.KeyEvent, accept: Filter) -> resources_pb2.ObjectEvent | None:
    """A key change as an object event, seen through a filter: an object leaving the filter
    is DELETED for the watcher, one entering it is ADDED. A version that cannot be decoded
    counts as absent (skipped and logged by try_decode), so the watch goes on."""
    new = try_decode(kind, ev.kv) if ev.type == kv_pb2.KeyEvent.PUT else None
    old = try_decode(kind, ev.prev_kv) if ev.HasField("prev_kv") else None
    now_in = new is not None and accept(new)
    was_in = old is not None and accept(old)
    if now_in and new is not None:
        kind_text = "MODIFIED" if was_in else "ADDED"
        return resources_pb2.ObjectEvent(type=kind_text, object=wrap(new), resource_version=ev.kv.mod_revision)
    if was_in and old is not None:
        return resources_pb2.ObjectEvent(type="DELETED", object=wrap(old), resource_version=ev.kv.mod_revision)
    return None


async def watch_objects(replica: RaftReplica, kind: Kind, namespace: str, accept: Filter, resource_version: int,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[resources_pb2.ObjectEvent | bytes]:
    """Shared by the Resources and Agents services: current objects (when resource_version is
    0) or history after resource_version, a BOOKMARK, then live changes. Live changes come
    encoded already, shared with every other watch of the change (watch_share.py)."""
    prefix = store_prefix(kind, namespace or None)
    shared = shared_events(replica)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[list[kv_pb2.KeyEvent], int]] = asyncio.Queue()

    def notify(events: list[kv_pb2.KeyEvent], revision: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (events, revision))

    watcher = Watcher(prefix, True, True, notify)
    initial: list[resources_pb2.ObjectEvent] = []
    # Under the state lock only references are taken (stored versions never change in place);
    # decoding happens after, so a big list does not hold up Raft's thread.
    current: list[Any] = []
    history: list[Any] = []
    with replica.reading() as machine:
        start = machine.revision
        try:
            if resource_version <= 0:
                current = list(machine.index.range(prefix, True, 0))
            elif resource_version < start:
                history = [change for _, change in machine.index.changes_since(resource_version + 1)
                           if watcher.matches(change.kv.key)]
        except Compacted as err:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                f"{err.message}; list again and watch from the list's resource_version")
        replica.hub.add(watcher, start)
    for kv in current:
        msg = try_decode(kind, kv)
        if msg is not None and accept(msg):
            initial.append(resources_pb2.ObjectEvent(type="ADDED", object=wrap(msg), resource_version=kv.mod_revision))
    for change in history:
        # Not watcher.select: its filter now skips everything up to `start`, history included.
        converted = to_object_event(kind, to_event(change, True), accept)
        if converted is not None:
            initial.append(converted)
    try:
        for event in initial:
            yield event
        yield resources_pb2.ObjectEvent(type="BOOKMARK", resource_version=start)
        while True:
            try:
                events, _ = await asyncio.wait_for(queue.get(), WATCH_BOOKMARK_INTERVAL)
            except TimeoutError:
                yield resources_pb2.ObjectEvent(type="BOOKMARK", resource_version=replica.machine.revision)
                continue
            if watcher.overflowed and not events:
                break
            watcher.consumed(len(events))
            for ev in events:
                if ev.kv.mod_revision <= resource_version:
                    continue
                encoded = shared.event(kind, ev, accept)
                if encoded is not None:
                    yield encoded  # sent as it is (edge.py's serializer)
            if watcher.overflowed and queue.empty():
                break
    finally:
        with replica.reading():
            replica.hub.remove(watcher)
    await context.abort(grpc.StatusCode.UNAVAILABLE, "watch fell behind; resume from the last resource_version")
