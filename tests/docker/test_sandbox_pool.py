"""The warm pool of pod sandboxes against a real engine: claimed by a pod, found again by a restarted
agent (same IP, nothing restarted), never listed as a pod, removed when the node's pool goes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from raftorch.agent.reconciler import (
    AgentPodState,
    ReconcileConfig,
    RemoveContainer,
    StartContainer,
    StopContainer,
    plan_pod_actions,
)
from raftorch.agent.runtime.base import SANDBOX_CONTAINER, ContainerInfo
from raftorch.agent.runtime.docker import DockerRuntime
from raftorch.agent.runtime.docker_pool import SandboxPool
from raftorch.api.v1 import objects_pb2

pytestmark = pytest.mark.docker

PAUSE = "raftorch/pause:latest"
SIZE = 2


@pytest.fixture
def network(docker_client: Any, node: str, image: str) -> Iterator[str]:
    name = f"raftorch-{node}"
    net = docker_client.networks.create(name, driver="bridge", labels={"raftorch.io/node": node})
    yield name
    for container in docker_client.api.containers(all=True, filters={"label": f"raftorch.io/node={node}"}):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(container["Id"], force=True)
    net.remove()


def full(pool: SandboxPool) -> list[str]:
    assert pool.wait_full(60), f"pool has {len(pool.ready())} of {SIZE}"
    return pool.ready()


def pod(node: str, image: str, name: str = "pooled") -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=f"uid-{name}-{node}"),
        spec=objects_pb2.PodSpec(restart_policy="Always", termination_grace_period_seconds=1, containers=[
            objects_pb2.Container(name="main", image=image, image_pull_policy="IfNotPresent")]))


def run_plan(runtime: DockerRuntime, pods: list[objects_pb2.Pod], state: AgentPodState, config: ReconcileConfig
             ) -> tuple[AgentPodState, list[ContainerInfo]]:
    """One plan carried out as the agent would: a sandbox start with its containers through start_pod."""
    plan = plan_pod_actions(pods, runtime.list_containers(config.node), state, time.time(), config)
    started: list[ContainerInfo] = []
    for action in plan.actions:
        assert isinstance(action, StartContainer), action
        result = runtime.start_pod(action.spec, action.then)
        started.append(result.sandbox)
        started.extend(c for c in result.containers if isinstance(c, ContainerInfo))
    return plan.state, started


def test_a_pod_claims_a_pooled_sandbox_and_a_restarted_agent_keeps_it_as_it_is(
        docker_client: Any, node: str, image: str, network: str) -> None:
    runtime = DockerRuntime()
    config = ReconcileConfig(node=node, host_ip="127.0.0.1", network=network, sandbox_image=PAUSE)
    pool = runtime.start_sandbox_pool(node, network, PAUSE, SIZE)
    assert pool is not None
    pooled = full(pool)
    assert runtime.list_containers(node) == []  # pool containers are no pods

    web = pod(node, image)
    state, started = run_plan(runtime, [web], AgentPodState(), config)
    sandbox, main = started
    assert sandbox.id in pooled and sandbox.pod_uid == web.metadata.uid and sandbox.is_sandbox
    assert main.sandbox == sandbox.id and main.running
    plan = plan_pod_actions([web], runtime.list_containers(node), state, time.time(), config)
    assert plan.actions == ()
    status = plan.statuses[web.metadata.uid]
    assert status.phase == "Running" and status.pod_ip == sandbox.ip
    net = docker_client.api.inspect_container(sandbox.id)["NetworkSettings"]["Networks"][network]
    assert net["IPAddress"] == sandbox.ip
    full(pool)  # refilled once no start is under way
    runtime.stop_sandbox_pool()
    runtime.close()

    # A restarted agent: a new runtime and an empty memory find the pod as it was.
    again = DockerRuntime()
    try:
        pool = again.start_sandbox_pool(node, network, PAUSE, SIZE)
        assert pool is not None
        listed = again.list_containers(node)
        assert {(c.container, c.id) for c in listed} == {(SANDBOX_CONTAINER, sandbox.id), ("main", main.id)}
        plan = plan_pod_actions([web], listed, AgentPodState(), time.time(), config)
        assert plan.actions == ()  # nothing restarted
        assert plan.statuses[web.metadata.uid].pod_ip == sandbox.ip
        assert set(full(pool)).isdisjoint({sandbox.id})  # the pool it took back holds no claimed sandbox

        # The pod deleted: its sandbox goes like any other; the pool stays.
        for _ in range(2):  # its container, then its sandbox
            plan = plan_pod_actions([], again.list_containers(node), AgentPodState(), time.time(), config)
            for action in plan.actions:
                assert isinstance(action, StopContainer | RemoveContainer), action
                again.remove(action.container_id)
        assert again.list_containers(node) == []
        assert len(full(pool)) == SIZE
    finally:
        again.close()


def test_pool_containers_go_when_the_pool_is_off_or_the_node_is_uninstalled(
        docker_client: Any, node: str, image: str, network: str) -> None:
    runtime = DockerRuntime()
    try:
        pool = runtime.start_sandbox_pool(node, network, PAUSE, SIZE)
        assert pool is not None
        first = full(pool)
        runtime.stop_sandbox_pool()
        # A smaller pool keeps what fits and removes the rest.
        pool = runtime.start_sandbox_pool(node, network, PAUSE, 1)
        assert pool is not None and len(pool.ready()) == 1 and pool.ready()[0] in first
        runtime.stop_sandbox_pool()
        assert runtime.start_sandbox_pool(node, network, PAUSE, 0) is None  # off: none left
        mine = docker_client.api.containers(all=True, filters={"label": f"raftorch.io/node={node}"})
        assert mine == []
        pool = runtime.start_sandbox_pool(node, network, PAUSE, SIZE)
        assert pool is not None
        full(pool)
        runtime.stop_sandbox_pool()
        assert runtime.remove_sandbox_pool(node) == SIZE  # what `raftorch-agent --uninstall` does
    finally:
        runtime.close()
