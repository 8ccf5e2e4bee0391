"""Batched writes on the hot paths: several updates in one transaction end each as their own
update would, a pod changed meanwhile included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Conflict, NotFound
from raftorch.objects import kind_of
from tests.integration._inprocess import InProcessMaster


@pytest.fixture
def master(tmp_path: Path) -> Iterator[InProcessMaster]:
    m = InProcessMaster(tmp_path / "m1")
    try:
        m.wait_ready()
        yield m
    finally:
        m.close()


def pod(name: str) -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                           spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="busybox")]))


def test_update_many_commits_every_status_in_one_transaction(master: InProcessMaster) -> None:
    registry = master.master.registry
    pods = [registry.create(pod(f"p{i}")).result(10) for i in range(5)]
    revision = max(p.metadata.resource_version for p in pods)  # type: ignore[attr-defined]
    for p in pods:
        p.status.phase = "Running"  # type: ignore[attr-defined]
    results = [f.result(10) for f in registry.update_many(pods, status_only=True)]
    assert [r.status.phase for r in results] == ["Running"] * 5  # type: ignore[attr-defined]
    # One transaction: every pod carries the same new revision.
    revisions = {r.metadata.resource_version for r in results}  # type: ignore[attr-defined]
    assert len(revisions) == 1 and revisions.pop() > revision


def test_a_pod_changed_meanwhile_fails_alone_and_the_others_are_written(master: InProcessMaster) -> None:
    registry = master.master.registry
    pods = [registry.create(pod(f"q{i}")).result(10) for i in range(3)]
    stale = objects_pb2.Pod()
    stale.CopyFrom(pods[1])
    changed = objects_pb2.Pod()
    changed.CopyFrom(pods[1])
    changed.status.phase = "Failed"
    registry.update(changed, status_only=True).result(10)
    deleted = pods[2]
    registry.delete(kind_of("Pod"), "default", deleted.metadata.name).result(10)  # type: ignore[attr-defined]
    for p in (pods[0], stale, deleted):
        p.status.phase = "Running"  # type: ignore[attr-defined]
    first, second, third = registry.update_many([pods[0], stale, deleted], status_only=True)
    assert first.result(10).status.phase == "Running"  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        second.result(10)
    with pytest.raises(NotFound):
        third.result(10)
    assert registry.get(kind_of("Pod"), "default", "q1").status.phase == "Failed"  # type: ignore[attr-defined]

