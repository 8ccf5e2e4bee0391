"""Pod security levels and system-set addresses, against real master (and agent) processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from raftorch import rpc
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound, PermissionDenied
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from raftorch.master.admission import LEVEL_LABEL
from tests.integration._wait import eventually

pytestmark = pytest.mark.processes



def namespace_exists(c: Client, name: str) -> bool:
    try:
        c.objects.get("namespaces", name)
    except NotFound:
        return False
    return True


def make_namespace(c: Client, name: str, level: str) -> None:
    c.objects.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name=name, labels={LEVEL_LABEL: level})))


def pod(name: str, namespace: str = "default", **spec: object) -> objects_pb2.Pod:
    container = objects_pb2.Container(name="c", image="raftorch/busybox:latest", command=["sleep", "1000"],
                                      ports=[objects_pb2.ContainerPort(container_port=8080)])
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace),
                           spec=objects_pb2.PodSpec(containers=[container], **spec))  # type: ignore[arg-type]


def host_port_pod(name: str, namespace: str = "default") -> objects_pb2.Pod:
    p = pod(name, namespace)
    p.spec.containers[0].ports[0].host_port = 22
    return p


def privileged_pod(name: str, namespace: str = "default") -> objects_pb2.Pod:
    p = pod(name, namespace)
    p.spec.containers[0].security_context.privileged = True
    return p


def test_default_namespace_refuses_host_access_and_a_privileged_namespace_accepts_it(masters: LocalMasters) -> None:
    with masters.client() as c:
        eventually(lambda: namespace_exists(c, "default"), what="namespace default")
        refused = {
            "hostnet": (pod("hostnet", host_network=True), "spec.hostNetwork=true"),
            "hostport": (host_port_pod("hostport"), "spec.containers[0].ports[0].hostPort=22"),
            "root": (privileged_pod("root"), "spec.containers[0].securityContext.privileged=true"),
        }
        for name, (p, field) in refused.items():
            with pytest.raises(PermissionDenied) as info:
                c.objects.create(p)
            # The client names the master that answered, then the master's message.
            assert info.value.message.endswith(f': pods "{name}" is forbidden: violates pod-security level '
                                               f'"baseline": {field}')
            with pytest.raises(NotFound):
                c.objects.get("pods", name, "default")
        # A workload is refused by its template, and an update cannot sneak the host in either.
        template = objects_pb2.PodTemplateSpec(metadata=objects_pb2.ObjectMeta(labels={"app": "d"}),
                                               spec=pod("x", host_network=True).spec)
        deploy = objects_pb2.Deployment(
            metadata=objects_pb2.ObjectMeta(name="d", namespace="default"),
            spec=objects_pb2.DeploymentSpec(selector=objects_pb2.LabelSelector(match_labels={"app": "d"}),
                                            template=template))
        with pytest.raises(PermissionDenied, match=r': deployments "d" is forbidden: violates pod-security level '
                                                   r'"baseline": spec.template.spec.hostNetwork=true$'):
            c.objects.create(deploy)
        deploy.spec.template.spec.host_network = False
        created = c.objects.create(deploy)
        assert isinstance(created, objects_pb2.Deployment)
        created.spec.template.spec.containers[0].security_context.privileged = True
        with pytest.raises(PermissionDenied, match="privileged=true"):
            c.objects.update(created)

        make_namespace(c, "infra", "privileged")
        for name, (p, _) in refused.items():
            p.metadata.namespace = "infra"
            c.objects.create(p)
            c.objects.get("pods", name, "infra")

        make_namespace(c, "strict", "restricted")
        with pytest.raises(PermissionDenied, match=r'violates pod-security level "restricted": .*runAsNonRoot'):
            c.objects.create(pod("plain", "strict"))
        with pytest.raises(Invalid, match=r"must be one of privileged, baseline, restricted, got 'root'"):
            make_namespace(c, "bad", "root")


def test_the_system_namespace_is_privileged(masters: LocalMasters) -> None:
    with masters.client() as c:
        eventually(lambda: namespace_exists(c, "raftorch-system"), what="namespace raftorch-system")
        ns = c.objects.get("namespaces", "raftorch-system")
        assert ns.metadata.labels[LEVEL_LABEL] == "privileged"  # type: ignore[attr-defined]


@pytest.fixture
def process_node(masters: LocalMasters, tmp_path: Path) -> Iterator[str]:
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["proc-1"], runtime="process",
                         ca_dir=masters.pki_dir)
    agents.start()
    try:
        with masters.client() as c:
            eventually(lambda: _ready(c, "proc-1"), what="node proc-1 Ready")
        yield "proc-1"
    finally:
        agents.stop()
        _kill_process_pods(tmp_path / "agents")


def _ready(c: Client, name: str) -> bool:
    try:
        node = c.objects.get("nodes", name)
    except NotFound:
        return False
    assert isinstance(node, objects_pb2.Node)
    return any(cd.type == "Ready" and cd.status == "True" for cd in node.status.conditions)


def _kill_process_pods(root: Path) -> None:
    """The process runtime's pods outlive their agent (as containers outlive a Docker agent)."""
    for state in root.rglob("state.json"):
        pid = json.loads(state.read_text()).get("pid")
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def test_only_privileged_namespaces_get_pods_onto_a_process_runtime_node(masters: LocalMasters,
                                                                         process_node: str) -> None:
    with masters.client() as c:
        node = c.objects.get("nodes", process_node)
        assert node.status.runtime == "process"  # type: ignore[attr-defined]
        # Scheduled: it waits, and the scheduler says why.
        c.objects.create(pod("waits"))

        def failed_scheduling() -> str:
            events, _ = c.objects.list("events", "default")
            return next((e.message for e in events  # type: ignore[attr-defined]
                         if e.involved_object.name == "waits" and e.reason == "FailedScheduling"), "")  # type: ignore[attr-defined]

        eventually(lambda: bool(failed_scheduling()), what="FailedScheduling event")
        assert failed_scheduling() == ("0/1 nodes are available: 1 node(s) run pods as host processes, "
                                       "which the pod's namespace does not allow.")
        assert not c.objects.get("pods", "waits", "default").spec.node_name  # type: ignore[attr-defined]
        # Named directly: refused at once.
        with pytest.raises(PermissionDenied, match=r': pods "direct" is forbidden: violates pod-security level '
                                                   r'"baseline": spec.nodeName=proc-1 runs pods as host processes'):
            c.objects.create(pod("direct", node_name=process_node))
        # A privileged namespace's pods run there.
        make_namespace(c, "ops", "privileged")
        c.objects.create(pod("runs", "ops"))

        def running() -> bool:
            p = c.objects.get("pods", "runs", "ops")
            assert isinstance(p, objects_pb2.Pod)
            return p.spec.node_name == process_node and p.status.phase == "Running"

        eventually(running, what="the privileged pod running on the process node")


