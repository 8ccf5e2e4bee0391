"""Replica set controller, pure: keep `spec.replicas` pods from the template alive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal, Invalid
from raftorch.master.controllers._util import (
    PENDING,
    RUNNING,
    UNKNOWN,
    controller_owner,
    is_controlled_by,
    parse_time,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    pod_is_terminal,
    pod_is_terminating,
)

# A suffix source that keeps returning taken names is a bug; give up instead of looping forever.
_MAX_SUFFIX_TRIES = 100
_PHASE_RANK = {PENDING: 0, "": 0, UNKNOWN: 1, RUNNING: 2}


@dataclass(frozen=True, slots=True)
class ReplicaSetPlan:
    """Pods to create and pod names to delete; `status` describes the pods once both are done,
    so planning again after applying the plan gives an empty plan."""

    create: tuple[objects_pb2.Pod, ...]
    delete: tuple[str, ...]
    status: objects_pb2.ReplicaSetStatus

    def is_noop(self, rs: objects_pb2.ReplicaSet) -> bool:
        return not self.create and not self.delete and self.status == rs.status


def plan_replicaset(rs: objects_pb2.ReplicaSet, pods: Sequence[objects_pb2.Pod],
                    new_suffix: Callable[[], str]) -> ReplicaSetPlan:
    """`pods`: at least those the replica set controls (others are ignored, but their names
    are avoided for new pods). Finished pods are deleted so that they are replaced."""
    if rs.spec.replicas < 0:
        raise Invalid(f"replica set {rs.metadata.name}: spec.replicas: must not be negative")
    own = [p for p in pods if p.metadata.namespace == rs.metadata.namespace
           and is_controlled_by(p.metadata, "ReplicaSet", rs.metadata)]
    active = [p for p in own if pod_is_active(p)]
    if rs.metadata.deletion_timestamp:
        # Being deleted: the garbage collector takes the pods; only report.
        return ReplicaSetPlan((), (), _status(rs, active, 0))

    finished = [p.metadata.name for p in own if pod_is_terminal(p) and not pod_is_terminating(p)]
    excess = len(active) - rs.spec.replicas
    doomed = [p.metadata.name for p in sorted(active, key=_deletion_rank)[:max(excess, 0)]]
    created: list[objects_pb2.Pod] = []
    if excess < 0:
        taken = {p.metadata.name for p in pods if p.metadata.namespace == rs.metadata.namespace}
        for _ in range(-excess):
            pod = _new_pod(rs, _free_name(rs.metadata.name, taken, new_suffix))
            taken.add(pod.metadata.name)
            created.append(pod)
    gone = set(doomed)
    survivors = [p for p in active if p.metadata.name not in gone]
    return ReplicaSetPlan(
        create=tuple(created),
        delete=tuple(sorted(finished) + doomed),
        status=_status(rs, survivors, len(created)),
    )


def _deletion_rank(pod: objects_pb2.Pod) -> tuple[bool, int, bool, int, float, str]:
    """Sorts the pods to delete first to the front: unscheduled, then pending, then not ready,
    then restarting more often, then the newest."""
    created = parse_time(pod.metadata.creation_timestamp)
    restarts = sum(c.restart_count for c in pod.status.container_statuses)
    return (
        bool(pod.spec.node_name),
        _PHASE_RANK.get(pod.status.phase, 0),
        pod_is_ready(pod),
        -restarts,
        -created if created is not None else float("-inf"),
        pod.metadata.name,
    )


def _free_name(rs_name: str, taken: set[str], new_suffix: Callable[[], str]) -> str:
    for _ in range(_MAX_SUFFIX_TRIES):
        name = f"{rs_name}-{new_suffix()}"
        if name not in taken:
            return name
    raise Internal(f"replica set {rs_name}: no free pod name after {_MAX_SUFFIX_TRIES} suffixes")


def _new_pod(rs: objects_pb2.ReplicaSet, name: str) -> objects_pb2.Pod:
    template = rs.spec.template
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name=name,
            namespace=rs.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations=dict(template.metadata.annotations),
            owner_references=[controller_owner("ReplicaSet", rs.metadata)],
        ),
        status=objects_pb2.PodStatus(phase=PENDING),
    )
    pod.spec.CopyFrom(template.spec)
    return pod


def _status(rs: objects_pb2.ReplicaSet, survivors: Sequence[objects_pb2.Pod],
            created: int) -> objects_pb2.ReplicaSetStatus:
    return objects_pb2.ReplicaSetStatus(
        replicas=len(survivors) + created,
        ready_replicas=sum(1 for p in survivors if pod_is_ready(p)),
        available_replicas=sum(1 for p in survivors if pod_is_available(p)),
        observed_generation=rs.metadata.generation,
    )
