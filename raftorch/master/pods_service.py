"""The Pods gRPC service: things about pods that only their node's agent knows (logs, tunnels).

Both are relayed to the agent of the pod's node. Each kind of relay has a cap of its own
(RESOURCE_EXHAUSTED beyond it), and a relay whose client goes away cancels its call to the
agent, so nothing stays open on the agent for a stream nobody reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from raftorch import rpc
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.errors import Conflict, Invalid, RaftorchError, Unavailable
from raftorch.master.forward import LeaderForwarder
from raftorch.master.registry import Registry
from raftorch.objects import NODE, POD, check_host_port_forward, is_mirror

# Streams relayed by one master at once, per kind: an asyncio relay costs little, but each
# holds a stream on an agent, and agents cap theirs too.
MAX_PORT_FORWARDS = 256
MAX_LOG_STREAMS = 256


def check_forward(pod: objects_pb2.Pod, port: int) -> None:
    """A tunnel goes only to a pod the store shows running, with an address its agent reported;
    a pod on the node's own address only on the ports its containers declare (the agent checks
    the same against what its runtime runs)."""
    where = f"pod {pod.metadata.namespace}/{pod.metadata.name}"
    if is_mirror(pod):
        raise Invalid(f"{where} stands for a system process: it cannot be port-forwarded to")
    if pod.status.phase != "Running" or not pod.status.pod_ip:
        raise Conflict(f"{where} is not running (phase {pod.status.phase or 'Pending'})")
    if pod.spec.host_network or pod.status.pod_ip == pod.status.host_ip:
        check_host_port_forward(pod, port)


class PodsService(agents_pb2_grpc.PodsServicer):
    def __init__(self, registry: Registry, forwarder: LeaderForwarder, max_port_forwards: int | None = None,
                 max_log_streams: int | None = None) -> None:
        self._registry = registry
        self._forwarder = forwarder
        self.port_forwards = rpc.StreamSlots("port-forward", max_port_forwards or MAX_PORT_FORWARDS)
        self.logs = rpc.StreamSlots("log", max_log_streams or MAX_LOG_STREAMS)

    def agent_endpoint(self, namespace: str, name: str, container: str) -> tuple[str, str]:
        """The agent serving the pod, and the container meant (the only one when not named)."""
        pod = self._registry.get(POD, namespace or "default", name)
        assert isinstance(pod, objects_pb2.Pod)
        names = [c.name for c in pod.spec.containers]
        if not container:
            if len(names) != 1:
                raise Invalid(f"pod {name} has several containers; choose one of: {', '.join(names)}")
            container = names[0]
        elif container not in names:
            raise Invalid(f"container {container!r} is not in pod {name} (containers: {', '.join(names)})")
        if not pod.spec.node_name:
            raise Conflict(f"pod {name} is not scheduled to a node yet")
        node = self._registry.get(NODE, "", pod.spec.node_name)
        assert isinstance(node, objects_pb2.Node)
        if not node.status.agent_endpoint:
            raise Unavailable(f"the agent of node {pod.spec.node_name} has no endpoint for logs")
        return node.status.agent_endpoint, container

    async def PortForward(self, request_iterator: AsyncIterator[agents_pb2.PortForwardFrame],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[agents_pb2.PortForwardFrame]:
        """Relay one tunnelled connection to the agent of the pod's node."""
        try:
            with self.port_forwards.take():
                async for frame in self._port_forward(request_iterator, context):
                    yield frame
        except RaftorchError as err:
            await context.abort(err.grpc_code, err.message)

    async def _port_forward(self, request_iterator: AsyncIterator[agents_pb2.PortForwardFrame],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[agents_pb2.PortForwardFrame]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        pod = self._registry.get(POD, first.namespace or "default", first.pod)
        assert isinstance(pod, objects_pb2.Pod)
        if not first.port or not 0 < first.port < 65536:
            raise Invalid(f"port: {first.port} is not a port")
        check_forward(pod, first.port)
        endpoint, _ = self.agent_endpoint(first.namespace, first.pod, pod.spec.containers[0].name)
        call = agents_pb2_grpc.NodeAgentStub(self._forwarder.channel(endpoint)).PortForward()
        first.namespace = first.namespace or "default"

        async def upstream() -> None:
            try:
                await call.write(first)
                async for frame in request_iterator:
                    await call.write(frame)
                await call.done_writing()
            except (grpc.aio.AbortError, grpc.aio.AioRpcError, asyncio.InvalidStateError):
                # A bad frame ended the call (the edge told the client why), or the agent did.
                call.cancel()

        pump = asyncio.create_task(upstream())
        try:
            async for frame in call:
                yield frame
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or exc.code().name)
        finally:
            pump.cancel()
            call.cancel()

    async def Logs(self, request: agents_pb2.LogsRequest, context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[agents_pb2.LogChunk]:
        try:
            with self.logs.take():
                async for chunk in self._logs(request, context):
                    yield chunk
        except RaftorchError as err:
            await context.abort(err.grpc_code, err.message)

    async def _logs(self, request: agents_pb2.LogsRequest, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[agents_pb2.LogChunk]:
        if request.tail_lines < 0:
            raise Invalid(f"tail_lines: must not be negative, got {request.tail_lines}")
        endpoint, container = self.agent_endpoint(request.namespace, request.pod, request.container)
        forwarded = agents_pb2.LogsRequest()
        forwarded.CopyFrom(request)
        forwarded.namespace = request.namespace or "default"
        forwarded.container = container
        call = agents_pb2_grpc.NodeAgentStub(self._forwarder.channel(endpoint)).Logs(forwarded)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                await context.abort(code, f"the agent at {endpoint} is unreachable: {exc.details()}")
            await context.abort(code, exc.details() or code.name)
        finally:
            call.cancel()
