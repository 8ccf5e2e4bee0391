"""The Docker engine for tests whose agents run real containers, a cluster on it, and the cleanup
after them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.cluster import docker_reachable
from raftorch.local.masters import LocalMasters
from tests.integration._wait import eventually


def docker_for_nodes(nodes: Iterable[str]) -> Iterator[Any]:
    """Yields a Docker client (skips without an engine, fails in CI); afterwards removes what
    the agents of `nodes` left: containers, claim volumes and pod networks."""
    if not docker_reachable():
        if os.environ.get("CI"):
            pytest.fail("Docker engine unreachable in CI")
        pytest.skip("no Docker engine")
    import docker

    client = docker.from_env()
    try:
        yield client
    finally:
        for node in nodes:
            for c in client.containers.list(all=True, filters={"label": f"raftorch.io/node={node}"}):
                c.remove(force=True)
            for v in client.volumes.list(filters={"label": f"raftorch.io/node={node}"}):
                v.remove(force=True)
            for net in client.networks.list(names=[f"raftorch-{node}"]):
                if net.name == f"raftorch-{node}":
                    net.remove()
        client.close()


def ready_nodes(c: Client) -> set[str]:
    nodes, _ = c.objects.list("nodes")
    return {n.metadata.name for n in nodes if isinstance(n, objects_pb2.Node)
            and any(cd.type == "Ready" and cd.status == "True" for cd in n.status.conditions)}


@contextmanager
def docker_cluster(root: Path, nodes: Sequence[str], extra_args: Sequence[str] = (),
                   log_lines: int = 30) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    """Three masters and an agent per node on this host's Docker engine, the nodes Ready; always
    torn down, and the agents' log tails printed (a failing test shows what they said)."""
    masters = LocalMasters(root / "masters")
    masters.start()
    agents = LocalAgents(root / "agents", masters.endpoints, list(nodes), extra_args=list(extra_args),
                         ca_dir=masters.pki_dir)
    try:
        masters.wait_ready()
        agents.start()
        with masters.client() as c:
            # Pods spread only over nodes that are Ready when they are scheduled.
            eventually(lambda: ready_nodes(c) >= set(nodes), what=f"nodes {', '.join(nodes)} Ready")
        yield masters, agents
    finally:
        agents.stop()
        masters.kill()
        for a in agents.agents.values():
            if a.log_path.exists():
                print(f"--- {a.name} log tail ---", *a.log_path.read_text().splitlines()[-log_lines:], sep="\n")
