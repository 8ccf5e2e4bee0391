"""The agent runs pods in real Docker containers: restarts, back-off, adoption, probes, logs."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import RaftorchError
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from raftorch.master.admission import LEVEL_LABEL, PRIVILEGED
from tests.integration._docker import docker_cluster, docker_for_nodes
from tests.integration._wait import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

IMAGE = "raftorch/busybox:latest"
NODES = ["dock-a", "dock-b"]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[object]:
    yield from docker_for_nodes(NODES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: object
            ) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    with docker_cluster(tmp_path_factory.mktemp("docker-cluster"), NODES, ["--backoff-base", "1"], 20) as pair:
        yield pair




def deployment(name: str, replicas: int, command: list[str], image: str = IMAGE,
               probe: objects_pb2.Probe | None = None, readiness: objects_pb2.Probe | None = None,
               grace: int = 3) -> objects_pb2.Deployment:
    labels = {"app": name}
    container = objects_pb2.Container(name="main", image=image, command=command,
                                      ports=[objects_pb2.ContainerPort(name="http", container_port=8080)])
    if probe is not None:
        container.liveness_probe.CopyFrom(probe)
    if readiness is not None:
        container.readiness_probe.CopyFrom(readiness)
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=grace))))


HTTPD = ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && "
                     "echo serving on $(hostname) && exec httpd -f -p 8080 -h /www"]


def pods_of(c: Client, app: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", "default", label_selector=f"app={app}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


def containers_of(docker_client: object, app_pods: list[objects_pb2.Pod],
                  sandboxes: bool = False) -> list[dict[str, object]]:
    """Running containers of these pods (with `sandboxes`, their sandboxes too), from one list call
    (no per-container inspect that could race with another test removing its containers)."""
    uids = {p.metadata.uid for p in app_pods}
    found = docker_client.api.containers(filters={"label": "raftorch.io/managed=true"})  # type: ignore[attr-defined]
    return [c for c in found if c["Labels"].get("raftorch.io/pod-uid") in uids
            and (sandboxes or c["Labels"].get("raftorch.io/role") != "sandbox")]


def all_running(c: Client, app: str, n: int) -> bool:
    pods = pods_of(c, app)
    return len(pods) == n and all(p.status.phase == "Running" and p.status.pod_ip for p in pods)


def test_deployment_runs_in_labelled_containers_with_logs(cluster: tuple[LocalMasters, LocalAgents],
                                                          docker_client: object) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("web", 3, HTTPD))
        eventually(lambda: all_running(c, "web", 3), what="3 pods Running")
        pods = pods_of(c, "web")
        assert {p.spec.node_name for p in pods} == set(NODES)
        found = containers_of(docker_client, pods)
        assert len(found) == 3
        for container in found:
            labels = container["Labels"]
            assert isinstance(labels, dict)
            assert labels["raftorch.io/node"] in NODES
            assert labels["raftorch.io/pod-namespace"] == "default"
        for pod in pods:
            def has_logs(p: objects_pb2.Pod = pod) -> bool:
                return b"serving on" in b"".join(c.objects.logs(p.metadata.name, "default"))
            eventually(has_logs, what=f"logs of {pod.metadata.name}")


def test_killed_container_restarts_and_crashing_one_backs_off(cluster: tuple[LocalMasters, LocalAgents],
                                                              docker_client: object) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("victim", 1, HTTPD))
        eventually(lambda: all_running(c, "victim", 1), what="victim running")
        (container,) = containers_of(docker_client, pods_of(c, "victim"))
        assert pods_of(c, "victim")[0].status.container_statuses[0].restart_count == 0
        docker_client.api.kill(container["Id"])  # type: ignore[attr-defined]
        eventually(lambda: all_running(c, "victim", 1)
                   and pods_of(c, "victim")[0].status.container_statuses[0].restart_count == 1,
                   what="restart count 1")
        c.objects.create(deployment("crash", 1, ["sh", "-c", "echo failing; exit 1"]))

        def waiting_reason() -> str:
            pods = pods_of(c, "crash")
            if not pods or not pods[0].status.container_statuses:
                return ""
            return pods[0].status.container_statuses[0].state.reason

        eventually(lambda: waiting_reason() == "CrashLoopBackOff", what="CrashLoopBackOff")
        starts: list[tuple[int, float]] = []
        deadline = time.monotonic() + 40
        while len(starts) < 4 and time.monotonic() < deadline:
            pods = pods_of(c, "crash")
            count = pods[0].status.container_statuses[0].restart_count if pods[0].status.container_statuses else 0
            if not starts or count > starts[-1][0]:
                starts.append((count, time.monotonic()))
            time.sleep(0.1)
        assert len(starts) >= 4, starts
        gaps = [b[1] - a[1] for a, b in itertools.pairwise(starts[1:])]
        assert gaps[-1] > gaps[0], f"restart delays did not grow: {gaps}"


def test_container_killed_from_outside_is_replaced_at_once_ten_times(cluster: tuple[LocalMasters, LocalAgents],
                                                                     docker_client: object) -> None:
    """A `docker kill` is no crash: each of ten kills of the same pod's container is replaced, and the pod
    never shows a back-off (with this cluster's 1 s base, backing off would take 1 + 2 + ... + 256 s)."""
    masters, _ = cluster
    with masters.client() as c:
        reasons: list[str] = []
        watch = c.objects.watch("pods", "default", label_selector="app=tenkills")

        def record() -> None:
            with contextlib.suppress(RaftorchError):  # closed at the end
                for event in watch:
                    pod = event.object
                    if isinstance(pod, objects_pb2.Pod):
                        reasons.extend(s.state.reason for s in pod.status.container_statuses)

        reader = threading.Thread(target=record, daemon=True)
        reader.start()
        c.objects.create(deployment("tenkills", 1, HTTPD))
        eventually(lambda: all_running(c, "tenkills", 1), what="tenkills running")
        for kill in range(1, 11):
            (container,) = containers_of(docker_client, pods_of(c, "tenkills"))
            docker_client.api.kill(container["Id"])  # type: ignore[attr-defined]

            def replaced(old: object = container["Id"], count: int = kill) -> bool:
                pods = pods_of(c, "tenkills")
                if not all_running(c, "tenkills", 1) or not pods[0].status.container_statuses:
                    return False
                status = pods[0].status.container_statuses[0]
                return (status.restart_count == count and status.state.state == "running"
                        and status.container_id not in ("", old))

            eventually(replaced, timeout=30, what=f"replacement {kill} running")
            last = pods_of(c, "tenkills")[0].status.container_statuses[0].last_state
            assert (last.state, last.exit_code) == ("terminated", 137)
        watch.close()
        reader.join(timeout=10)
        assert "CrashLoopBackOff" not in reasons, reasons
        c.objects.delete("deployment", "tenkills", "default")


def test_restarted_agent_adopts_running_containers(cluster: tuple[LocalMasters, LocalAgents],
                                                   docker_client: object) -> None:
    masters, agents = cluster
    with masters.client() as c:
        c.objects.create(deployment("adopt", 2, HTTPD))
        eventually(lambda: all_running(c, "adopt", 2), what="adopt running")
        before = {x["Id"] for x in containers_of(docker_client, pods_of(c, "adopt"))}
        agents.stop()
        agents.start()
        time.sleep(5)
        after = {x["Id"] for x in containers_of(docker_client, pods_of(c, "adopt"))}
        assert after == before
        assert all(p.status.container_statuses[0].restart_count == 0 for p in pods_of(c, "adopt"))


def test_probes_restart_and_gate_readiness(cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    liveness = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["test", "-f", "/tmp/alive"]),
                                 period_seconds=1, failure_threshold=2)
    readiness = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/", port="8080"),
                                  period_seconds=1, failure_threshold=1)
    live_cmd = ["sh", "-c", "touch /tmp/alive; (sleep 4; rm /tmp/alive) & exec sleep 1000"]
    with masters.client() as c:
        c.objects.create(deployment("liveness", 1, live_cmd, probe=liveness))
        eventually(lambda: bool(pods_of(c, "liveness")) and bool(pods_of(c, "liveness")[0].status.container_statuses)
                   and pods_of(c, "liveness")[0].status.container_statuses[0].restart_count >= 1,
                   what="liveness restart")
        # No server on 8080: running but never Ready.
        c.objects.create(deployment("unready", 1, ["sleep", "1000"], readiness=readiness))
        eventually(lambda: all_running(c, "unready", 1), what="unready running")
        time.sleep(3)
        pod = pods_of(c, "unready")[0]
        assert not any(cd.type == "Ready" and cd.status == "True" for cd in pod.status.conditions)


