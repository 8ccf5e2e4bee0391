"""The Pods gRPC service: things about pods that only their node's agent knows (logs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.errors import Conflict, Invalid, PermissionDenied, RaftorchError, Unavailable
from raftorch.master.forward import LeaderForwarder
from raftorch.master.registry import Registry
from raftorch.objects import NODE, POD


def check_forward(pod: objects_pb2.Pod, port: int) -> None:
    """A tunnel goes only to a pod the store shows running, with an address its agent reported;
    a pod on the node's own address only on the ports its containers declare (the agent checks
    the same against what its runtime runs)."""
    where = f"pod {pod.metadata.namespace}/{pod.metadata.name}"
    if pod.metadata.annotations.get("raftorch.io/mirror") == "true":
        raise Invalid(f"{where} stands for a system process: it cannot be port-forwarded to")
    if pod.status.phase != "Running" or not pod.status.pod_ip:
        raise Conflict(f"{where} is not running (phase {pod.status.phase or 'Pending'})")
    declared = {p.container_port for c in pod.spec.containers for p in c.ports}
    shares_host = pod.spec.host_network or pod.status.pod_ip == pod.status.host_ip
    if shares_host and port not in declared:
        listed = ", ".join(str(p) for p in sorted(declared)) or "none"
        raise PermissionDenied(f"{where} shares the node's address: port-forward reaches only the ports its "
                               f"containers declare ({listed}), not port {port}")


class PodsService(agents_pb2_grpc.PodsServicer):
    def __init__(self, registry: Registry, forwarder: LeaderForwarder) -> None:
        self._registry = registry
        self._forwarder = forwarder

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
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        try:
            pod = self._registry.get(POD, first.namespace or "default", first.pod)
            assert isinstance(pod, objects_pb2.Pod)
            if not first.port or not 0 < first.port < 65536:
                raise Invalid(f"port: {first.port} is not a port")
            check_forward(pod, first.port)
            endpoint, _ = self.agent_endpoint(first.namespace, first.pod, pod.spec.containers[0].name)
        except RaftorchError as err:
            await context.abort(err.grpc_code, err.message)
        call = agents_pb2_grpc.NodeAgentStub(self._forwarder.channel(endpoint)).PortForward()
        first.namespace = first.namespace or "default"

        async def upstream() -> None:
            await call.write(first)
            async for frame in request_iterator:
                await call.write(frame)
            await call.done_writing()

        pump = asyncio.create_task(upstream())
        try:
            async for frame in call:
                yield frame
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or exc.code().name)
        finally:
            pump.cancel()

    async def Logs(self, request: agents_pb2.LogsRequest, context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[agents_pb2.LogChunk]:
        try:
            endpoint, container = self.agent_endpoint(request.namespace, request.pod, request.container)
        except RaftorchError as err:
            await context.abort(err.grpc_code, err.message)
        forwarded = agents_pb2.LogsRequest()
        forwarded.CopyFrom(request)
        forwarded.namespace = request.namespace or "default"
        forwarded.container = container
        stub = agents_pb2_grpc.NodeAgentStub(self._forwarder.channel(endpoint))
        try:
            async for chunk in stub.Logs(forwarded):
                yield chunk
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                await context.abort(code, f"the agent at {endpoint} is unreachable: {exc.details()}")
            await context.abort(code, exc.details() or code.name)
