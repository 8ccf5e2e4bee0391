"""Volumes, ConfigMaps and Secrets in pods on real Docker: shared emptyDirs, mounted files that
follow updates, env from config, secret file modes, and pods that wait for missing config."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.cli.printers import pod_summary
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._docker import docker_cluster, docker_for_nodes
from tests.integration._wait import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

IMAGE = "raftorch/busybox:latest"
NODE = "vol-a"
OTHER = "vol-b"  # a second node, so that pinning pods to their claim's node means something
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    yield from docker_for_nodes((NODE, OTHER))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    root = tmp_path_factory.mktemp("volumes-cluster")
    try:
        with docker_cluster(root, [NODE, OTHER], ["--backoff-base", "1"]) as pair:
            yield pair
    finally:
        unmount_under(root)


def unmount_under(root: Path) -> None:
    """Secret tmpfs mounts of pods still there when the agents stopped: not left on the host."""
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(str(root))]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", target], check=False, capture_output=True)



def pod(name: str, containers: list[objects_pb2.Container], volumes: list[objects_pb2.Volume]) -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.PodSpec(node_name=NODE, termination_grace_period_seconds=1, containers=containers,
                                 volumes=volumes))


def get_pod(c: Client, name: str) -> objects_pb2.Pod:
    found = c.objects.get("pod", name, "default")
    assert isinstance(found, objects_pb2.Pod)
    return found


def running(c: Client, name: str) -> bool:
    p = get_pod(c, name)
    return p.status.phase == "Running" and all(s.state.state == "running" for s in p.status.container_statuses)


def container_id(docker_client: Any, p: objects_pb2.Pod, name: str) -> str:
    found = docker_client.api.containers(filters={"label": [f"raftorch.io/pod-uid={p.metadata.uid}",
                                                             f"raftorch.io/container={name}"]})
    assert len(found) == 1, found
    return str(found[0]["Id"])


def run_in(docker_client: Any, cid: str, *command: str) -> str:
    code, output = docker_client.containers.get(cid).exec_run(list(command))
    assert code == 0, output
    return str(output.decode()).strip()


def test_empty_dir_is_shared_and_goes_with_the_pod(cluster: tuple[LocalMasters, LocalAgents],
                                                   docker_client: Any) -> None:
    masters, agents = cluster
    mount = objects_pb2.VolumeMount(name="data", mount_path="/data")
    cache = objects_pb2.VolumeMount(name="cache", mount_path="/cache")
    writer = objects_pb2.Container(name="writer", image=IMAGE, volume_mounts=[mount, cache], command=[
        "sh", "-c", "echo hello-from-writer > /data/note; trap 'exit 0' TERM; while :; do sleep 1; done"])
    reader = objects_pb2.Container(name="reader", image=IMAGE, volume_mounts=[mount], command=IDLE)
    volumes = [objects_pb2.Volume(name="data", empty_dir=objects_pb2.EmptyDirVolumeSource()),
               objects_pb2.Volume(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(
                   medium="Memory", size_limit="16Mi"))]
    with masters.client() as c:
        c.objects.create(pod("shared", [writer, reader], volumes))
        eventually(lambda: running(c, "shared"), what="shared Running")
        p = get_pod(c, "shared")
        reader_id = container_id(docker_client, p, "reader")
        eventually(lambda: "hello-from-writer" in run_in(docker_client, reader_id, "sh", "-c",
                                                           "cat /data/note || true"),
                   what="reader sees the writer's file")
        mounts = run_in(docker_client, container_id(docker_client, p, "writer"), "cat", "/proc/mounts")
        cache_line = next(line for line in mounts.splitlines() if " /cache " in line)
        assert cache_line.startswith("tmpfs ") and "size=16384k" in cache_line
        host_dir = agents.agents[NODE].data_dir / "pods" / p.metadata.uid
        assert (host_dir / "volumes" / "data" / "note").read_text() == "hello-from-writer\n"

        c.objects.delete("pod", "shared", "default")
        eventually(lambda: not host_dir.exists(), what="the pod's emptyDir removed from the host")
        eventually(lambda: not docker_client.volumes.list(filters={"label": f"raftorch.io/pod-uid={p.metadata.uid}"}),
                   what="the pod's tmpfs volume removed")


def test_config_map_file_follows_updates_env_is_set_and_secret_mode_is_0400(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, agents = cluster
    with masters.client() as c:
        c.objects.create(objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name="web", namespace="default"),
                                               data={"greeting": "v1", "mode": "fast"}))
        c.objects.create(objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name="db", namespace="default"),
                                            data={"password": b"hunter2"}))
        app = objects_pb2.Container(
            name="app", image=IMAGE, command=IDLE,
            volume_mounts=[objects_pb2.VolumeMount(name="conf", mount_path="/etc/conf"),
                           objects_pb2.VolumeMount(name="creds", mount_path="/etc/creds", read_only=True)],
            env=[objects_pb2.EnvVar(name="MODE", value_from=objects_pb2.EnvVarSource(
                config_map_key_ref=objects_pb2.KeySelector(name="web", key="mode")))],
            env_from=[objects_pb2.EnvFromSource(prefix="DB_", secret_ref=objects_pb2.ObjectRef(name="db"))])
        volumes = [objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name="web")),
                   objects_pb2.Volume(name="creds", secret=objects_pb2.SecretVolumeSource(
                       secret_name="db", default_mode=0o400))]
        c.objects.create(pod("configured", [app], volumes))
        eventually(lambda: running(c, "configured"), what="configured Running")
        p = get_pod(c, "configured")
        cid = container_id(docker_client, p, "app")
        assert run_in(docker_client, cid, "cat", "/etc/conf/greeting") == "v1"
        assert run_in(docker_client, cid, "sh", "-c", "echo $MODE $DB_password") == "fast hunter2"
        assert run_in(docker_client, cid, "stat", "-L", "-c", "%a", "/etc/creds/password") == "400"
        assert run_in(docker_client, cid, "cat", "/etc/creds/password") == "hunter2"
        creds_mount = next(line for line in run_in(docker_client, cid, "cat", "/proc/mounts").splitlines()
                           if " /etc/creds " in line)
        assert creds_mount.startswith("tmpfs "), creds_mount  # the secret is not on the node's disk

        cm = c.objects.get("configmap", "web", "default")
        assert isinstance(cm, objects_pb2.ConfigMap)
        cm.data["greeting"] = "v2"
        c.objects.update(cm)
        eventually(lambda: run_in(docker_client, cid, "cat", "/etc/conf/greeting") == "v2", timeout=10.0,
                   what="the mounted file shows the update within 10 s")
        p = get_pod(c, "configured")
        assert container_id(docker_client, p, "app") == cid
        assert [s.restart_count for s in p.status.container_statuses] == [0]

        host_dir = agents.agents[NODE].data_dir / "pods" / p.metadata.uid
        c.objects.delete("pod", "configured", "default")
        eventually(lambda: not host_dir.exists(), what="the secret's tmpfs unmounted and the pod's files removed")


def test_pod_naming_a_missing_config_map_waits_then_starts(cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    app = objects_pb2.Container(name="app", image=IMAGE, command=IDLE,
                                volume_mounts=[objects_pb2.VolumeMount(name="conf", mount_path="/conf")])
    volumes = [objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name="later"))]
    with masters.client() as c:
        c.objects.create(pod("waiting", [app], volumes))

        def waits_for_config() -> bool:
            statuses = get_pod(c, "waiting").status.container_statuses
            return bool(statuses) and statuses[0].state.reason == "CreateContainerConfigError" and \
                statuses[0].state.message == 'configmap "later" not found'

        eventually(waits_for_config, what="the pod waits, naming the missing configmap")

        def warned() -> bool:
            events, _ = c.objects.list("events", "default")
            return any(isinstance(e, objects_pb2.Event) and e.involved_object.name == "waiting"
                       and e.reason == "Failed" and e.type == "Warning"
                       and e.message == 'Error: configmap "later" not found' for e in events)

        eventually(warned, what="a Warning event naming the missing configmap")
        c.objects.create(objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name="later", namespace="default"),
                                               data={"k": "v"}))
        eventually(lambda: running(c, "waiting"), what="the pod starts once the configmap exists")


def test_init_containers_run_in_order_and_a_failing_one_blocks_the_app(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, _ = cluster
    work = objects_pb2.VolumeMount(name="work", mount_path="/work")
    volumes = [objects_pb2.Volume(name="work", empty_dir=objects_pb2.EmptyDirVolumeSource())]
    inits = [objects_pb2.Container(name=n, image=IMAGE, volume_mounts=[work],
                                   command=["sh", "-c", f"sleep 1; echo {n} >> /work/order"])
             for n in ("one", "two")]
    app = objects_pb2.Container(name="app", image=IMAGE, command=IDLE, volume_mounts=[work])
    with masters.client() as c:
        ordered = pod("ordered", [app], volumes)
        ordered.spec.init_containers.extend(inits)
        c.objects.create(ordered)
        seen: set[str] = set()

        def started() -> bool:
            seen.add(pod_summary(get_pod(c, "ordered"), time.time()).status)
            return running(c, "ordered")

        eventually(started, what="ordered Running after its init containers")
        assert "Init:0/2" in seen or "Init:1/2" in seen, seen
        p = get_pod(c, "ordered")
        assert run_in(docker_client, container_id(docker_client, p, "app"), "cat", "/work/order") == "one\ntwo"
        assert [(s.name, s.state.state, s.state.exit_code) for s in p.status.init_container_statuses] == [
            ("one", "terminated", 0), ("two", "terminated", 0)]

        failing = pod("blocked", [app], volumes)
        failing.spec.init_containers.add(name="fails", image=IMAGE, command=["sh", "-c", "exit 3"])
        c.objects.create(failing)

        def backing_off() -> bool:
            [s] = get_pod(c, "blocked").status.init_container_statuses or [objects_pb2.ContainerStatus()]
            return s.restart_count >= 2 and s.state.reason == "CrashLoopBackOff"

        eventually(backing_off, what="the failing init container backs off")
        p = get_pod(c, "blocked")
        assert pod_summary(p, time.time()).status in ("Init:CrashLoopBackOff", "Init:Error")
        assert [s.state.reason for s in p.status.container_statuses] == ["PodInitializing"]
        assert not docker_client.api.containers(all=True, filters={"label": [
            f"raftorch.io/pod-uid={p.metadata.uid}", "raftorch.io/container=app"]})


def test_claim_keeps_its_data_for_the_replacement_pod_on_the_same_node(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, _ = cluster
    labels = {"app": "keeper"}
    writer = objects_pb2.Container(
        name="keeper", image=IMAGE, volume_mounts=[objects_pb2.VolumeMount(name="data", mount_path="/data")],
        command=["sh", "-c", "echo written-by-$HOSTNAME >> /data/note; trap 'exit 0' TERM; "
                             "while :; do sleep 1; done"])
    template = objects_pb2.PodTemplateSpec(
        metadata=objects_pb2.ObjectMeta(labels=labels),
        spec=objects_pb2.PodSpec(termination_grace_period_seconds=1, containers=[writer], volumes=[
            objects_pb2.Volume(name="data", persistent_volume_claim=objects_pb2.PersistentVolumeClaimVolumeSource(
                claim_name="keeper-data"))]))
    with masters.client() as c:
        c.objects.create(objects_pb2.PersistentVolumeClaim(
            metadata=objects_pb2.ObjectMeta(name="keeper-data", namespace="default"),
            spec=objects_pb2.PersistentVolumeClaimSpec(resources=objects_pb2.ResourceRequirements(
                requests={"storage": "1Gi"}))))
        c.objects.create(objects_pb2.Deployment(
            metadata=objects_pb2.ObjectMeta(name="keeper", namespace="default"),
            spec=objects_pb2.DeploymentSpec(replicas=1, selector=objects_pb2.LabelSelector(match_labels=labels),
                                            template=template)))

        def keeper_pods() -> list[objects_pb2.Pod]:
            pods, _ = c.objects.list("pods", "default", label_selector="app=keeper")
            return [p for p in pods if isinstance(p, objects_pb2.Pod) and not p.metadata.deletion_timestamp]

        eventually(lambda: len(keeper_pods()) == 1 and running(c, keeper_pods()[0].metadata.name),
                   what="the claim's first pod Running")
        [first] = keeper_pods()
        claim = c.objects.get("persistentvolumeclaims", "keeper-data", "default")
        assert isinstance(claim, objects_pb2.PersistentVolumeClaim)
        eventually(lambda: c.objects.get("pvc", "keeper-data", "default").status.phase == "Bound",  # type: ignore
                   what="the claim bound")
        claim = c.objects.get("pvc", "keeper-data", "default")  # type: ignore[assignment]
        assert claim.status.node_name == first.spec.node_name
        cid = container_id(docker_client, first, "keeper")
        eventually(lambda: "written-by-" in run_in(docker_client, cid, "cat", "/data/note"), what="first write")

        c.objects.delete("pod", first.metadata.name, "default")
        eventually(lambda: any(p.metadata.uid != first.metadata.uid and running(c, p.metadata.name)
                               for p in keeper_pods()), what="the replacement pod Running")
        [second] = [p for p in keeper_pods() if p.metadata.uid != first.metadata.uid]
        assert second.spec.node_name == first.spec.node_name
        note = run_in(docker_client, container_id(docker_client, second, "keeper"), "cat", "/data/note")
        assert note.splitlines()[0] == f"written-by-{first.metadata.name}"
        assert len(note.splitlines()) == 2
