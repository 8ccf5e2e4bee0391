"""Pods with persistent volume claims go to their claim's node; a claim binds where its first pod went."""

from __future__ import annotations

from raftorch.api.v1 import objects_pb2
from raftorch.master.placement import claim_placement, nodes_of_claims


def claim(name: str, node: str = "") -> objects_pb2.PersistentVolumeClaim:
    return objects_pb2.PersistentVolumeClaim(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                                             status=objects_pb2.PersistentVolumeClaimStatus(node_name=node))


def pod(name: str, *claims: str, node: str = "") -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"), spec=objects_pb2.PodSpec(
        node_name=node, volumes=[objects_pb2.Volume(name=f"v{i}", persistent_volume_claim=(
            objects_pb2.PersistentVolumeClaimVolumeSource(claim_name=c))) for i, c in enumerate(claims)]))


def test_a_claim_is_on_its_bound_node_else_where_a_pod_using_it_runs() -> None:
    claims = [claim("bound", "node-a"), claim("unbound"), claim("idle")]
    pods = [pod("p1", "unbound", node="node-b"), pod("p2", "bound", node="node-c")]
    assert nodes_of_claims(claims, pods) == {("default", "bound"): "node-a", ("default", "unbound"): "node-b"}


def test_pending_pods_are_pinned_to_their_claims_node_or_told_why_not() -> None:
    claims = {("default", c.metadata.name): c for c in (claim("a", "node-a"), claim("b", "node-b"), claim("new"))}
    nodes = nodes_of_claims(claims.values(), [])
    assert claim_placement(pod("p", "a"), claims, nodes) == ("node-a", "", set())
    assert claim_placement(pod("p", "new"), claims, nodes) == ("", "", {("default", "new")})
    assert claim_placement(pod("p", "missing"), claims, nodes)[1] == 'persistentvolumeclaim "missing" not found'
    assert claim_placement(pod("p", "a", "b"), claims, nodes)[1] == \
        "its claims are on different nodes: node-a, node-b"
