"""The Agents gRPC service: node registration, heartbeats, a node's pods, pod status."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2, resources_pb2
from raftorch.auth import identity_of
from raftorch.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    NotFound,
    PermissionDenied,
    RaftorchError,
    UnknownOutcome,
)
from raftorch.master.events import upsert_event
from raftorch.master.forward import LeaderForwarder
from raftorch.master.handlers import time_left, unary, wait_write
from raftorch.master.heartbeats import HeartbeatTracker
from raftorch.master.node_restriction import authorize_heartbeat_forwarding, authorize_node, check_pod_address
from raftorch.master.registry import Registry, StatusPatch
from raftorch.master.resources_service import watch_objects
from raftorch.master.usage import UsageStore
from raftorch.master.validation import MAX_ID, check_node_usage, check_reported_event
from raftorch.objects import POD, kind_of
from raftorch.objects.events import Ref, event_name
from raftorch.store.loop_wake import settled

log = structlog.get_logger("raftorch.master")

FORWARD_INTERVAL = 0.5
STATUS_RETRIES = 3
REGISTER_RETRIES = 10


def _authorize_node(context: grpc.aio.ServicerContext, node: str, action: str) -> None:
    """Node restriction (node_restriction.py): an agent acts only as its own node."""
    authorize_node(identity_of(context), node, action)


class AgentsService(agents_pb2_grpc.AgentsServicer):
    def __init__(self, registry: Registry, heartbeats: HeartbeatTracker, forwarder: LeaderForwarder,
                 write_timeout: float, usage: UsageStore | None = None, record_events: bool = True) -> None:
        self._registry = registry
        self._record_events = record_events
        self._usage = usage if usage is not None else UsageStore()
        self._replica = registry.replica
        self._heartbeats = heartbeats
        self._forwarder = forwarder
        self._write_timeout = write_timeout
        self._to_forward: set[str] = set()
        self._forward_task: asyncio.Task[None] | None = None

    @unary
    async def RegisterNode(self, request: agents_pb2.RegisterNodeRequest, context: grpc.aio.ServicerContext
                           ) -> objects_pb2.Node:
        node = request.node
        if not node.metadata.name:
            raise Invalid("node.metadata.name: required")
        _authorize_node(context, node.metadata.name, "register")
        for _attempt in range(REGISTER_RETRIES):
            try:
                result = await wait_write(self._registry.register_node(node),
                                          time_left(context, self._write_timeout))
                assert isinstance(result, objects_pb2.Node)
                return result
            except (Conflict, AlreadyExists):
                # Another node took the same pod CIDR at the same moment: pick again.
                continue
        raise Conflict(f"node {node.metadata.name!r} kept changing during registration; retry")

    async def Heartbeat(self, request_iterator: AsyncIterator[agents_pb2.HeartbeatRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[agents_pb2.HeartbeatResponse]:
        async for beat in request_iterator:
            # One beat may speak for many nodes (the hollow fleet); node restriction applies to
            # every one of them, so a node's agent cannot keep another node Ready.
            names = [beat.node, *beat.nodes]
            try:
                if not beat.node or not all(beat.nodes):
                    raise Invalid("node: required" if not beat.node else "nodes: every item must name a node")
                for name in names:
                    _authorize_node(context, name, "heartbeat")
            except RaftorchError as err:
                await context.abort(err.grpc_code, err.message)
            self._received(names)
            leader = ""
            with contextlib.suppress(RaftorchError):
                leader = self._forwarder.leader_client_addr()
            yield agents_pb2.HeartbeatResponse(sequence=beat.sequence, leader=leader)

    @unary
    async def ForwardHeartbeats(self, request: agents_pb2.HeartbeatBatch, context: grpc.aio.ServicerContext
                                ) -> agents_pb2.HeartbeatBatchResponse:
        authorize_heartbeat_forwarding(identity_of(context))
        self._received(list(request.nodes))
        return agents_pb2.HeartbeatBatchResponse()

    def _received(self, nodes: list[str]) -> None:
        if self._replica.is_leader:
            self._heartbeats.record(nodes)
            return
        # Followers pass heartbeats on to the leader in batches.
        self._to_forward.update(nodes)
        if self._forward_task is None or self._forward_task.done():
            self._forward_task = asyncio.create_task(self._forward_soon())

    async def _forward_soon(self) -> None:
        await asyncio.sleep(FORWARD_INTERVAL)
        nodes, self._to_forward = sorted(self._to_forward), set()
        if not nodes:
            return
        if self._replica.is_leader:
            self._heartbeats.record(nodes)
            return
        try:
            stub = agents_pb2_grpc.AgentsStub(self._forwarder.channel(self._forwarder.leader_client_addr()))
            await stub.ForwardHeartbeats(agents_pb2.HeartbeatBatch(nodes=nodes), timeout=2.0)
        except (RaftorchError, grpc.aio.AioRpcError) as exc:
            log.warning("heartbeat_forward_failed", nodes=len(nodes), error=str(exc))

    @unary
    async def ReportPodStatus(self, request: agents_pb2.ReportPodStatusRequest,
                              context: grpc.aio.ServicerContext) -> agents_pb2.ReportPodStatusResponse:
        if not request.node:
            raise Invalid("node: required")
        # One report may speak for the pods of many nodes (the hollow fleet: each update names
        # its node); node restriction applies to every node named, before anything is read.
        owners = [u.node or request.node for u in request.updates]
        for name in sorted({request.node, *owners}):
            _authorize_node(context, name, "report pod status")
        nodes: dict[str, objects_pb2.Node | None] = {}

        def node_of(name: str) -> objects_pb2.Node | None:
            if name not in nodes:
                nodes[name] = self._node(name)
            return nodes[name]

        for update, owner in zip(request.updates, owners, strict=True):
            check_pod_address(functools.partial(node_of, owner), update.status, f"{update.namespace}/{update.name}")

        def bound_here(i: int, pod: Message) -> None:
            # Node restriction: a node reports about the pods bound to it, and nothing else.
            if pod.spec.node_name != owners[i]:  # type: ignore[attr-defined]
                meta = pod.metadata  # type: ignore[attr-defined]
                raise PermissionDenied(f"pod {meta.namespace}/{meta.name} is not bound to node {owners[i]}")

        # The narrow path: each pod read once, its status alone replaced and checked, the whole
        # report in one transaction (refused whole if any pod is not its node's); a pod that
        # changed meanwhile is retried alone.
        patches = [StatusPatch(u.namespace or "default", u.name, u.uid, u.status) for u in request.updates]
        outcomes = self._registry.patch_statuses(POD, patches, bound_here)
        gone = [u.uid for u, f in zip(request.updates, outcomes, strict=True) if f is None]
        written = [(u, f) for u, f in zip(request.updates, outcomes, strict=True) if f is not None]
        waits = []
        if written:
            batch = [settled(f) for _, f in written]
            done, _ = await asyncio.wait(batch, timeout=time_left(context, self._write_timeout))
            for (update, _), waited in zip(written, batch, strict=True):
                if waited not in done:
                    raise UnknownOutcome("a pod status was not confirmed in time (no quorum?); it may still be applied")
                error = waited.exception()
                if isinstance(error, Conflict):
                    waits.append(self._set_status(update.node or request.node, update, context))
                elif error is not None and not isinstance(error, NotFound):
                    raise error
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, NotFound):
                raise result
        return agents_pb2.ReportPodStatusResponse(gone=gone)

    def _node(self, name: str) -> objects_pb2.Node | None:
        try:
            node = self._registry.get(kind_of("Node"), "", name)
        except NotFound:
            return None
        assert isinstance(node, objects_pb2.Node)
        return node

    async def _set_status(self, node: str, update: agents_pb2.PodStatusUpdate,
                          context: grpc.aio.ServicerContext) -> None:
        """One pod's status again, after its batch found it changed: re-read each time."""
        for _attempt in range(STATUS_RETRIES):
            pod = self._registry.get(POD, update.namespace or "default", update.name)
            assert isinstance(pod, objects_pb2.Pod)
            if pod.metadata.uid != update.uid:
                return
            if pod.spec.node_name != node:
                raise PermissionDenied(f"pod {update.namespace}/{update.name} is not bound to node {node}")
            pod.status.CopyFrom(update.status)
            try:
                await wait_write(self._registry.update(pod, status_only=True),
                                 time_left(context, self._write_timeout))
                return
            except Conflict:
                continue
        raise Conflict(f"pod {update.namespace}/{update.name} kept changing; status not saved")

    @unary
    async def ReportEvents(self, request: agents_pb2.ReportEventsRequest,
                           context: grpc.aio.ServicerContext) -> agents_pb2.ReportEventsResponse:
        """Store events about pods bound to `node` (a node writes about its own pods only). The
        name is recomputed from the content, so a node cannot overwrite anyone else's event."""
        if not request.node:
            raise Invalid("node: required")
        _authorize_node(context, request.node, "report events")
        for i, event in enumerate(request.events):
            check_reported_event(event, f"events[{i}]")
            if event.involved_object.kind != "Pod":
                raise PermissionDenied(f"events[{i}]: a node reports events about its pods only, not "
                                       f"{event.involved_object.kind!r}")
        if not self._record_events:
            return agents_pb2.ReportEventsResponse()
        written = 0
        for i, event in enumerate(request.events):
            ref = event.involved_object
            pod = self._own_pod(request.node, ref.namespace, ref.name, ref.uid, f"events[{i}]")
            if pod is None:
                continue  # the pod is gone: so is the interest in its events
            stored = objects_pb2.Event()
            stored.CopyFrom(event)
            stored.source = f"agent/{request.node}"
            stored.metadata.Clear()
            stored.metadata.namespace = pod.metadata.namespace
            stored.metadata.name = event_name(Ref("Pod", pod.metadata.namespace, pod.metadata.name,
                                                  pod.metadata.uid), event.reason, event.message, stored.source)
            stored.involved_object.uid = pod.metadata.uid
            # One after another: events of one pod are stored in the order they happened.
            try:
                await wait_write(upsert_event(self._registry, stored), time_left(context, self._write_timeout))
                written += 1
            except (Conflict, AlreadyExists, NotFound):
                continue  # a concurrent write of the same event, or the pod went: the next report retries
        return agents_pb2.ReportEventsResponse(written=written)

    @unary
    async def ReportUsage(self, request: agents_pb2.NodeUsage,
                          context: grpc.aio.ServicerContext) -> agents_pb2.ReportUsageResponse:
        if not request.node:
            raise Invalid("node: required")
        _authorize_node(context, request.node, "report usage")
        check_node_usage(request)
        own = [p for i, p in enumerate(request.pods)
               if self._own_pod(request.node, p.namespace, p.name, p.uid, f"pods[{i}]") is not None]
        if len(own) != len(request.pods):
            del request.pods[:]
            request.pods.extend(own)
        if self._replica.is_leader:
            self._usage.record(request)
            return agents_pb2.ReportUsageResponse()
        stub = agents_pb2_grpc.AgentsStub(self._forwarder.channel(self._forwarder.leader_client_addr()))
        await stub.ReportUsage(request, timeout=time_left(context, 2.0))
        return agents_pb2.ReportUsageResponse()

    def _own_pod(self, node: str, namespace: str, name: str, uid: str, where: str) -> objects_pb2.Pod | None:
        """The pod a node reports about, if it is still there (None: gone, or replaced by a newer
        pod of that name); PermissionDenied when it is bound to another node (node restriction)."""
        try:
            pod = self._registry.get(kind_of("Pod"), namespace, name)
        except NotFound:
            return None
        assert isinstance(pod, objects_pb2.Pod)
        if uid and uid != pod.metadata.uid:
            return None
        if pod.spec.node_name != node:
            raise PermissionDenied(f'{where}: pod {namespace}/{name} is not bound to node "{node}"; a node reports '
                                   "about its own pods only")
        return pod

    @unary
    async def GetUsage(self, request: agents_pb2.GetUsageRequest,
                       context: grpc.aio.ServicerContext) -> agents_pb2.GetUsageResponse:
        if self._replica.is_leader:
            return agents_pb2.GetUsageResponse(nodes=self._usage.latest())
        stub = agents_pb2_grpc.AgentsStub(self._forwarder.channel(self._forwarder.leader_client_addr()))
        response: agents_pb2.GetUsageResponse = await stub.GetUsage(request, timeout=time_left(context, 5.0))
        return response

    # Live events are yielded as bytes: encoded once for every watch (watch_share.py).
    async def WatchNodePods(self, request: agents_pb2.WatchNodePodsRequest, context: grpc.aio.ServicerContext  # type: ignore[override]
                            ) -> AsyncIterator[resources_pb2.ObjectEvent | bytes]:
        node = request.node
        # Errors raised here reach the agent with their own code (see edge.py).
        if not node:
            raise Invalid("node: required")
        if not all(request.nodes):
            raise Invalid("nodes: every item must name a node")
        if not 0 <= request.resource_version <= MAX_ID:
            raise Invalid(f"resource_version: must be between 0 and 2^62, got {request.resource_version}")
        # One watch may be for many nodes (the hollow fleet); node restriction applies to each.
        nodes = frozenset([node, *request.nodes])
        try:
            for name in sorted(nodes):
                _authorize_node(context, name, "watch the pods")
        except RaftorchError as err:
            await context.abort(err.grpc_code, err.message)

        def bound_here(msg: object) -> bool:
            return isinstance(msg, objects_pb2.Pod) and msg.spec.node_name in nodes

        async for event in watch_objects(self._replica, kind_of("Pod"), "", bound_here, request.resource_version,
                                         context):
            yield event
