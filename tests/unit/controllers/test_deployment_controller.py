"""plan_deployment on hand-built states: the replica set it creates, the fenceposts, status."""

from __future__ import annotations

import pytest
from controller_sim import make_deployment, rfc3339

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.master.controllers import (
    desired_replicas,
    plan_deployment,
    plan_replicaset,
    pod_template_hash,
    resolve_strategy,
)

REVISION = "deployment.raftorch.io/revision"


def _rs(deploy: objects_pb2.Deployment, image: str, replicas: int, revision: int, created: int,
        ) -> objects_pb2.ReplicaSet:
    """The replica set the deployment would have made for `image`, as stored."""
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(deploy.spec.template)
    template.spec.containers[0].image = image
    h = pod_template_hash(template)
    template.metadata.labels["pod-template-hash"] = h
    return objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(
            name=f"{deploy.metadata.name}-{h}", namespace=deploy.metadata.namespace, uid=f"rs-{h}",
            annotations={REVISION: str(revision)}, creation_timestamp=rfc3339(created),
            owner_references=[objects_pb2.OwnerReference(kind="Deployment", name=deploy.metadata.name,
                                                         uid=deploy.metadata.uid, controller=True)]),
        spec=objects_pb2.ReplicaSetSpec(replicas=replicas, template=template),
    )


def _pods(rs: objects_pb2.ReplicaSet, ready: int, unready: int = 0, *, terminating: int = 0,
          ready_since: int = 0) -> list[objects_pb2.Pod]:
    pods: list[objects_pb2.Pod] = []
    for i in range(ready + unready + terminating):
        pod = objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(
                name=f"{rs.metadata.name}-{i:02d}", namespace=rs.metadata.namespace, uid=f"{rs.metadata.uid}-{i}",
                creation_timestamp=rfc3339(100 + i),
                owner_references=[objects_pb2.OwnerReference(kind="ReplicaSet", name=rs.metadata.name,
                                                             uid=rs.metadata.uid, controller=True)]),
            spec=objects_pb2.PodSpec(node_name="node-1"),
            status=objects_pb2.PodStatus(phase="Running", pod_ip=f"10.1.0.{i + 1}"),
        )
        if i < ready or i >= ready + unready:
            pod.status.conditions.append(objects_pb2.Condition(type="Ready", status="True",
                                                               last_transition_time=rfc3339(ready_since)))
        if i >= ready + unready:
            pod.metadata.deletion_timestamp = rfc3339(150)
        pods.append(pod)
    return pods


def _cond(status: objects_pb2.DeploymentStatus, type_: str) -> objects_pb2.Condition:
    (cond,) = [c for c in status.conditions if c.type == type_]
    return cond


# -- the template hash and the replica set -----------------------------------------------------

def test_template_hash_is_stable_and_ignores_its_own_label() -> None:
    deploy = make_deployment()
    h = pod_template_hash(deploy.spec.template)
    assert len(h) == 10 and int(h, 16) >= 0
    assert pod_template_hash(make_deployment().spec.template) == h
    labelled = objects_pb2.PodTemplateSpec()
    labelled.CopyFrom(deploy.spec.template)
    labelled.metadata.labels["pod-template-hash"] = h
    assert pod_template_hash(labelled) == h
    labelled.spec.containers[0].image = "web:v2"
    assert pod_template_hash(labelled) != h


def test_new_replica_set_carries_labels_selector_owner_and_revision() -> None:
    deploy = make_deployment(4, max_surge="1")
    deploy.spec.template.metadata.annotations["team"] = "blue"
    plan = plan_deployment(deploy, [], [])
    rs = plan.create
    assert rs is not None
    h = pod_template_hash(deploy.spec.template)
    assert rs.metadata.name == f"web-{h}"
    assert rs.metadata.namespace == "default"
    assert dict(rs.metadata.labels) == {"app": "web", "pod-template-hash": h}
    assert dict(rs.spec.selector.match_labels) == {"app": "web", "pod-template-hash": h}
    assert dict(rs.spec.template.metadata.labels) == {"app": "web", "pod-template-hash": h}
    assert rs.spec.template.metadata.annotations["team"] == "blue"
    assert rs.spec.template.spec == deploy.spec.template.spec
    assert list(rs.metadata.owner_references) == [
        objects_pb2.OwnerReference(kind="Deployment", name="web", uid="uid-web", controller=True)]
    assert rs.metadata.annotations[REVISION] == "1"
    assert rs.spec.replicas == 4
    assert plan.status.observed_generation == 1


