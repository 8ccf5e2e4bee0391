"""plan_replicaset: which pods to create, which to delete, and the status it reports."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from controller_sim import rfc3339

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal, Invalid
from raftorch.master.controllers import plan_replicaset


def _rs(replicas: int, generation: int = 3) -> objects_pb2.ReplicaSet:
    return objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(name="web-abc", namespace="shop", uid="rs-uid", generation=generation),
        spec=objects_pb2.ReplicaSetSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels={"app": "web"}),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels={"app": "web", "pod-template-hash": "abc"},
                                                annotations={"note": "x"}),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="main", image="web:v1")],
                                         restart_policy="Always"),
            ),
        ),
    )


def _pod(name: str, *, node: str = "node-1", phase: str = "Running", ready: bool = True, created: int = 0,
         restarts: int = 0, owner_uid: str = "rs-uid", deleting: bool = False) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name=name, namespace="shop", creation_timestamp=rfc3339(created),
            owner_references=[objects_pb2.OwnerReference(kind="ReplicaSet", name="web-abc", uid=owner_uid,
                                                         controller=True)]),
        spec=objects_pb2.PodSpec(node_name=node),
        status=objects_pb2.PodStatus(phase=phase, container_statuses=[
            objects_pb2.ContainerStatus(name="main", restart_count=restarts)]),
    )
    if ready:
        pod.status.conditions.append(objects_pb2.Condition(type="Ready", status="True"))
    if deleting:
        pod.metadata.deletion_timestamp = rfc3339(1000)
    return pod


def _counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"s{next(numbers)}"


def test_missing_pods_are_created_from_the_template() -> None:
    rs = _rs(3)
    plan = plan_replicaset(rs, [_pod("web-abc-old")], _counter())
    assert [p.metadata.name for p in plan.create] == ["web-abc-s1", "web-abc-s2"]
    pod = plan.create[0]
    assert pod.metadata.namespace == "shop"
    assert dict(pod.metadata.labels) == {"app": "web", "pod-template-hash": "abc"}
    assert dict(pod.metadata.annotations) == {"note": "x"}
    assert list(pod.metadata.owner_references) == [
        objects_pb2.OwnerReference(kind="ReplicaSet", name="web-abc", uid="rs-uid", controller=True)]
    assert pod.spec == rs.spec.template.spec
    assert pod.status.phase == "Pending"
    assert plan.delete == ()
    # The status describes the pods once the plan is applied.
    assert (plan.status.replicas, plan.status.ready_replicas, plan.status.available_replicas,
            plan.status.observed_generation) == (3, 1, 1, 3)


def test_planning_again_after_applying_is_empty() -> None:
    rs = _rs(3)
    pods = [_pod("web-abc-a", created=1), _pod("web-abc-b", ready=False, created=2)]
    plan = plan_replicaset(rs, pods, _counter())
    pods += list(plan.create)
    rs.status.CopyFrom(plan.status)
    assert plan_replicaset(rs, pods, _counter()).is_noop(rs)

    rs.spec.replicas = 1
    plan = plan_replicaset(rs, pods, _counter())
    survivors = [p for p in pods if p.metadata.name not in plan.delete]
    rs.status.CopyFrom(plan.status)
    assert plan_replicaset(rs, survivors, _counter()).is_noop(rs)
    assert [p.metadata.name for p in survivors] == ["web-abc-a"]


def test_taken_names_are_skipped_and_a_stuck_suffix_source_fails() -> None:
    rs = _rs(2)
    plan = plan_replicaset(rs, [_pod("web-abc-s1", owner_uid="someone-else")], _counter())
    assert [p.metadata.name for p in plan.create] == ["web-abc-s2", "web-abc-s3"]
    with pytest.raises(Internal):
        plan_replicaset(rs, [], lambda: "same")


@pytest.mark.parametrize(("doomed", "kept"), [
    (_pod("unscheduled", node="", phase="Pending", ready=False, created=1),
     _pod("pending", phase="Pending", ready=False, created=9)),
    (_pod("pending", phase="Pending", ready=False, created=1), _pod("unready", ready=False, created=9)),
    (_pod("unknown", phase="Unknown", ready=False, created=1), _pod("unready", ready=False, created=9)),
    (_pod("unready", ready=False, created=1), _pod("ready", created=9)),
    (_pod("restarting", restarts=5, created=1), _pod("steady", created=9)),
    (_pod("newer", created=9), _pod("older", created=1)),
], ids=["unscheduled-before-pending", "pending-before-running", "unknown-before-running",
        "unready-before-ready", "restarting-before-steady", "newer-before-older"])
def test_deletion_preference(doomed: objects_pb2.Pod, kept: objects_pb2.Pod) -> None:
    for pods in ([doomed, kept], [kept, doomed]):
        plan = plan_replicaset(_rs(1), pods, _counter())
        assert plan.delete == (doomed.metadata.name,)


def test_scale_down_removes_the_worst_pods_first() -> None:
    pods = [_pod("ready-old", created=1), _pod("ready-new", created=5), _pod("unready", ready=False, created=2),
            _pod("pending", phase="Pending", ready=False, created=3), _pod("unscheduled", node="", ready=False)]
    plan = plan_replicaset(_rs(1), pods, _counter())
    assert plan.delete == ("unscheduled", "pending", "unready", "ready-new")
    assert (plan.status.replicas, plan.status.ready_replicas) == (1, 1)


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_finished_pods_are_deleted_and_replaced(phase: str) -> None:
    pods = [_pod("a"), _pod("done", phase=phase, ready=False)]
    plan = plan_replicaset(_rs(2), pods, _counter())
    assert plan.delete == ("done",)
    assert [p.metadata.name for p in plan.create] == ["web-abc-s1"]
    assert plan.status.replicas == 2


def test_terminating_pods_neither_count_nor_get_deleted_again() -> None:
    pods = [_pod("a"), _pod("leaving", deleting=True)]
    plan = plan_replicaset(_rs(2), pods, _counter())
    assert plan.delete == ()
    assert len(plan.create) == 1
    assert (plan.status.replicas, plan.status.ready_replicas) == (2, 1)


def test_pods_of_other_owners_and_namespaces_are_ignored() -> None:
    stranger = _pod("stranger", owner_uid="other")
    elsewhere = _pod("elsewhere")
    elsewhere.metadata.namespace = "other"
    orphan = _pod("orphan")
    orphan.metadata.ClearField("owner_references")
    plan = plan_replicaset(_rs(1), [stranger, elsewhere, orphan], _counter())
    assert len(plan.create) == 1 and plan.delete == ()


def test_a_replica_set_being_deleted_only_reports() -> None:
    rs = _rs(3)
    rs.metadata.deletion_timestamp = rfc3339(1)
    plan = plan_replicaset(rs, [_pod("a")], _counter())
    assert (plan.create, plan.delete) == ((), ())
    assert plan.status.replicas == 1


def test_negative_replicas_are_invalid() -> None:
    with pytest.raises(Invalid, match="replicas"):
        plan_replicaset(_rs(-1), [], _counter())
