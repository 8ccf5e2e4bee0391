"""Fixtures of the network namespace tests; the cluster itself is in netns_cluster."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from netns_cluster import Topology, build, destroy, probe


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    probe()
    topo = Topology(suffix=secrets.token_hex(3))
    try:
        build(topo)
        yield topo
    finally:
        destroy(topo)