def test_new_revision_follows_the_highest_existing_one() -> None:
    deploy = make_deployment(2)
    old = [_rs(deploy, "web:v0", 0, 4, 1), _rs(deploy, "web:vX", 0, 7, 2)]
    plan = plan_deployment(deploy, old, [])
    assert plan.create is not None and plan.create.metadata.annotations[REVISION] == "8"


def test_an_old_replica_set_that_is_current_again_gets_the_highest_revision() -> None:
    deploy = make_deployment(2)
    current = _rs(deploy, "web:v1", 0, 1, 1)
    newer = _rs(deploy, "web:v2", 2, 2, 2)
    plan = plan_deployment(deploy, [current, newer], _pods(newer, 2))
    assert plan.create is None
    assert plan.update_revision == ((current.metadata.name, "3"),)

    current.metadata.annotations[REVISION] = "3"
    assert plan_deployment(deploy, [current, newer], _pods(newer, 2)).update_revision == ()


def test_replica_sets_are_found_by_template_not_by_name() -> None:
    deploy = make_deployment(3)
    adopted = _rs(deploy, "web:v1", 3, 1, 1)
    adopted.metadata.name = "legacy-name"
    pods = _pods(adopted, 3)
    plan = plan_deployment(deploy, [adopted], pods)
    assert plan.create is None and plan.scale == ()
    assert plan.status.updated_replicas == 3


# -- fenceposts ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("replicas", "surge", "unavailable", "expected"), [
    (10, "25%", "25%", (3, 2)),
    (10, "", "", (3, 2)),
    (1, "", "", (1, 0)),
    (10, "0", "0", (0, 1)),
    (10, "0%", "5%", (0, 1)),
    (3, "50%", "50%", (2, 1)),
    (10, "4", "30%", (4, 3)),
])
def test_fenceposts_round_surge_up_and_unavailability_down(
        replicas: int, surge: str, unavailable: str, expected: tuple[int, int]) -> None:
    deploy = make_deployment(replicas, max_surge=surge, max_unavailable=unavailable)
    assert resolve_strategy(deploy) == expected


@pytest.mark.parametrize(("surge", "unavailable", "field"), [
    ("abc", "1", "max_surge"), ("1", "-1", "max_unavailable"), ("1.5%", "1", "max_surge")])
def test_bad_fenceposts_are_rejected_with_the_field(surge: str, unavailable: str, field: str) -> None:
    deploy = make_deployment(max_surge=surge, max_unavailable=unavailable)
    with pytest.raises(Invalid, match=field):
        plan_deployment(deploy, [], [])


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(Invalid, match=r"strategy\.type"):
        plan_deployment(make_deployment(strategy="BlueGreen"), [], [])


def test_replicas_default_to_one() -> None:
    deploy = make_deployment()
    deploy.spec.ClearField("replicas")
    assert desired_replicas(deploy) == 1
    plan = plan_deployment(deploy, [], [])
    assert plan.create is not None and plan.create.spec.replicas == 1


# -- rolling update steps ------------------------------------------------------------------------

def test_rollout_start_creates_within_surge_and_scales_old_within_availability() -> None:
    deploy = make_deployment(10, "web:v2", max_surge="3", max_unavailable="2")
    old = _rs(deploy, "web:v1", 10, 1, 1)
    plan = plan_deployment(deploy, [old], _pods(old, 10))
    assert plan.create is not None and plan.create.spec.replicas == 3
    assert plan.scale == ((old.metadata.name, 8),)