def test_missing_image_shows_err_image_pull_and_others_keep_running(cluster: tuple[LocalMasters, LocalAgents]
                                                                   ) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("noimage", 1, ["true"], image="raftorch/does-not-exist:1.0"))

        def reason() -> str:
            pods = pods_of(c, "noimage")
            if not pods or not pods[0].status.container_statuses:
                return ""
            st = pods[0].status.container_statuses[0].state
            return f"{st.reason}: {st.message}"

        eventually(lambda: reason().startswith("ErrImagePull"), what="ErrImagePull")
        assert "does-not-exist" in reason()
        c.objects.create(deployment("healthy", 1, HTTPD))
        eventually(lambda: all_running(c, "healthy", 1), what="other pods still start")


def test_deleted_deployment_containers_go_within_grace(cluster: tuple[LocalMasters, LocalAgents],
                                                       docker_client: object) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("gone", 2, ["sh", "-c", "trap '' TERM; sleep 1000"], grace=2))
        eventually(lambda: all_running(c, "gone", 2), what="gone running")
        pods = pods_of(c, "gone")
        assert len(containers_of(docker_client, pods)) == 2
        c.objects.delete("deployment", "gone", "default")
        started = time.monotonic()
        eventually(lambda: not containers_of(docker_client, pods, sandboxes=True), timeout=30,
                   what="containers removed")
        # Grace 2 s (the shell ignores SIGTERM), plus the garbage collector's pass and the agent's.
        assert time.monotonic() - started < 2 + 8


