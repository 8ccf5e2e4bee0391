"""DaemonSet controller, pure: one pod on every node that should run one.

A node should run the daemon when it is not cordoned, matches the template's node selector and
required node affinity, and has no NoSchedule or NoExecute taint the template does not tolerate.
Pods are created already bound to their node (the scheduler does not place them), and only on
Ready nodes. Pods on nodes that should not run one, or that are gone, are deleted.

Updates (strategy RollingUpdate) replace pods whose `controller-revision-hash` label differs from
the template's: unavailable old pods at once, available ones only while fewer than
`maxUnavailable` nodes lack an available daemon. A node's new pod is created once its old pod
is gone, so a node never runs two daemons. OnDelete replaces a pod only when someone deletes it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal
from raftorch.master.constraints import Taint, constraints_of, node_affinity_matches, untolerated
from raftorch.master.controllers._util import (
    PENDING,
    controller_owner,
    is_controlled_by,
    labels_match,
    pod_is_available,
    pod_is_ready,
    pod_is_terminal,
    pod_is_terminating,
    resolve_int_or_percent,
)

REVISION_LABEL = "controller-revision-hash"
_MAX_SUFFIX_TRIES = 100


@dataclass(frozen=True, slots=True)
class DaemonNode:
    name: str
    labels: Mapping[str, str]
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True, slots=True)
class DaemonSetPlan:
    create: tuple[objects_pb2.Pod, ...]
    delete: tuple[str, ...]  # pod names
    status: objects_pb2.DaemonSetStatus


def template_hash(template: objects_pb2.PodTemplateSpec) -> str:
    clean = objects_pb2.PodTemplateSpec()
    clean.CopyFrom(template)
    clean.metadata.labels.pop(REVISION_LABEL, None)
    return hashlib.sha256(clean.SerializeToString(deterministic=True)).hexdigest()[:10]


def should_run(ds: objects_pb2.DaemonSet, node: DaemonNode) -> bool:
    spec = ds.spec.template.spec
    constraints = constraints_of(spec)
    return (not node.unschedulable and labels_match(spec.node_selector, node.labels)
            and node_affinity_matches(constraints.required, node.labels)
            and untolerated(node.taints, constraints.tolerations) is None)


def plan_daemonset(ds: objects_pb2.DaemonSet, nodes: Sequence[DaemonNode], pods: Sequence[objects_pb2.Pod],
                   now: float, new_suffix: Callable[[], str]) -> DaemonSetPlan:
    """`pods`: at least those the daemon set controls; the names of the others are avoided."""
    own = [p for p in pods if p.metadata.namespace == ds.metadata.namespace
           and is_controlled_by(p.metadata, "DaemonSet", ds.metadata)]
    revision = template_hash(ds.spec.template)
    min_ready = ds.spec.min_ready_seconds
    eligible = {n.name: n for n in nodes if should_run(ds, n)}
    on_node: dict[str, list[objects_pb2.Pod]] = defaultdict(list)
    terminating: set[str] = set()
    delete: list[str] = []
    for pod in own:
        if pod_is_terminating(pod):
            terminating.add(pod.spec.node_name)
        elif pod_is_terminal(pod):
            delete.append(pod.metadata.name)  # replaced once gone, like a ReplicaSet's finished pods
            terminating.add(pod.spec.node_name)
        else:
            on_node[pod.spec.node_name].append(pod)

    misscheduled = 0
    for node_name, node_pods in on_node.items():
        if node_name not in eligible:
            misscheduled += len(node_pods)
            delete.extend(p.metadata.name for p in node_pods)

    def updated(pod: objects_pb2.Pod) -> bool:
        return pod.metadata.labels.get(REVISION_LABEL) == revision

    def available(pod: objects_pb2.Pod) -> bool:
        return pod_is_available(pod, min_ready, now)

    create: list[objects_pb2.Pod] = []
    taken = {p.metadata.name for p in pods if p.metadata.namespace == ds.metadata.namespace}
    kept: dict[str, objects_pb2.Pod] = {}
    for name in sorted(eligible):
        node_pods = on_node.get(name, [])
        if not node_pods:
            if name not in terminating and eligible[name].ready and not ds.metadata.deletion_timestamp:
                pod = _new_pod(ds, name, revision, _free_name(ds.metadata.name, taken, new_suffix))
                taken.add(pod.metadata.name)
                create.append(pod)
            continue
        # Keep one: the updated, then available, then oldest; the rest are duplicates.
        best = sorted(node_pods, key=lambda p: (not updated(p), not available(p), p.metadata.creation_timestamp,
                                                p.metadata.name))
        kept[name] = best[0]
        delete.extend(p.metadata.name for p in best[1:])

    rolling = ds.spec.update_strategy.type in ("", "RollingUpdate")
    desired = len(eligible)
    if rolling and not ds.metadata.deletion_timestamp:
        budget = max(1, resolve_int_or_percent(ds.spec.update_strategy.rolling_update.max_unavailable or "1",
                                               desired, True, "spec.updateStrategy.rollingUpdate.maxUnavailable"))
        unavailable = sum(1 for name in eligible if name not in kept or not available(kept[name]))
        for name in sorted(kept):
            pod = kept[name]
            if updated(pod):
                continue
            if not available(pod):
                delete.append(pod.metadata.name)
            elif unavailable < budget:
                delete.append(pod.metadata.name)
                unavailable += 1

    gone = set(delete)
    live = {name: pod for name, pod in kept.items() if pod.metadata.name not in gone}
    number_available = sum(1 for p in live.values() if available(p))
    status = objects_pb2.DaemonSetStatus(
        desired_number_scheduled=desired,
        current_number_scheduled=len(kept),
        number_misscheduled=misscheduled,
        number_ready=sum(1 for p in live.values() if pod_is_ready(p)),
        updated_number_scheduled=sum(1 for p in kept.values() if updated(p)),
        number_available=number_available,
        number_unavailable=max(0, desired - number_available),
        observed_generation=ds.metadata.generation,
    )
    return DaemonSetPlan(tuple(create), tuple(sorted(set(delete))), status)


def _free_name(ds_name: str, taken: set[str], new_suffix: Callable[[], str]) -> str:
    for _ in range(_MAX_SUFFIX_TRIES):
        name = f"{ds_name}-{new_suffix()}"
        if name not in taken:
            return name
    raise Internal(f"daemon set {ds_name}: no free pod name after {_MAX_SUFFIX_TRIES} suffixes")


def _new_pod(ds: objects_pb2.DaemonSet, node: str, revision: str, name: str) -> objects_pb2.Pod:
    template = ds.spec.template
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name=name,
            namespace=ds.metadata.namespace,
            labels={**template.metadata.labels, REVISION_LABEL: revision},
            annotations=dict(template.metadata.annotations),
            owner_references=[controller_owner("DaemonSet", ds.metadata)],
        ),
        status=objects_pb2.PodStatus(phase=PENDING),
    )
    pod.spec.CopyFrom(template.spec)
    pod.spec.node_name = node
    return pod