# -- addresses are the system's ------------------------------------------------------------------


@pytest.fixture
def fake_node(masters: LocalMasters, tmp_path: Path) -> Iterator[str]:
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["fake-1"], runtime="fake", ca_dir=masters.pki_dir)
    agents.start()
    try:
        with masters.client() as c:
            eventually(lambda: _ready(c, "fake-1"), what="node fake-1 Ready")
        yield "fake-1"
    finally:
        agents.stop()


def test_a_preset_pod_ip_does_not_steer_port_forward(masters: LocalMasters, fake_node: str) -> None:
    """The attack: a pod created with status.podIP 127.0.0.2 on a node, whose image never starts
    (so no runtime address replaces the forged one); then a port-forward through the master and
    the agent to a service listening on 127.0.0.2."""
    with socket.create_server(("127.0.0.2", 0)) as victim:
        victim.settimeout(0)
        port = victim.getsockname()[1]
        forged = pod("forged", node_name=fake_node)
        forged.spec.containers[0].image = "never-pulled:1"
        forged.spec.containers[0].image_pull_policy = "Never"
        forged.spec.containers[0].ports[0].container_port = port
        forged.status.phase = "Running"
        forged.status.pod_ip = "127.0.0.2"
        forged.status.host_ip = "127.0.0.2"
        with masters.client() as c:
            created = c.objects.create(forged)
            assert isinstance(created, objects_pb2.Pod)
            assert created.status.pod_ip == "" and created.status.phase == ""

            def reported() -> objects_pb2.Pod | None:
                p = c.objects.get("pods", "forged", "default")
                assert isinstance(p, objects_pb2.Pod)
                waiting = [s.state.reason for s in p.status.container_statuses]
                return p if waiting == ["ErrImageNeverPull"] else None

            eventually(lambda: reported() is not None, what="the agent's status report")
            # A status update cannot set the address either.
            current = reported()
            assert current is not None and current.status.pod_ip == ""
            current.status.pod_ip = "127.0.0.2"
            current.status.phase = "Running"
            c.objects.update_status(current)
            stored = c.objects.get("pods", "forged", "default")
            assert stored.status.pod_ip == ""  # type: ignore[attr-defined]

        frames = iter([agents_pb2.PortForwardFrame(namespace="default", pod="forged", port=port),
                       agents_pb2.PortForwardFrame(data=b"hello"), agents_pb2.PortForwardFrame(eof=True)])
        with rpc.channel(masters.endpoints[0], masters.credentials) as chan, pytest.raises(grpc.RpcError) as info:
            list(agents_pb2_grpc.PodsStub(chan).PortForward(frames, timeout=15))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "pod default/forged is not running" in (info.value.details() or "")
        with pytest.raises(BlockingIOError):
            victim.accept()