def test_master_killed_while_agents_run_no_pod_restarts(cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("steady", 2, HTTPD))
        eventually(lambda: all_running(c, "steady", 2), what="steady running")
        masters.kill(masters.leader())
        masters.wait_ready()
        time.sleep(4)
        pods = pods_of(c, "steady")
        assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
        assert all(p.status.container_statuses[0].restart_count == 0 for p in pods)
        nodes, _ = c.objects.list("nodes")
        for node in nodes:
            assert isinstance(node, objects_pb2.Node)
            ready = next(cd.status for cd in node.status.conditions if cd.type == "Ready")
            assert ready == "True", f"{node.metadata.name} went NotReady after a master died"


def _privileged(c: Client, namespace: str) -> bool:
    try:
        ns = c.objects.get("namespaces", namespace)
        ns.metadata.labels[LEVEL_LABEL] = PRIVILEGED  # type: ignore[attr-defined]
        c.objects.update(ns)
    except RaftorchError:
        return False
    return True


def test_process_runtime_runs_a_deployment_without_docker(tmp_path: Path, docker_client: object) -> None:
    masters = LocalMasters(tmp_path / "masters")
    masters.start()
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["proc-a", "proc-b"], runtime="process",
                         ca_dir=masters.pki_dir)
    try:
        masters.wait_ready()
        agents.start()
        with masters.client() as c:
            # Host processes are for privileged namespaces only (pod security).
            eventually(lambda: _privileged(c, "default"), what="namespace default labelled privileged")
            c.objects.create(deployment("procs", 3, ["sh", "-c", "echo started; exec sleep 1000"]))
            eventually(lambda: all_running(c, "procs", 3), what="3 process pods")
            pods = pods_of(c, "procs")
            for pod in pods:
                eventually(lambda p=pod: b"started" in b"".join(c.objects.logs(p.metadata.name, "default")),
                           what="process logs")
        found = docker_client.containers.list(  # type: ignore[attr-defined]
            all=True, filters={"label": "raftorch.io/node=proc-a"})
        assert found == []
    finally:
        agents.stop()
        masters.kill()
        for a in agents.agents.values():
            for f in a.data_dir.rglob("*.json"):
                pid = __import__("json").loads(f.read_text()).get("pid")
                if pid:
                    with __import__("contextlib").suppress(ProcessLookupError):
                        os.killpg(pid, 9)
