"""Cluster objects for the drills: a deployment to move around, and snapshots to compare."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.drill import probe
from raftorch.errors import NotFound
from raftorch.objects import MIRROR_ANNOTATION

NAMESPACE = "default"
# Kinds a restart must leave exactly as they were (events and leases come and go by themselves).
SNAPSHOT_KINDS = ("namespaces", "nodes", "deployments", "replicasets", "services", "pods")


def deployment(name: str, replicas: int) -> objects_pb2.Deployment:
    labels = {"app": name}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=NAMESPACE, labels=labels),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
                    name="web", image="drill:v1",
                    resources=objects_pb2.ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"}))]))))


def pods_of(c: Client, app: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", NAMESPACE, label_selector=f"app={app}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


def running_by_node(c: Client, app: str) -> Counter[str]:
    return Counter(p.spec.node_name for p in pods_of(c, app)
                   if p.status.phase == "Running" and not p.metadata.deletion_timestamp)


def ready_nodes(c: Client) -> list[str]:
    nodes, _ = c.objects.list("nodes")
    return [n.metadata.name for n in nodes if isinstance(n, objects_pb2.Node)
            and any(cd.type == "Ready" and cd.status == "True" for cd in n.status.conditions)]


def place_deployment(c: Client, app: str, replicas: int, timeout: float) -> tuple[str, int]:
    """Create the deployment, wait for all its pods to run; (busiest node, its pod count)."""
    c.objects.create(deployment(app, replicas))
    probe.wait_for(lambda: sum(running_by_node(c, app).values()) == replicas, timeout,
                   f"{replicas} pods of {app} Running", period=0.1)
    node, count = running_by_node(c, app).most_common(1)[0]
    return node, count


def wait_moved(c: Client, app: str, replicas: int, lost: str, timeout: float) -> None:
    def moved() -> bool:
        spread = running_by_node(c, app)
        return lost not in spread and sum(spread.values()) == replicas

    probe.wait_for(moved, timeout, f"the pods of {app} Running off {lost}", period=0.1)


def delete_deployment(c: Client, app: str) -> None:
    with contextlib.suppress(NotFound):
        c.objects.delete("deployments", app, NAMESPACE)


def snapshot(c: Client) -> dict[str, Any]:
    """Identity of every lasting object, and where and how each pod runs."""
    out: dict[str, Any] = {}
    for kind in SNAPSHOT_KINDS:
        items, _ = c.objects.list(kind)
        for obj in items:
            meta: objects_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
            if kind == "pods" and meta.annotations.get(MIRROR_ANNOTATION) == "true":
                continue
            ident = f"{kind}/{meta.namespace}/{meta.name}"
            if isinstance(obj, objects_pb2.Pod):
                out[ident] = (meta.uid, obj.spec.node_name, obj.status.phase)
            else:
                out[ident] = (meta.uid,)
    return out


def compare_snapshots(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = [f"{ident} is gone" for ident in sorted(set(before) - set(after))]
    for ident in sorted(set(before) & set(after)):
        if before[ident] != after[ident]:
            problems.append(f"{ident} changed from {before[ident]} to {after[ident]}")
    return problems
