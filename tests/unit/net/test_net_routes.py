"""plan_routes: a route to every other node's pod CIDR, via its InternalIP."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.net import Route, RouteApplier, plan_routes


def _node(name: str, cidr: str, *addresses: tuple[str, str]) -> objects_pb2.Node:
    return objects_pb2.Node(
        metadata=objects_pb2.ObjectMeta(name=name),
        spec=objects_pb2.NodeSpec(pod_cidr=cidr),
        status=objects_pb2.NodeStatus(addresses=[objects_pb2.NodeAddress(type=t, address=a) for t, a in addresses]),
    )


def test_routes_to_every_other_node() -> None:
    nodes = [
        _node("c", "10.124.3.0/24", ("Hostname", "c"), ("InternalIP", "192.0.2.13")),
        _node("a", "10.124.1.0/24", ("InternalIP", "192.0.2.11")),
        _node("b", "10.124.2.0/24", ("InternalIP", "192.0.2.12"), ("InternalIP", "192.0.2.99")),
    ]
    assert plan_routes(nodes, "a") == [Route("10.124.2.0/24", "192.0.2.12"), Route("10.124.3.0/24", "192.0.2.13")]


def test_nodes_without_cidr_or_address_are_skipped() -> None:
    nodes = [
        _node("a", "10.124.1.0/24", ("InternalIP", "192.0.2.11")),
        _node("no-cidr", "", ("InternalIP", "192.0.2.12")),
        _node("no-ip", "10.124.3.0/24", ("Hostname", "no-ip")),
        _node("bad-cidr", "10.124.4.0/33", ("InternalIP", "192.0.2.14")),
        _node("bad-ip", "10.124.5.0/24", ("InternalIP", "node-5")),
        _node("ok", "10.124.6.7/24", ("InternalIP", "192.0.2.16")),
    ]
    assert plan_routes(nodes, "a") == [Route("10.124.6.0/24", "192.0.2.16")]


def test_conflicting_claims_get_no_route() -> None:
    nodes = [
        _node("a", "10.124.1.0/24", ("InternalIP", "192.0.2.11")),
        _node("b", "10.124.2.0/24", ("InternalIP", "192.0.2.12")),
        _node("b2", "10.124.2.0/24", ("InternalIP", "192.0.2.22")),
        _node("mine", "10.124.1.128/25", ("InternalIP", "192.0.2.13")),
        _node("wide", "10.124.8.0/21", ("InternalIP", "192.0.2.14")),
        _node("inside-wide", "10.124.9.0/24", ("InternalIP", "192.0.2.15")),
        _node("fine", "10.124.20.0/24", ("InternalIP", "192.0.2.16")),
    ]
    assert plan_routes(nodes, "a") == [Route("10.124.20.0/24", "192.0.2.16")]


def test_unknown_self_and_empty() -> None:
    assert plan_routes([], "a") == []
    assert plan_routes([_node("b", "10.124.2.0/24", ("InternalIP", "192.0.2.12"))], "a") == [
        Route("10.124.2.0/24", "192.0.2.12")]


def test_applier_refuses_bad_input_before_running_anything() -> None:
    with pytest.raises(Invalid):
        RouteApplier("not-a-cidr")
    applier = RouteApplier("10.124.0.0/16", netns="rt-does-not-matter")
    with pytest.raises(Invalid):
        applier.apply([Route("10.125.0.0/24", "192.0.2.12")])
    with pytest.raises(Invalid):
        applier.apply([Route("10.124.2.0/24", "gateway")])
