"""A pod's containers share one network namespace on Docker: localhost and the pod IP. A pod of
one container is that one container (no sandbox), with the pod's name and an address it keeps."""

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
NODE = "sbx-a"
SERVER = ["sh", "-c", "mkdir -p /www && echo from-a > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
CLIENT = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
NAMED_SERVER = ["sh", "-c",
                "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    yield from docker_for_nodes([NODE])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    with docker_cluster(tmp_path_factory.mktemp("sandbox-cluster"), [NODE], ["--backoff-base", "1"], 20) as pair:
        yield pair




def two_container_pod(name: str) -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.PodSpec(node_name=NODE, termination_grace_period_seconds=2, containers=[
            objects_pb2.Container(name="a", image=IMAGE, command=SERVER),
            objects_pb2.Container(name="b", image=IMAGE, command=CLIENT)]))


def one_container_pod(name: str, command: list[str]) -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.PodSpec(node_name=NODE, termination_grace_period_seconds=2, containers=[
            objects_pb2.Container(name="app", image=IMAGE, command=command)]))


def get_pod(c: Client, name: str) -> objects_pb2.Pod:
    pod = c.objects.get("pod", name, "default")
    assert isinstance(pod, objects_pb2.Pod)
    return pod


def running(c: Client, name: str) -> bool:
    pod = get_pod(c, name)
    return (pod.status.phase == "Running" and bool(pod.status.pod_ip)
            and all(s.state.state == "running" and s.ready for s in pod.status.container_statuses))


def containers(docker_client: Any, pod: objects_pb2.Pod) -> dict[str, str]:
    """Running containers of the pod by container name (the sandbox as POD): their ids."""
    found = docker_client.api.containers(filters={"label": f"raftorch.io/pod-uid={pod.metadata.uid}"})
    return {c["Labels"]["raftorch.io/container"]: c["Id"] for c in found}


def run_in(docker_client: Any, container_id: str, *command: str) -> str:
    code, output = docker_client.containers.get(container_id).exec_run(list(command))
    assert code == 0, output
    return str(output.decode()).strip()


def ip_of(docker_client: Any, container_id: str) -> str:
    """The container's own idea of its address: the IPv4 address on eth0 inside its network namespace."""
    out = run_in(docker_client, container_id, "ip", "-4", "-o", "addr", "show", "eth0")
    return out.split("inet ", 1)[1].split("/", 1)[0]


def test_two_containers_share_localhost_and_one_ip(cluster: tuple[LocalMasters, LocalAgents],
                                                   docker_client: Any) -> None:
    masters, agents = cluster
    with masters.client() as c:
        c.objects.create(two_container_pod("pair"))
        eventually(lambda: running(c, "pair"), what="pair Running")
        pod = get_pod(c, "pair")
        ids = containers(docker_client, pod)
        assert set(ids) == {"POD", "a", "b"}
        # B reaches A's server, which listens on 127.0.0.1 only.
        eventually(lambda: "from-a" in run_in(docker_client, ids["b"], "sh", "-c",
                                                "wget -q -O - http://127.0.0.1:8080/ || true"),
                   what="b reaches a on localhost")
        assert ip_of(docker_client, ids["a"]) == ip_of(docker_client, ids["b"]) == pod.status.pod_ip

        # A single container dies: it alone restarts, in the same namespace, with the same IP.
        docker_client.api.kill(ids["a"])
        eventually(lambda: containers(docker_client, get_pod(c, "pair")).get("a", ids["a"]) != ids["a"]
                   and running(c, "pair"), what="a restarted")
        pod = get_pod(c, "pair")
        after = containers(docker_client, pod)
        assert (after["POD"], after["b"]) == (ids["POD"], ids["b"])
        assert {s.name: s.restart_count for s in pod.status.container_statuses} == {"a": 1, "b": 0}
        assert pod.status.pod_ip == ip_of(docker_client, after["a"]) == ip_of(docker_client, ids["b"])
        eventually(lambda: "from-a" in run_in(docker_client, ids["b"], "sh", "-c",
                                                "wget -q -O - http://127.0.0.1:8080/ || true"),
                   what="b reaches the restarted a")

        # A restarted agent adopts everything: once it has started a new pod, nothing else changed.
        agents.stop()
        agents.start()
        c.objects.create(two_container_pod("after-restart"))
        eventually(lambda: running(c, "after-restart"), what="a pod started by the restarted agent")
        pod = get_pod(c, "pair")
        assert containers(docker_client, pod) == after
        assert {s.name: s.restart_count for s in pod.status.container_statuses} == {"a": 1, "b": 0}