def test_unhealthy_old_pods_are_cleaned_up_first() -> None:
    deploy = make_deployment(10, "web:v2", max_surge="3", max_unavailable="2")
    old = _rs(deploy, "web:v1", 10, 1, 1)
    pods = _pods(old, ready=7, unready=3)
    plan = plan_deployment(deploy, [old], pods)
    assert plan.scale == ((old.metadata.name, 8),)
    # ... and the replica set then removes unready ones (the newest two), keeping every ready pod.
    old.spec.replicas = 8
    rs_plan = plan_replicaset(old, pods, lambda: "x")
    assert sorted(rs_plan.delete) == [f"{old.metadata.name}-08", f"{old.metadata.name}-09"]
    assert rs_plan.status.ready_replicas == 7


def test_no_scale_down_while_the_new_pods_are_not_available() -> None:
    deploy = make_deployment(10, "web:v2", max_surge="3", max_unavailable="2")
    old = _rs(deploy, "web:v1", 8, 1, 1)
    new = _rs(deploy, "web:v2", 5, 2, 2)
    pods = _pods(old, 8) + _pods(new, ready=0, unready=5)
    plan = plan_deployment(deploy, [old, new], pods)
    assert not plan.changes_objects()


def test_terminating_pods_are_not_available() -> None:
    deploy = make_deployment(10, "web:v2", max_surge="3", max_unavailable="2")
    old = _rs(deploy, "web:v1", 10, 1, 1)
    pods = _pods(old, ready=8, terminating=2)
    plan = plan_deployment(deploy, [old], pods)
    assert plan.status.replicas == 8 and plan.status.available_replicas == 8
    # 8 available is exactly the minimum: no running old pod may go; the two missing old
    # replicas are given up, and the new set takes their room besides the surge.
    assert plan.scale == ((old.metadata.name, 8),)
    assert plan.create is not None and plan.create.spec.replicas == 5


def test_min_ready_seconds_delays_availability() -> None:
    deploy = make_deployment(3)
    deploy.spec.min_ready_seconds = 30
    rs = _rs(deploy, "web:v1", 3, 1, 1)
    pods = _pods(rs, 3, ready_since=100)
    early = plan_deployment(deploy, [rs], pods, now=rfc3339(110))
    assert (early.status.ready_replicas, early.status.available_replicas) == (3, 0)
    assert _cond(early.status, "Available").status == "False"
    later = plan_deployment(deploy, [rs], pods, now=rfc3339(130))
    assert later.status.available_replicas == 3
    assert _cond(later.status, "Progressing").reason == "NewReplicaSetAvailable"


# -- status --------------------------------------------------------------------------------------

