"""The agent endpoint: a pod's logs and port-forward tunnels, for the masters to relay.

Each open stream holds one of the server's worker threads (and a tunnel one more thread), so
every kind of stream has its own cap, answered with RESOURCE_EXHAUSTED, and the pool has
room for all of them plus workers for everything else: idle tunnels cannot starve Logs, nor
the reverse. A tunnel with no bytes either way for `idle_timeout` is closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from raftorch import rpc
from raftorch.agent.runtime.base import RUNNING, ContainerInfo, ContainerRuntime
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.errors import NotFound, RaftorchError, Unavailable
from raftorch.objects import check_host_port_forward, is_mirror

FindPod = Callable[[str, str], "objects_pb2.Pod | None"]
# How often a blocked tunnel looks up from its socket (client gone? idle too long?).
POLL = 0.5


@dataclass(frozen=True, slots=True)
class StreamLimits:
    port_forwards: int = 64
    logs: int = 32
    # Workers no stream may take, for every other call.
    others: int = 8
    # Seconds without a byte either way after which a tunnel is closed (kubelet's
    # streaming-connection-idle-timeout is of this kind).
    idle_timeout: float = 900.0

    @property
    def workers(self) -> int:
        return self.port_forwards + self.logs + self.others





def forward_target(pod: objects_pb2.Pod | None, running: Sequence[ContainerInfo], port: int,
                   node_ip: str) -> tuple[str, int]:
    """Where a port-forward to `pod` connects: the address the runtime gave the pod's running
    containers (never an address from the pod's status, which a client could have written).
    A pod that shares the host's address (host network, process runtime) is reachable only on
    the ports its containers declare, not on every port of the host."""
    if pod is None:
        raise NotFound("the pod is not bound to this node")
    where = f"pod {pod.metadata.namespace}/{pod.metadata.name}"
    mine = [c for c in running if c.pod_uid == pod.metadata.uid and c.state == RUNNING]
    if not mine:
        raise Unavailable(f"{where} has no running container on this node")
    ip = next((c.ip for c in mine if c.ip), "") or (node_ip if pod.spec.host_network else "")
    if not ip:
        raise Unavailable(f"{where} has no address on this node yet")
    if ip == node_ip or pod.spec.host_network:
        check_host_port_forward(pod, port)
    return ip, port


class NodeAgentEndpoint(agents_pb2_grpc.NodeAgentServicer):
    def __init__(self, find_pod: FindPod, runtime: ContainerRuntime, node: str,
                 limits: StreamLimits | None = None, *, node_ip: str = "") -> None:
        self._find_pod = find_pod
        self._node_ip = node_ip
        self._runtime = runtime
        self._node = node
        self.limits = limits or StreamLimits()
        self.port_forwards = rpc.StreamSlots("port-forward", self.limits.port_forwards)
        self.logs = rpc.StreamSlots("log", self.limits.logs)

    def PortForward(self, request_iterator: Iterator[agents_pb2.PortForwardFrame],
                    context: grpc.ServicerContext) -> Iterator[agents_pb2.PortForwardFrame]:
        try:
            with self.port_forwards.take():
                yield from self._port_forward(request_iterator, context)
        except RaftorchError as err:
            context.abort(err.grpc_code, err.message)

    def _port_forward(self, request_iterator: Iterator[agents_pb2.PortForwardFrame],
                      context: grpc.ServicerContext) -> Iterator[agents_pb2.PortForwardFrame]:
        """Connect to the pod's port from this node and pipe the tunnel's bytes both ways."""
        first = next(request_iterator, None)
        if first is None:
            return
        pod = self._find_pod(first.namespace, first.pod)
        try:
            target = forward_target(None if pod is None or is_mirror(pod) else pod,
                                    self._runtime.list_containers(self._node), first.port, self._node_ip)
        except RaftorchError as err:
            context.abort(err.grpc_code, err.message)
        try:
            sock = socket.create_connection(target, timeout=5)
        except OSError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"cannot connect to {first.pod} port {first.port}: {exc.strerror or exc}")
        sock.settimeout(POLL)
        last_active = [time.monotonic()]

        def downstream_to_pod() -> None:
            try:
                for frame in request_iterator:
                    last_active[0] = time.monotonic()
                    if frame.data:
                        sock.sendall(frame.data)
                    if frame.eof:
                        sock.shutdown(socket.SHUT_WR)
                        return
            except (OSError, grpc.RpcError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

        pump = threading.Thread(target=downstream_to_pod, name="agent-port-forward", daemon=True)
        pump.start()
        idle = False
        try:
            while context.is_active():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    if time.monotonic() - last_active[0] >= self.limits.idle_timeout:
                        idle = True
                        break
                    continue
                if not data:
                    yield agents_pb2.PortForwardFrame(eof=True)
                    break
                last_active[0] = time.monotonic()
                yield agents_pb2.PortForwardFrame(data=data)
        finally:
            sock.close()
        pump.join(timeout=5)
        if idle:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"port-forward to {first.pod} port {first.port} closed: idle for "
                          f"{self.limits.idle_timeout:g} s")

    def Logs(self, request: agents_pb2.LogsRequest, context: grpc.ServicerContext) -> Iterator[agents_pb2.LogChunk]:
        try:
            with self.logs.take():
                yield from self._logs(request, context)
        except RaftorchError as err:
            context.abort(err.grpc_code, err.message)

    def _logs(self, request: agents_pb2.LogsRequest, context: grpc.ServicerContext) -> Iterator[agents_pb2.LogChunk]:
        pod = self._find_pod(request.namespace, request.pod)
        if pod is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.namespace}/{request.pod} is not on this node")
        assert pod is not None
        containers = [c for c in self._runtime.list_containers(self._node)
                      if c.pod_uid == pod.metadata.uid and c.container == request.container]
        if not containers:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"container {request.container} of pod {request.pod} has not started yet")
        newest = max(containers, key=lambda c: c.attempt)
        for data in self._runtime.logs(newest.id, tail=request.tail_lines or None, follow=request.follow):
            if not context.is_active():
                return
            yield agents_pb2.LogChunk(data=data)


def serve(endpoint: NodeAgentEndpoint, address: str, *, interceptors: Sequence[grpc.ServerInterceptor] = (),
          tls: rpc.ServerTLS | None = None,
          reload: Callable[[], rpc.ServerTLS | None] | None = None) -> tuple[grpc.Server, int]:
    """Start the endpoint's server on `address`; returns it and its port. With `tls`, only
    callers with a certificate of the cluster get in (the interceptors check it is a master);
    `reload` hands over a renewed certificate."""
    workers = endpoint.limits.workers
    server = rpc.server(max_workers=workers, maximum_concurrent_rpcs=workers, interceptors=interceptors)
    agents_pb2_grpc.add_NodeAgentServicer_to_server(endpoint, server)
    port = rpc.bind_sync(server, address, tls, reload)
    server.start()
    return server, port
