"""The agent endpoint's streams cannot starve each other or the agent (on main, 34 idle
port-forward streams took all 32 workers, after which Logs timed out)."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from raftorch import rpc
from raftorch.agent.certs import NodeCert
from raftorch.agent.endpoint import NodeAgentEndpoint, StreamLimits, serve
from raftorch.agent.runtime.base import container_spec
from raftorch.agent.runtime.fake import FakeRuntime
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.auth.master_only import MasterOnlyInterceptor
from raftorch.auth.pki import ensure_ca, issue_node
from raftorch.master import pods_service
from tests.integration._inprocess import InProcessMaster

OLD_WORKERS = 32
WAIT = 20.0


class IdleServer:
    """The pod's port: accepts connections and never says a word."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, f"{len(self.accepted)} of {count} tunnels connected"
            time.sleep(0.02)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class SlowLogRuntime(FakeRuntime):
    """Followed logs that stay open (a quiet container) until released."""

    def __init__(self) -> None:
        # The pod's container gets a loopback address (127.0.0.x), where the pod's port listens.
        super().__init__(ip_prefix="127.0.")
        self.release = threading.Event()

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        if not follow:
            return super().logs(container_id, tail, follow)

        def quiet() -> Iterator[bytes]:
            yield b"started\n"
            self.release.wait(WAIT)

        return quiet()


@dataclass
class Node:
    limits: StreamLimits
    runtime: SlowLogRuntime = field(default_factory=SlowLogRuntime)
    # A node certificate: the endpoint then serves TLS to masters only, as a real agent does.
    cert: NodeCert | None = None
    pod: objects_pb2.Pod = field(default_factory=lambda: objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid="uid-web"),
        spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="busybox")]),
        status=objects_pb2.PodStatus(pod_ip="127.0.0.1")))

    def __post_init__(self) -> None:
        info = self.runtime.create_and_start(container_spec(self.pod, self.pod.spec.containers[0], "n1", 0))
        self.runtime.write_log(info.id, b"hello\n")
        self.endpoint = NodeAgentEndpoint(self.find, self.runtime, "n1", self.limits)
        cert = self.cert
        guard = [] if cert is None else [MasterOnlyInterceptor()]
        self.server, port = serve(self.endpoint, "127.0.0.1:0", interceptors=guard,
                                  tls=cert.server_tls() if cert is not None else None)
        self.endpoint_address = f"127.0.0.1:{port}"
        self.channel = rpc.channel(self.endpoint_address)
        self.stub = agents_pb2_grpc.NodeAgentStub(self.channel)
        self.pod_port = IdleServer(info.ip)  # where the runtime says the pod's container is
        self.calls: list[grpc.Future] = []

    def find(self, namespace: str, name: str) -> objects_pb2.Pod | None:
        return self.pod if (namespace, name) == ("default", "web") else None

    def tunnel(self) -> tuple[grpc.Future, queue.Queue[agents_pb2.PortForwardFrame | None]]:
        frames: queue.Queue[agents_pb2.PortForwardFrame | None] = queue.Queue()
        frames.put(agents_pb2.PortForwardFrame(namespace="default", pod="web", port=self.pod_port.port))

        def requests() -> Iterator[agents_pb2.PortForwardFrame]:
            while (frame := frames.get()) is not None:
                yield frame

        call = self.stub.PortForward(requests())
        self.calls.append(call)
        return call, frames

    def logs(self, follow: bool = False) -> grpc.Future:
        call = self.stub.Logs(agents_pb2.LogsRequest(namespace="default", pod="web", container="c", follow=follow),
                              timeout=WAIT)
        self.calls.append(call)
        return call

    def read_logs(self) -> bytes:
        return b"".join(chunk.data for chunk in self.logs())

    def close(self) -> None:
        self.runtime.release.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()
        self.server.stop(0).wait(5)
        self.pod_port.close()


@pytest.fixture
def make_node() -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(cert: NodeCert | None = None, **limits: Any) -> Node:
        made.append(Node(StreamLimits(**limits), cert=cert))
        return made[-1]

    yield make
    for n in made:
        n.close()


def refused(call: grpc.Future) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        next(iter(call))
    return err.value.code()  # type: ignore[no-any-return]


def test_idle_tunnels_beyond_the_old_worker_count_leave_logs_answering(make_node: Callable[..., Node]) -> None:
    node = make_node()
    for _ in range(OLD_WORKERS + 8):
        node.tunnel()
    node.pod_port.wait_for(OLD_WORKERS + 8)
    assert node.read_logs() == b"hello\n"


def test_tunnels_beyond_their_cap_are_refused_and_logs_still_answer(make_node: Callable[..., Node]) -> None:
    node = make_node(port_forwards=3, logs=2, others=1)
    for _ in range(3):
        node.tunnel()
    node.pod_port.wait_for(3)
    extra, _ = node.tunnel()
    assert refused(extra) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert node.read_logs() == b"hello\n"
    # A tunnel that closes gives its place back.
    node.calls[0].cancel()
    deadline = time.monotonic() + WAIT
    while node.endpoint.port_forwards.open == 3:
        assert time.monotonic() < deadline, "the cancelled tunnel kept its place"
        time.sleep(0.02)
    again, _ = node.tunnel()
    node.pod_port.wait_for(4)
    assert not again.done()