def test_status_in_the_middle_of_a_rollout() -> None:
    deploy = make_deployment(10, "web:v2", max_surge="3", max_unavailable="2")
    deploy.metadata.generation = 5
    old = _rs(deploy, "web:v1", 8, 1, 1)
    new = _rs(deploy, "web:v2", 5, 2, 2)
    pods = _pods(old, 8) + _pods(new, ready=3, unready=2)
    status = plan_deployment(deploy, [old, new], pods, now=rfc3339(500)).status
    assert status.observed_generation == 5
    assert (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas,
            status.unavailable_replicas) == (13, 5, 11, 11, 0)
    assert (_cond(status, "Available").status, _cond(status, "Available").reason) == (
        "True", "MinimumReplicasAvailable")
    progressing = _cond(status, "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "ReplicaSetUpdated")
    assert new.metadata.name in progressing.message
    assert progressing.last_transition_time == rfc3339(500)


def test_unavailable_counts_against_desired() -> None:
    deploy = make_deployment(5)
    rs = _rs(deploy, "web:v1", 5, 1, 1)
    status = plan_deployment(deploy, [rs], _pods(rs, ready=1, unready=4)).status
    assert (status.available_replicas, status.unavailable_replicas) == (1, 4)
    assert (_cond(status, "Available").status, _cond(status, "Available").reason) == (
        "False", "MinimumReplicasUnavailable")


def test_condition_transition_time_only_moves_when_the_status_changes() -> None:
    deploy = make_deployment(2)
    rs = _rs(deploy, "web:v1", 2, 1, 1)
    first = plan_deployment(deploy, [rs], _pods(rs, 2), now=rfc3339(10)).status
    deploy.status.CopyFrom(first)
    again = plan_deployment(deploy, [rs], _pods(rs, 2), now=rfc3339(99)).status
    assert again == first
    degraded = plan_deployment(deploy, [rs], _pods(rs, ready=0, unready=2), now=rfc3339(120)).status
    assert _cond(degraded, "Available").last_transition_time == rfc3339(120)
    assert _cond(degraded, "Progressing").last_transition_time == rfc3339(10)


def test_other_conditions_are_kept() -> None:
    deploy = make_deployment(1)
    deploy.status.conditions.append(objects_pb2.Condition(type="Custom", status="True", reason="Mine"))
    status = plan_deployment(deploy, [], []).status
    assert [c.type for c in status.conditions] == ["Custom", "Available", "Progressing"]


def test_a_deployment_being_deleted_only_gets_its_status() -> None:
    deploy = make_deployment(10, "web:v2")
    deploy.metadata.deletion_timestamp = rfc3339(5)
    old = _rs(deploy, "web:v1", 10, 1, 1)
    plan = plan_deployment(deploy, [old], _pods(old, 10))
    assert not plan.changes_objects()
    assert plan.status.replicas == 10


def test_rollback_plan_writes_the_template_without_the_hash_label() -> None:
    deploy = make_deployment(2, "web:v2")
    old = _rs(deploy, "web:v1", 0, 1, 1)
    new = _rs(deploy, "web:v2", 2, 2, 2)
    deploy.spec.rollback_to = 0
    plan = plan_deployment(deploy, [old, new], _pods(new, 2), now=rfc3339(7))
    assert plan.template_from_rollback is not None
    assert plan.clear_rollback
    assert (plan.create, plan.scale, plan.update_revision, plan.delete) == (None, (), (), ())
    assert dict(plan.template_from_rollback.metadata.labels) == {"app": "web"}
    assert plan.template_from_rollback.spec.containers[0].image == "web:v1"
    assert _cond(plan.status, "Rollback").reason == "DeploymentRollback"


def test_rollback_to_the_current_revision_changes_nothing_but_clears_the_request() -> None:
    deploy = make_deployment(2, "web:v2")
    old = _rs(deploy, "web:v1", 0, 1, 1)
    new = _rs(deploy, "web:v2", 2, 2, 2)
    deploy.spec.rollback_to = 2
    plan = plan_deployment(deploy, [old, new], _pods(new, 2))
    assert plan.template_from_rollback is None and plan.clear_rollback
    assert _cond(plan.status, "Rollback").reason == "RollbackTemplateUnchanged"


def test_undo_right_after_a_template_change_goes_back_to_the_running_revision() -> None:
    # v2 (revision 2) runs; the template was just changed to v3, no replica set for it yet.
    deploy = make_deployment(2, "web:v3")
    v1 = _rs(deploy, "web:v1", 0, 1, 1)
    v2 = _rs(deploy, "web:v2", 2, 2, 2)
    deploy.spec.rollback_to = 0
    plan = plan_deployment(deploy, [v1, v2], _pods(v2, 2))
    assert plan.template_from_rollback is not None
    assert plan.template_from_rollback.spec.containers[0].image == "web:v2"


def test_history_cleanup_waits_for_the_rollout_to_complete() -> None:
    deploy = make_deployment(2, "web:v3", max_surge="1", max_unavailable="0")
    deploy.spec.revision_history_limit = 0
    v1 = _rs(deploy, "web:v1", 0, 1, 1)
    v2 = _rs(deploy, "web:v2", 2, 2, 2)
    v3 = _rs(deploy, "web:v3", 1, 3, 3)
    mid = plan_deployment(deploy, [v1, v2, v3], _pods(v2, 2) + _pods(v3, ready=0, unready=1))
    assert mid.delete == ()
    v2.spec.replicas, v3.spec.replicas = 0, 2
    done = plan_deployment(deploy, [v1, v2, v3], _pods(v3, 2))
    assert done.delete == (v1.metadata.name, v2.metadata.name)
