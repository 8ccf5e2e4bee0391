"""An agent with a warm sandbox pool (`--sandbox-pool`): pods of several containers start in pooled
sandboxes, keep their IP through a container kill and an agent restart, and the pool's containers are
never pods. Pods of one container have no sandbox, and take none from the pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._docker import docker_cluster, docker_for_nodes
from tests.integration._wait import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

IMAGE = "raftorch/busybox:latest"
NODE = "pool-a"
SIZE = 2


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    yield from docker_for_nodes([NODE])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    with docker_cluster(tmp_path_factory.mktemp("pool-cluster"), [NODE],
                        ["--backoff-base", "1", "--sandbox-pool", str(SIZE)], 20) as pair:
        yield pair



def pool(docker_client: Any) -> set[str]:
    """The node's running unclaimed pool containers."""
    found = docker_client.api.containers(filters={"label": [f"raftorch.io/node={NODE}", "raftorch.io/role=pool"]})
    return {c["Id"] for c in found if c["Names"][0].lstrip("/").startswith("raftorch-pool_")}


def of_pod(docker_client: Any, uid: str) -> dict[str, str]:
    """The pod's running containers by name, its sandbox as POD (a claimed pool container has no pod label)."""
    found = docker_client.api.containers(filters={"label": f"raftorch.io/node={NODE}"})
    named = {c["Id"]: c["Names"][0].lstrip("/") for c in found}
    result = {c["Labels"]["raftorch.io/container"]: c["Id"] for c in found
              if c["Labels"].get("raftorch.io/pod-uid") == uid}
    for container_id, name in named.items():
        if f"_POD_{uid}_" in name:
            result["POD"] = container_id
    return result


def get_pod(c: Client, name: str) -> objects_pb2.Pod:
    pod = c.objects.get("pod", name, "default")
    assert isinstance(pod, objects_pb2.Pod)
    return pod


def two_container_pod(name: str) -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.PodSpec(node_name=NODE, termination_grace_period_seconds=1, containers=[
            objects_pb2.Container(name="main", image=IMAGE),
            objects_pb2.Container(name="side", image=IMAGE, command=["sh", "-c", "exec sleep 100000"])]))


def running(c: Client, name: str) -> bool:
    pod = get_pod(c, name)
    return pod.status.phase == "Running" and bool(pod.status.pod_ip) and all(
        s.state.state == "running" for s in pod.status.container_statuses)


def test_pods_start_in_pooled_sandboxes_and_keep_them_across_kills_and_agent_restarts(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, agents = cluster
    eventually(lambda: len(pool(docker_client)) == SIZE, what="the pool full")
    pooled = pool(docker_client)
    with masters.client() as c:
        c.objects.create(two_container_pod("warm"))
        eventually(lambda: running(c, "warm"), what="warm Running")
        pod = get_pod(c, "warm")
        ids = of_pod(docker_client, pod.metadata.uid)
        assert ids["POD"] in pooled  # it took a pooled sandbox
        net = docker_client.api.inspect_container(ids["POD"])["NetworkSettings"]["Networks"][f"raftorch-{NODE}"]
        assert pod.status.pod_ip == net["IPAddress"]
        eventually(lambda: len(pool(docker_client)) == SIZE, what="the pool refilled")
        pods, _ = c.objects.list("pods", "default")
        assert [p.metadata.name for p in pods] == ["warm"]  # pool containers are no pods

        # A killed container restarts alone, in the same sandbox, with the same IP.
        docker_client.api.kill(ids["main"])
        eventually(lambda: of_pod(docker_client, pod.metadata.uid).get("main", ids["main"]) != ids["main"]
                   and running(c, "warm"), what="main restarted")
        after = of_pod(docker_client, pod.metadata.uid)
        assert after["POD"] == ids["POD"] and get_pod(c, "warm").status.pod_ip == pod.status.pod_ip

        # A restarted agent finds the claimed sandbox as the pod's and restarts nothing.
        agents.stop()
        agents.start()
        c.objects.create(two_container_pod("later"))
        eventually(lambda: running(c, "later"), what="a pod started by the restarted agent")
        assert of_pod(docker_client, pod.metadata.uid) == after
        warm = get_pod(c, "warm")
        assert warm.status.pod_ip == pod.status.pod_ip
        assert {s.name: s.restart_count for s in warm.status.container_statuses} == {"main": 1, "side": 0}

        # Deleted: its sandbox goes with it, the pool stays.
        c.objects.delete("pod", "warm", "default")
        eventually(lambda: not docker_client.api.containers(all=True, filters={"id": ids["POD"]}),
                   what="the claimed sandbox removed with its pod")
        eventually(lambda: len(pool(docker_client)) == SIZE, what="the pool full")

        # A pod of one container is that container: the pool keeps its sandboxes.
        pooled = pool(docker_client)
        c.objects.create(objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(name="solo", namespace="default"),
            spec=objects_pb2.PodSpec(node_name=NODE, termination_grace_period_seconds=1, containers=[
                objects_pb2.Container(name="main", image=IMAGE)])))
        eventually(lambda: running(c, "solo"), what="solo Running")
        assert set(of_pod(docker_client, get_pod(c, "solo").metadata.uid)) == {"main"}
        assert pool(docker_client) == pooled