def test_raising_a_namespace_level_stops_new_pods_of_existing_workloads(masters: LocalMasters) -> None:
    with masters.client() as c:
        make_namespace(c, "lab", "privileged")
        labels = {"app": "agent"}
        deploy = objects_pb2.Deployment(
            metadata=objects_pb2.ObjectMeta(name="agent", namespace="lab"),
            spec=objects_pb2.DeploymentSpec(
                replicas=1, selector=objects_pb2.LabelSelector(match_labels=labels),
                template=objects_pb2.PodTemplateSpec(metadata=objects_pb2.ObjectMeta(labels=labels),
                                                     spec=pod("x", host_network=True).spec)))
        c.objects.create(deploy)

        def pods() -> list[objects_pb2.Pod]:
            items, _ = c.objects.list("pods", "lab")
            return [p for p in items if isinstance(p, objects_pb2.Pod)]

        eventually(lambda: len(pods()) == 1, what="the first pod")
        ns = c.objects.get("namespaces", "lab")
        ns.metadata.labels[LEVEL_LABEL] = "baseline"  # type: ignore[attr-defined]
        c.objects.update(ns)
        current = c.objects.get("deployments", "agent", "lab")
        assert isinstance(current, objects_pb2.Deployment)
        current.spec.replicas = 2
        c.objects.update(current)

        def failed_create() -> str:
            events, _ = c.objects.list("events", "lab")
            return next((e.message for e in events if e.reason == "FailedCreate"), "")  # type: ignore[attr-defined]

        eventually(lambda: bool(failed_create()), what="a FailedCreate event")
        assert failed_create().endswith('are forbidden: violates pod-security level "baseline": '
                                        "spec.template.spec.hostNetwork=true")
        assert len(pods()) == 1


def test_raftctl_up_on_the_process_runtime_runs_pods_of_default(tmp_path: Path) -> None:
    """`raftctl up` without Docker: `default` is labelled privileged, so the walk-through's pods run."""
    raftctl = str(Path(sys.executable).parent / "raftctl")
    data = tmp_path / "local"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    up = subprocess.run([raftctl, "up", "--masters", "1", "--agents", "1", "--runtime", "process",
                         "--data-dir", str(data)], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        assert "labelling namespace default raftorch.io/pod-security=privileged" in up.stderr
        got = subprocess.run([raftctl, "get", "namespace", "default", "-o", "json"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert json.loads(got.stdout)["metadata"]["labels"][LEVEL_LABEL] == "privileged"
        create = subprocess.run([raftctl, "create", "deployment", "hello", "--image=none", "--", "sleep", "1000"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert create.returncode == 0, create.stderr
        rollout = subprocess.run([raftctl, "rollout", "status", "deployment/hello"], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert 'deployment "hello" successfully rolled out' in rollout.stdout, rollout.stderr
    finally:
        subprocess.run([raftctl, "down", "--purge", "--data-dir", str(data)], env=env, capture_output=True,
                       timeout=120)
        _kill_process_pods(tmp_path)


def test_endpoints_are_written_by_the_endpoints_controller_only(masters: LocalMasters) -> None:
    """Endpoints of a selector-less service, pointing at 127.0.0.2, would have every node's
    rules send the service's traffic there."""
    with masters.client() as c:
        eventually(lambda: namespace_exists(c, "default"), what="namespace default")
        c.objects.create(objects_pb2.Service(metadata=objects_pb2.ObjectMeta(name="manual", namespace="default"),
                                             spec=objects_pb2.ServiceSpec(ports=[objects_pb2.ServicePort(port=80)])))
        forged = objects_pb2.Endpoints(
            metadata=objects_pb2.ObjectMeta(name="manual", namespace="default"),
            subsets=[objects_pb2.EndpointSubset(addresses=[objects_pb2.EndpointAddress(ip="127.0.0.2")],
                                                ports=[objects_pb2.EndpointPort(port=22)])])
        with pytest.raises(PermissionDenied, match=r'user "admin" .*may not write endpoints'):
            c.objects.create(forged)
        with pytest.raises(NotFound):
            c.objects.get("endpoints", "manual", "default")
        # The controller's own endpoints cannot be rewritten or removed either.
        c.objects.create(objects_pb2.Service(metadata=objects_pb2.ObjectMeta(name="web", namespace="default"),
                                             spec=objects_pb2.ServiceSpec(selector={"app": "web"},
                                                                          ports=[objects_pb2.ServicePort(port=80)])))
        eventually(lambda: _exists_ep(c, "web"), what="the controller's endpoints")
        current = c.objects.get("endpoints", "web", "default")
        assert isinstance(current, objects_pb2.Endpoints)
        current.subsets.add().CopyFrom(forged.subsets[0])
        with pytest.raises(PermissionDenied):
            c.objects.update(current)
        with pytest.raises(PermissionDenied):
            c.objects.delete("endpoints", "web", "default")


def _exists_ep(c: Client, name: str) -> bool:
    try:
        c.objects.get("endpoints", name, "default")
    except NotFound:
        return False
    return True