def test_dead_sandbox_recreates_the_pods_containers_and_deletion_removes_all(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(two_container_pod("reborn"))
        eventually(lambda: running(c, "reborn"), what="reborn Running")
        pod = get_pod(c, "reborn")
        ids = containers(docker_client, pod)
        docker_client.api.kill(ids["POD"])

        def replaced() -> bool:
            now = containers(docker_client, get_pod(c, "reborn"))
            return (set(now) == {"POD", "a", "b"} and not set(now.values()) & set(ids.values())
                    and running(c, "reborn"))

        eventually(replaced, what="sandbox and containers replaced")
        pod = get_pod(c, "reborn")
        now = containers(docker_client, pod)
        assert ip_of(docker_client, now["a"]) == ip_of(docker_client, now["b"]) == pod.status.pod_ip
        eventually(lambda: "from-a" in run_in(docker_client, now["b"], "sh", "-c",
                                                "wget -q -O - http://127.0.0.1:8080/ || true"),
                   what="b reaches a in the new sandbox")

        c.objects.delete("pod", "reborn", "default")
        gone = docker_client.api.containers
        eventually(lambda: not gone(all=True, filters={"label": f"raftorch.io/pod-uid={pod.metadata.uid}"}),
                   what="every container of the deleted pod removed, sandbox included")


def test_a_one_container_pod_is_one_container_with_its_name_and_an_address_it_keeps(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: Any) -> None:
    masters, agents = cluster
    with masters.client() as c:
        c.objects.create(one_container_pod("solo", NAMED_SERVER))
        c.objects.create(one_container_pod("caller", CLIENT))
        eventually(lambda: running(c, "solo") and running(c, "caller"), what="solo and caller Running")
        pod = get_pod(c, "solo")
        ids = containers(docker_client, pod)
        assert set(ids) == {"app"}  # no sandbox
        # On the pod bridge itself, not in another container's network namespace.
        assert docker_client.api.inspect_container(ids["app"])["HostConfig"]["NetworkMode"] == f"raftorch-{NODE}"
        assert run_in(docker_client, ids["app"], "hostname") == "solo"
        ip = pod.status.pod_ip
        assert ip_of(docker_client, ids["app"]) == ip
        caller = containers(docker_client, get_pod(c, "caller"))["app"]

        def served() -> bool:
            return "served by solo" in run_in(docker_client, caller, "sh", "-c",
                                              f"wget -q -O - http://{ip}:8080/ || true")

        eventually(served, what="the caller reaches solo at its pod IP")

        # Killed from outside: the replacement is a new container at the same address.
        docker_client.api.kill(ids["app"])
        eventually(lambda: containers(docker_client, get_pod(c, "solo")).get("app", ids["app"]) != ids["app"]
                   and running(c, "solo"), what="solo's container replaced")
        pod = get_pod(c, "solo")
        after = containers(docker_client, pod)
        assert set(after) == {"app"}
        assert pod.status.container_statuses[0].restart_count == 1
        assert pod.status.pod_ip == ip_of(docker_client, after["app"]) == ip
        assert run_in(docker_client, after["app"], "hostname") == "solo"
        eventually(served, what="the caller reaches the replacement at the same address")

        # A restarted agent adopts it: once it has started a new pod, solo's container is the same.
        agents.stop()
        agents.start()
        c.objects.create(one_container_pod("after-agent-restart", CLIENT))
        eventually(lambda: running(c, "after-agent-restart"), what="a pod started by the restarted agent")
        pod = get_pod(c, "solo")
        assert containers(docker_client, pod) == after
        assert (pod.status.pod_ip, pod.status.container_statuses[0].restart_count) == (ip, 1)
        assert get_pod(c, "after-agent-restart").status.pod_ip not in ("", ip)
        eventually(served, what="solo still served after the agent's restart")

        for name in ("solo", "caller", "after-agent-restart"):
            c.objects.delete("pod", name, "default")
        gone = docker_client.api.containers
        eventually(lambda: not gone(all=True, filters={"label": f"raftorch.io/pod-uid={pod.metadata.uid}"}),
                   what="the deleted pod's container removed")