def test_followed_logs_beyond_their_cap_are_refused_and_tunnels_still_open(make_node: Callable[..., Node]) -> None:
    node = make_node(port_forwards=3, logs=2, others=1)
    held = [node.logs(follow=True) for _ in range(2)]
    for call in held:
        assert next(iter(call)).data == b"started\n"
    assert refused(node.logs(follow=True)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    node.tunnel()
    node.pod_port.wait_for(1)


def test_an_idle_tunnel_is_closed(make_node: Callable[..., Node]) -> None:
    node = make_node(idle_timeout=0.5)
    call, _ = node.tunnel()
    node.pod_port.wait_for(1)
    assert refused(call) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert node.endpoint.port_forwards.open == 0


@dataclass
class Relay:
    """A master relaying to the test's agent endpoint, which runs pod default/web on node n1."""

    master: InProcessMaster
    node: Node
    stub: agents_pb2_grpc.PodsStub
    release: threading.Event = field(default_factory=threading.Event)

    def tunnel(self, port: int) -> grpc.Future:
        first = agents_pb2.PortForwardFrame(namespace="default", pod="web", port=port)

        def requests() -> Iterator[agents_pb2.PortForwardFrame]:
            yield first
            self.release.wait(WAIT)

        return self.stub.PortForward(requests())

    def read_logs(self) -> bytes:
        chunks = self.stub.Logs(agents_pb2.LogsRequest(namespace="default", pod="web"), timeout=WAIT)
        return b"".join(chunk.data for chunk in chunks)


@pytest.fixture
def relay(make_node: Callable[..., Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    monkeypatch.setattr(pods_service, "MAX_PORT_FORWARDS", 6)
    master = InProcessMaster(tmp_path / "m1")
    try:
        ca, _ = ensure_ca(master.config.pki_dir)
        pair = issue_node(ca, "n1", "127.0.0.1")
        node = make_node(cert=NodeCert(ca.cert_pem, pair.cert_pem, pair.key_pem))
        master.wait_ready()
        pod_ip = node.pod_port.sock.getsockname()[0]
        with rpc.channel(master.master.client_addr, master.credentials) as channel:
            # Registered as n1's agent would register it; a loopback pod address must be the
            # node's own, and then only the pod's declared ports may be forwarded to.
            agents_pb2_grpc.AgentsStub(channel).RegisterNode(agents_pb2.RegisterNodeRequest(node=objects_pb2.Node(
                metadata=objects_pb2.ObjectMeta(name="n1"),
                status=objects_pb2.NodeStatus(agent_endpoint=node.endpoint_address, addresses=[
                    objects_pb2.NodeAddress(type="InternalIP", address=pod_ip)]))), timeout=WAIT)
        with master.client() as c:
            pod = objects_pb2.Pod()
            pod.CopyFrom(node.pod)
            pod.spec.node_name = "n1"
            pod.spec.containers[0].ports.add(container_port=node.pod_port.port)
            pod.ClearField("status")
            pod.metadata.uid = ""
            created = c.objects.create(pod)
        with rpc.channel(master.master.client_addr, master.credentials) as channel:
            # What n1's agent would report: the pod runs, at its container's address.
            agents_pb2_grpc.AgentsStub(channel).ReportPodStatus(agents_pb2.ReportPodStatusRequest(
                node="n1", updates=[agents_pb2.PodStatusUpdate(
                    namespace="default", name="web", uid=created.metadata.uid,
                    status=objects_pb2.PodStatus(phase="Running", pod_ip=pod_ip))]),
                timeout=WAIT)
            r = Relay(master, node, agents_pb2_grpc.PodsStub(channel))
            yield r
            r.release.set()
    finally:
        master.close()


def test_relayed_tunnels_closed_by_their_clients_close_on_the_agent(relay: Relay) -> None:
    node = relay.node
    calls = [relay.tunnel(node.pod_port.port) for _ in range(5)]
    node.pod_port.wait_for(5)
    assert node.endpoint.port_forwards.open == 5
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + WAIT
    while node.endpoint.port_forwards.open:
        assert time.monotonic() < deadline, "tunnels stayed open on the agent"
        time.sleep(0.05)
    assert relay.read_logs() == b"hello\n"


def test_relays_beyond_the_masters_cap_are_refused_and_logs_still_answer(relay: Relay) -> None:
    node = relay.node
    calls = [relay.tunnel(node.pod_port.port) for _ in range(6)]
    node.pod_port.wait_for(6)
    extra = relay.tunnel(node.pod_port.port)
    with pytest.raises(grpc.RpcError) as err:
        next(iter(extra))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "port-forward" in (err.value.details() or "")
    assert relay.read_logs() == b"hello\n"
    for call in calls:
        call.cancel()
