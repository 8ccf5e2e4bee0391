"""The Docker engine for tests whose agents run real containers, and the cleanup after them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from raftorch.local.cluster import docker_reachable


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
