"""The cache's indexes follow every change: the scheduler's snapshot built from them equals the
one built by a pass over every pod, and owners, nodes and pending pods find the right keys."""

from __future__ import annotations

import random

from raftorch.api.v1 import objects_pb2
from raftorch.master.indexes import CacheIndex
from raftorch.master.placement import build_snapshot, snapshot_from_index

NODES = [f"n{i}" for i in range(4)]


def node(name: str) -> objects_pb2.Node:
    return objects_pb2.Node(
        metadata=objects_pb2.ObjectMeta(name=name, uid=f"uid-{name}"),
        status=objects_pb2.NodeStatus(allocatable={"cpu": "4", "memory": "8Gi", "pods": "110"},
                                      conditions=[objects_pb2.Condition(type="Ready", status="True")]))


def pod(i: int, rng: random.Random) -> objects_pb2.Pod:
    owner = rng.choice(["", "rs-a", "rs-b"])
    p = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=f"p{i}", namespace=rng.choice(["default", "other"]), uid=f"uid-p{i}"),
        spec=objects_pb2.PodSpec(node_name=rng.choice(["", *NODES]), containers=[objects_pb2.Container(
            name="c", resources=objects_pb2.ResourceRequirements(
                requests={"cpu": f"{rng.choice([100, 250])}m", "memory": "64Mi"}),
            ports=[objects_pb2.ContainerPort(container_port=80, host_port=rng.choice([0, 8080]))])]),
        status=objects_pb2.PodStatus(phase=rng.choice(["Pending", "Running", "Succeeded"])))
    if owner:
        p.metadata.owner_references.add(kind="ReplicaSet", name=owner, uid=f"uid-{owner}", controller=True)
    if rng.random() < 0.1:
        p.metadata.annotations["raftorch.io/mirror"] = "true"
    if rng.random() < 0.1:
        p.metadata.deletion_timestamp = "2026-12-03T10:00:00Z"
    return p


def key(p: objects_pb2.Pod) -> str:
    return f"/registry/pods/{p.metadata.namespace}/{p.metadata.name}"


def test_indexes_match_a_full_pass_after_random_changes() -> None:
    rng = random.Random(7)
    index = CacheIndex()
    nodes = [node(n) for n in NODES]
    for n in nodes:
        index.update("Node", f"/registry/nodes/{n.metadata.name}", None, n)
    stored: dict[str, objects_pb2.Pod] = {}
    for step in range(600):
        i = rng.randrange(40)
        new = pod(i, rng) if rng.random() < 0.8 else None
        # A pod keeps its namespace: the key names it.
        old_key = next((k for k in stored if k.endswith(f"/p{i}")), None)
        old = stored.pop(old_key) if old_key else None
        if old is not None:
            index.update("Pod", key(old), old, None)
        if new is not None:
            stored[key(new)] = new
            index.update("Pod", key(new), None, new)

        pods = list(stored.values())
        assert snapshot_from_index(nodes, index) == build_snapshot(nodes, pods), f"step {step}"
        assert index.pending == {key(p) for p in pods if not p.spec.node_name
                                 and not p.metadata.deletion_timestamp and p.status.phase != "Succeeded"}
        for rs in ("rs-a", "rs-b"):
            assert [k for _, k in index.children(f"uid-{rs}", "Pod")] == sorted(
                key(p) for p in pods if p.metadata.owner_references
                and p.metadata.owner_references[0].uid == f"uid-{rs}")
        for n in NODES:
            assert index.pods_on(n) == sorted(key(p) for p in pods if p.spec.node_name == n)
        assert index.in_namespace("Pod", "other") == sorted(key(p) for p in pods if p.metadata.namespace == "other")
        assert index.live_uids == {p.metadata.uid for p in pods} | {n.metadata.uid for n in nodes}
