"""RouteApplier inside host h1: pod-to-pod traffic across hosts, and only our routes change."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from netns_cluster import CLIENT_IP, CLUSTER_CIDR, ECHO_PORT, HOST_IPS, PODS, Topology, apply_pod_routes

from raftorch.errors import Internal
from raftorch.net import Route, RouteApplier

pytestmark = pytest.mark.processes


@pytest.fixture
def routes(topology: Topology) -> Iterator[RouteApplier]:
    applier = RouteApplier(CLUSTER_CIDR, netns=topology.ns("h1"))
    try:
        yield applier
    finally:
        topology.ip("h1", "route", "del", "10.124.99.0/24", check=False)
        topology.ip("h1", "route", "replace", "default", "dev", "eth0")
        apply_pod_routes(topology)


def _table(topology: Topology) -> dict[str, dict[str, str]]:
    return {str(r["dst"]): r for r in json.loads(topology.ip("h1", "-j", "route", "show").stdout)}


def test_pods_reach_each_other_across_hosts(topology: Topology, routes: RouteApplier) -> None:
    assert routes.current() == ["10.124.2.0/24"]
    assert topology.answers("p1a", PODS["p2a"][1], ECHO_PORT, 2) == ["p2a", "p2a"]
    assert topology.answers("p2a", PODS["p1b"][1], ECHO_PORT, 2) == ["p1b", "p1b"]


def test_apply_replaces_and_deletes_only_our_routes(topology: Topology, routes: RouteApplier) -> None:
    h2 = HOST_IPS["h2"]
    topology.ip("h1", "route", "add", "10.124.99.0/24", "via", h2)
    routes.apply([Route("10.124.2.0/24", h2), Route("10.124.3.0/24", h2)])
    assert routes.current() == ["10.124.2.0/24", "10.124.3.0/24"]
    routes.apply([Route("10.124.3.0/24", CLIENT_IP)])
    table = _table(topology)
    assert routes.current() == ["10.124.3.0/24"]
    assert "10.124.2.0/24" not in table
    assert table["10.124.3.0/24"]["gateway"] == CLIENT_IP
    assert table["10.124.99.0/24"]["gateway"] == h2
    assert table["10.124.1.0/24"]["dev"] == "cbr0"
    (lost,) = topology.connect("p1a", PODS["p2a"][1], ECHO_PORT, timeout=1.0)
    assert "error" in lost
    # Without h1's catch-all on-link default route, 10.200.0.1 is no usable gateway: that
    # route fails, the others are still made.
    topology.ip("h1", "route", "del", "default")
    with pytest.raises(Internal, match=r"10\.124\.4\.0/24"):
        routes.apply([Route("10.124.4.0/24", "10.200.0.1"), Route("10.124.5.0/24", h2)])
    assert routes.current() == ["10.124.5.0/24"]
    routes.cleanup()
    assert routes.current() == []
    assert {"10.124.99.0/24", "10.124.1.0/24"} <= set(_table(topology))
