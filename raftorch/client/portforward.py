"""port-forward: a local TCP port tunnelled through a master to a pod, one gRPC stream per
connection. The target is resolved again for every connection, so forwarding to a
deployment or a service keeps working after its pod is replaced."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import structlog

from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.errors import Invalid, NotFound, RaftorchError, from_grpc_code
from raftorch.objects import parse_label_selector, pod_is_ready

if TYPE_CHECKING:
    from raftorch.client.client import Client

log = structlog.get_logger("raftorch.portforward")


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    pod: str
    port: int


def _ready_pod(client: Client, namespace: str, selector: str, what: str) -> objects_pb2.Pod:
    pods, _ = client.objects.list("pods", namespace, label_selector=selector)
    ready = [p for p in pods if isinstance(p, objects_pb2.Pod) and p.status.phase == "Running"
             and pod_is_ready(p) and not p.metadata.deletion_timestamp]
    if not ready:
        raise NotFound(f"no ready pod for {what}")
    return sorted(ready, key=lambda p: p.metadata.name)[0]


def _container_port(pod: objects_pb2.Pod, name: str) -> int:
    for c in pod.spec.containers:
        for p in c.ports:
            if p.name == name:
                return p.container_port
    raise Invalid(f"pod {pod.metadata.name} has no container port named {name!r}")


def resolver(client: Client, ref: str, namespace: str, remote: int) -> Callable[[], Target]:
    """A function that finds the pod and port behind `pod/NAME`, `deployment/NAME` or `service/NAME`."""
    kind, sep, name = ref.partition("/")
    if not sep:
        kind, name = "pod", ref
    kind = {"po": "pod", "pods": "pod", "deploy": "deployment", "deployments": "deployment",
            "svc": "service", "services": "service"}.get(kind.lower(), kind.lower())
    if kind not in ("pod", "deployment", "service") or not name:
        raise Invalid(f"{ref!r}: expected pod/NAME, deployment/NAME or service/NAME")

    def resolve() -> Target:
        if kind == "pod":
            return Target(namespace, name, remote)
        if kind == "deployment":
            deploy = client.objects.get("deployment", name, namespace)
            assert isinstance(deploy, objects_pb2.Deployment)
            selector = ",".join(f"{k}={v}" for k, v in sorted(deploy.spec.selector.match_labels.items()))
            pod = _ready_pod(client, namespace, selector, f"deployment/{name}")
            return Target(namespace, pod.metadata.name, remote)
        svc = client.objects.get("service", name, namespace)
        assert isinstance(svc, objects_pb2.Service)
        port = next((p for p in svc.spec.ports if p.port == remote), None)
        if port is None:
            known = ", ".join(str(p.port) for p in svc.spec.ports)
            raise Invalid(f"service/{name} has no port {remote} (its ports: {known})")
        selector = ",".join(f"{k}={v}" for k, v in sorted(svc.spec.selector.items()))
        parse_label_selector(selector)
        pod = _ready_pod(client, namespace, selector, f"service/{name}")
        target = port.target_port or str(port.port)
        number = int(target) if target.isdigit() else _container_port(pod, target)
        return Target(namespace, pod.metadata.name, number)

    return resolve


class PortForwarder:
    def __init__(self, client: Client, resolve: Callable[[], Target], local_port: int,
                 address: str = "127.0.0.1") -> None:
        self._client = client
        self._resolve = resolve
        self._stop = threading.Event()
        self._listener = socket.create_server((address, local_port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self.connections = 0

    def check(self) -> Target:
        """Resolve once now, so a bad target fails before anyone connects."""
        return self._resolve()

    def serve_forever(self) -> None:
        self._listener.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _handle(self, conn: socket.socket) -> None:
        try:
            target = self._resolve()
        except RaftorchError as err:
            log.warning("port_forward_no_target", error=str(err))
            conn.close()
            return
        conn_conn = self._client._conn

        def frames() -> Iterator[agents_pb2.PortForwardFrame]:
            yield agents_pb2.PortForwardFrame(namespace=target.namespace, pod=target.pod, port=target.port)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    yield agents_pb2.PortForwardFrame(eof=True)
                    return
                yield agents_pb2.PortForwardFrame(data=data)

        address = conn_conn._candidate()
        try:
            stub = agents_pb2_grpc.PodsStub(conn_conn.stubs(address).channel)
            for frame in stub.PortForward(frames()):
                if frame.data:
                    conn.sendall(frame.data)
                if frame.eof:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
        except grpc.RpcError as exc:
            failure = from_grpc_code(exc.code(), exc.details() or "")
            log.warning("port_forward_failed", pod=target.pod, error=str(failure))
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                conn_conn._failed(address)
        except OSError:
            pass
        finally:
            conn.close()
