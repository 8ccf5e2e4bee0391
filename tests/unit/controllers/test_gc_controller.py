"""plan_gc: objects whose controlling owner is gone."""

from __future__ import annotations

from raftorch.api.v1 import objects_pb2
from raftorch.master.controllers import plan_gc


def _meta(name: str, owner_uid: str = "", *, controller: bool = True, namespace: str = "default",
          deleting: bool = False) -> objects_pb2.ObjectMeta:
    meta = objects_pb2.ObjectMeta(name=name, namespace=namespace, uid=f"uid-{name}")
    if owner_uid:
        meta.owner_references.append(objects_pb2.OwnerReference(kind="ReplicaSet", name="owner", uid=owner_uid,
                                                                controller=controller))
    if deleting:
        meta.deletion_timestamp = "2024-01-01T00:00:00Z"
    return meta


def test_orphans_of_dead_owners_are_collected_in_order() -> None:
    objects = [
        ("Pod", _meta("b", "dead-rs")),
        ("Pod", _meta("kept", "live-rs")),
        ("ReplicaSet", _meta("rs", "dead-deploy", namespace="shop")),
        ("Pod", _meta("a", "dead-rs")),
        ("Pod", _meta("unowned")),
    ]
    assert plan_gc(objects, {"live-rs", "uid-kept"}) == (
        ("Pod", "default", "a"), ("Pod", "default", "b"), ("ReplicaSet", "shop", "rs"))


def test_only_the_controller_reference_counts() -> None:
    assert plan_gc([("Pod", _meta("p", "gone", controller=False))], set()) == ()


def test_objects_already_being_deleted_are_left_alone() -> None:
    assert plan_gc([("Pod", _meta("p", "gone", deleting=True))], set()) == ()


def test_a_cascade_takes_one_level_per_pass() -> None:
    # Deployment gone: its replica set goes first; once the replica set is gone, its pods follow.
    objects = [("ReplicaSet", _meta("rs", "deploy-uid")), ("Pod", _meta("p", "uid-rs"))]
    assert plan_gc(objects, {"uid-rs", "uid-p"}) == (("ReplicaSet", "default", "rs"),)
    assert plan_gc(objects[1:], {"uid-p"}) == (("Pod", "default", "p"),)
