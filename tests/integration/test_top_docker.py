"""`raftctl top`: the agents' CPU and memory samples of real Docker containers, as kept by the
leader; memory agrees with what Docker itself reports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftorch.api.v1 import agents_pb2, objects_pb2
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.cluster import docker_reachable
from raftorch.local.masters import LocalMasters
from tests.integration._inprocess import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

IMAGE = "raftorch/busybox:latest"
NODE = "top-a"
# A shell holding ~20 MB in a variable, then spinning.
BUSY = ["sh", "-c", "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo ready; while :; do :; done"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[LocalMasters, object]]:
    if not docker_reachable():
        if os.environ.get("CI"):
            pytest.fail("Docker engine unreachable in CI")
        pytest.skip("no Docker engine")
    import docker

    client = docker.from_env()
    masters = LocalMasters(tmp_path / "masters")
    masters.start()
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, [NODE], runtime="docker",
                         extra_args=["--usage-period", "2"], ca_dir=masters.pki_dir)
    try:
        masters.wait_ready()
        agents.start()
        yield masters, client
    finally:
        agents.stop()
        masters.kill()
        for c in client.containers.list(all=True, filters={"label": f"raftorch.io/node={NODE}"}):
            c.remove(force=True)
        for net in client.networks.list(names=[f"raftorch-{NODE}"]):
            net.remove()


def busy_deployment() -> objects_pb2.Deployment:
    labels = {"app": "busy"}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name="busy", namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=1, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(termination_grace_period_seconds=1, containers=[objects_pb2.Container(
                    name="spin", image=IMAGE, command=BUSY)]))))


def pod_usage(c: Client) -> agents_pb2.PodUsage | None:
    for node in c.usage():
        for pod in node.pods:
            if pod.name.startswith("busy-") and pod.containers:
                return pod
    return None


def docker_memory(container: object) -> int:
    """What `docker stats` shows as memory usage: usage minus inactive file pages."""
    stats = container.stats(stream=False)  # type: ignore[attr-defined]
    memory = stats["memory_stats"]
    inner = memory.get("stats", {})
    return int(memory["usage"]) - int(inner.get("total_inactive_file", inner.get("inactive_file", 0)))


def test_top_pods_shows_a_busy_pods_cpu_and_its_memory_as_docker_sees_it(
        cluster: tuple[LocalMasters, object]) -> None:
    masters, docker_client = cluster
    with masters.client() as c:
        c.objects.create(busy_deployment())

        def spinning() -> bool:
            found = docker_client.containers.list(filters={"label": f"raftorch.io/node={NODE}"})  # type: ignore[attr-defined]
            return bool(found) and b"ready" in found[0].logs()

        eventually(spinning, timeout=90, what="the busy container holding its memory")
        eventually(lambda: (u := pod_usage(c)) is not None and u.containers[0].cpu_millicores > 100
                   and u.containers[0].memory_bytes > 10_000_000, timeout=60,
                   what="a sample with the busy loop's CPU and memory")
        container = docker_client.containers.list(filters={"label": f"raftorch.io/node={NODE}"})[0]  # type: ignore[attr-defined]
        usage = pod_usage(c)
        assert usage is not None
        reported = usage.containers[0].memory_bytes
        seen_by_docker = docker_memory(container)
        assert abs(reported - seen_by_docker) <= 0.1 * seen_by_docker, (reported, seen_by_docker)
    endpoints = ["--endpoints", ",".join(masters.endpoints)]
    out = CliRunner().invoke(cli, [*endpoints, "top", "pods"])
    assert out.exit_code == 0, out.output
    header, row = out.output.splitlines()[:2]
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, memory = row.split()
    assert name == usage.name and cpu.endswith("m") and int(cpu[:-1]) > 100 and memory.endswith("Mi")
    containers = CliRunner().invoke(cli, [*endpoints, "top", "pods", "-A", "--containers"])
    assert containers.exit_code == 0, containers.output
    assert containers.output.splitlines()[0].split() == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert any(line.split()[:3] == ["default", usage.name, "spin"] for line in containers.output.splitlines())
    nodes = CliRunner().invoke(cli, [*endpoints, "top", "nodes"])
    assert nodes.exit_code == 0, nodes.output
    assert nodes.output.splitlines()[0].split() == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    assert nodes.output.splitlines()[1].split()[0] == NODE
