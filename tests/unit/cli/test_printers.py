"""raftctl's table columns: AGE, pod STATUS/READY/RESTARTS and the per-kind rows."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.cli import printers
from raftorch.objects import DEPLOYMENT, ENDPOINTS, EVENT, NODE, POD, SERVICE, format_time, parse_time

NOW = parse_time("2024-05-10T12:00:00Z")


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
    (180, "3m"), (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (2 * 3600 + 1800, "150m"),
    (3 * 3600, "3h"), (5 * 3600 + 30 * 60, "5h30m"), (20 * 3600, "20h"), (47 * 3600, "47h"), (4 * 86400, "4d"),
    (4 * 86400 + 6 * 3600, "4d6h"), (30 * 86400, "30d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_kubectl(seconds: float, text: str) -> None:
    assert printers.human_duration(seconds) == text


def test_age_of_a_timestamp() -> None:
    assert printers.age(format_time(NOW - 5), NOW) == "5s"
    assert printers.age(format_time(NOW - 3 * 60), NOW) == "3m"
    assert printers.age(format_time(NOW - 2 * 3600), NOW) == "120m"  # kubectl switches to hours at 3h
    assert printers.age(format_time(NOW - 3 * 3600), NOW) == "3h"
    assert printers.age(format_time(NOW - 4 * 86400), NOW) == "4d"
    assert printers.age("", NOW) == "<unknown>"
    assert printers.age("yesterday", NOW) == "<unknown>"


def pod(*states: objects_pb2.ContainerState, phase: str = "Running", ready: bool = False,
        restarts: int = 0) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = "web-1"
    p.metadata.creation_timestamp = format_time(NOW - 60)
    p.status.phase = phase
    for i, state in enumerate(states):
        p.spec.containers.add(name=f"c{i}", image="i")
        p.status.container_statuses.add(name=f"c{i}", state=state, ready=ready and state.state == "running",
                                        restart_count=restarts)
    return p


def state(kind: str, reason: str = "", exit_code: int = 0) -> objects_pb2.ContainerState:
    return objects_pb2.ContainerState(state=kind, reason=reason, exit_code=exit_code)


@pytest.mark.parametrize(("p", "ready", "status"), [
    (pod(phase=""), "0/0", "Pending"),
    (pod(state("running"), ready=True), "1/1", "Running"),
    (pod(state("running"), state("running"), ready=True), "2/2", "Running"),
    (pod(state("running"), ready=False), "0/1", "Running"),
    (pod(state("waiting", "ContainerCreating"), phase="Pending"), "0/1", "ContainerCreating"),
    (pod(state("waiting", "ErrImagePull"), phase="Pending"), "0/1", "ErrImagePull"),
    (pod(state("waiting", "CrashLoopBackOff"), restarts=4), "0/1", "CrashLoopBackOff"),
    # The first container's state wins, as in kubectl.
    (pod(state("waiting", "CrashLoopBackOff"), state("waiting", "ErrImagePull")), "0/2", "CrashLoopBackOff"),
    (pod(state("terminated", "Completed"), phase="Succeeded"), "0/1", "Completed"),
    (pod(state("terminated", exit_code=137), phase="Failed"), "0/1", "ExitCode:137"),
    (pod(state("terminated", "Completed"), state("running"), ready=True), "1/2", "NotReady"),
])
def test_pod_ready_and_status_like_kubectl(p: objects_pb2.Pod, ready: str, status: str) -> None:
    summary = printers.pod_summary(p, NOW)
    assert (summary.ready, summary.status) == (ready, status)


def test_pod_status_reason_and_terminating() -> None:
    p = pod(state("running"), ready=True)
    p.status.reason = "Evicted"
    p.status.container_statuses[0].state.state = ""
    assert printers.pod_summary(p, NOW).status == "Evicted"
    p = pod(state("running"), ready=True)
    p.metadata.deletion_timestamp = format_time(NOW)
    assert printers.pod_summary(p, NOW).status == "Terminating"


def test_restarts_say_when_the_last_one_was() -> None:
    p = pod(state("running"), ready=True, restarts=3)
    assert printers.pod_summary(p, NOW).restarts == "3"
    p.status.container_statuses[0].last_state.state = "terminated"
    p.status.container_statuses[0].last_state.finished_at = format_time(NOW - 120)
    assert printers.pod_summary(p, NOW).restarts == "3 (2m ago)"


def test_pod_rows_plain_wide_and_with_namespace() -> None:
    p = pod(state("running"), ready=True)
    p.metadata.namespace = "prod"
    p.spec.node_name = "node-a"
    p.status.pod_ip = "10.244.0.5"
    assert printers.headers(POD) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert printers.row(POD, p, NOW) == ["web-1", "1/1", "Running", "0", "60s"]
    assert printers.headers(POD, wide=True, with_namespace=True) == [
        "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert printers.row(POD, p, NOW, wide=True, with_namespace=True) == [
        "prod", "web-1", "1/1", "Running", "0", "60s", "10.244.0.5", "node-a"]


def test_deployment_row() -> None:
    d = objects_pb2.Deployment()
    d.metadata.name = "web"
    d.metadata.creation_timestamp = format_time(NOW - 3600 * 3)
    d.spec.replicas = 3
    d.status.ready_replicas, d.status.updated_replicas, d.status.available_replicas = 2, 3, 2
    assert printers.headers(DEPLOYMENT) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert printers.row(DEPLOYMENT, d, NOW) == ["web", "2/3", "3", "2", "3h"]


def test_service_ports_and_row() -> None:
    svc = objects_pb2.Service()
    svc.metadata.name = "web"
    svc.spec.type = "NodePort"
    svc.spec.cluster_ip = "10.96.0.10"
    svc.spec.ports.add(port=8080, node_port=31234, protocol="TCP")
    svc.spec.ports.add(port=53, protocol="UDP", name="dns")
    assert printers.service_ports(svc.spec) == "8080:31234/TCP,53/UDP"
    assert printers.row(SERVICE, svc, NOW)[:4] == ["web", "NodePort", "10.96.0.10", "8080:31234/TCP,53/UDP"]
    assert printers.service_ports(objects_pb2.ServiceSpec()) == "<none>"


def test_node_status_roles_and_wide_columns() -> None:
    n = objects_pb2.Node()
    n.metadata.name = "node-a"
    n.metadata.labels["node-role.kubernetes.io/control-plane"] = ""
    n.status.conditions.add(type="Ready", status="True")
    n.status.addresses.add(type="InternalIP", address="192.168.1.5")
    n.status.agent_version = "0.1.0"
    n.spec.unschedulable = True
    assert printers.headers(NODE) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    row = printers.row(NODE, n, NOW, wide=True)
    assert row[:3] == ["node-a", "Ready,SchedulingDisabled", "control-plane"]
    assert row[4:6] == ["0.1.0", "192.168.1.5"]
    n.status.conditions[0].status = "False"
    assert printers.node_status(n) == "NotReady,SchedulingDisabled"
    assert printers.node_status(objects_pb2.Node()) == "Unknown"


def test_endpoints_show_three_then_a_count() -> None:
    ep = objects_pb2.Endpoints()
    subset = ep.subsets.add()
    for i in range(5):
        subset.addresses.add(ip=f"10.244.0.{i}")
    subset.ports.add(port=80)
    assert printers.endpoints_text(ep) == "10.244.0.0:80,10.244.0.1:80,10.244.0.2:80 + 2 more..."
    assert printers.row(ENDPOINTS, objects_pb2.Endpoints(), NOW)[1] == "<none>"


def test_event_row() -> None:
    ev = objects_pb2.Event(type="Warning", reason="FailedScheduling", message="0/3 nodes\nare available",
                           last_timestamp=format_time(NOW - 10),
                           involved_object=objects_pb2.ObjectReference(kind="Pod", name="web-1"))
    assert printers.headers(EVENT) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert printers.row(EVENT, ev, NOW) == ["10s", "Warning", "FailedScheduling", "pod/web-1",
                                            "0/3 nodes are available"]
