"""Where a port-forward may go: checked by the master's relay and again by the agent."""

from __future__ import annotations

import pytest

from raftorch.agent.endpoint import forward_target
from raftorch.agent.runtime.base import EXITED, LABEL_POD_UID, RUNNING, ContainerInfo
from raftorch.api.v1 import objects_pb2
from raftorch.errors import Conflict, Invalid, NotFound, PermissionDenied, Unavailable
from raftorch.master.pods_service import check_forward

NODE_IP = "10.0.0.21"


def pod(*, host_network: bool = False, pod_ip: str = "10.244.1.5", phase: str = "Running") -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid="u1"),
        spec=objects_pb2.PodSpec(host_network=host_network, containers=[objects_pb2.Container(
            name="c", image="i", ports=[objects_pb2.ContainerPort(container_port=8080)])]),
        status=objects_pb2.PodStatus(phase=phase, pod_ip=pod_ip, host_ip=NODE_IP))


def container(ip: str, state: str = RUNNING, uid: str = "u1") -> ContainerInfo:
    return ContainerInfo(id="x", state=state, labels={LABEL_POD_UID: uid}, ip=ip)


def test_the_agent_connects_to_the_address_its_runtime_gave_not_the_status() -> None:
    forged = pod(pod_ip="127.0.0.2")
    assert forward_target(forged, [container("10.244.1.5")], 22, NODE_IP) == ("10.244.1.5", 22)


def test_the_agent_refuses_pods_it_does_not_run() -> None:
    with pytest.raises(NotFound):
        forward_target(None, [container("10.244.1.5")], 80, NODE_IP)
    with pytest.raises(Unavailable, match="no running container"):
        forward_target(pod(), [container("10.244.1.5", uid="other"), container("10.244.1.6", state=EXITED)],
                       80, NODE_IP)


def test_pods_on_the_node_address_are_reachable_on_declared_ports_only() -> None:
    host = pod(host_network=True, pod_ip=NODE_IP)
    assert forward_target(host, [container("")], 8080, NODE_IP) == (NODE_IP, 8080)
    with pytest.raises(PermissionDenied, match=r"declare \(8080\), not port 22"):
        forward_target(host, [container("")], 22, NODE_IP)
    # The process runtime gives its pods the node's address.
    with pytest.raises(PermissionDenied):
        forward_target(pod(pod_ip=NODE_IP), [container(NODE_IP)], 22, NODE_IP)


def test_the_relay_wants_a_running_pod_with_an_address() -> None:
    check_forward(pod(), 22)
    with pytest.raises(Conflict, match="is not running"):
        check_forward(pod(pod_ip=""), 80)
    with pytest.raises(Conflict, match="is not running"):
        check_forward(pod(phase="Pending"), 80)
    mirror = pod()
    mirror.metadata.annotations["raftorch.io/mirror"] = "true"
    with pytest.raises(Invalid, match="system process"):
        check_forward(mirror, 80)


def test_the_relay_keeps_host_address_pods_to_declared_ports() -> None:
    check_forward(pod(host_network=True, pod_ip=NODE_IP), 8080)
    with pytest.raises(PermissionDenied, match="not port 22"):
        check_forward(pod(host_network=True, pod_ip=NODE_IP), 22)
    with pytest.raises(PermissionDenied):
        check_forward(pod(pod_ip=NODE_IP), 2379)
