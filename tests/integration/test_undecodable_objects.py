"""Readers survive a stored object they cannot decode (issue: a garbage value at
/registry/pods/default/zz made List fail with INTERNAL, broke watches and killed the
controllers, also those of every later leader)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import Conflict, NotFound
from raftorch.master.manager import ControllerManager
from tests.integration._inprocess import InProcessMaster, eventually

BAD_KEY = "/registry/pods/default/zz"


@pytest.fixture
def master(tmp_path: Path) -> Iterator[InProcessMaster]:
    m = InProcessMaster(tmp_path / "m1")
    try:
        m.wait_ready()
        yield m
    finally:
        m.close()


def pod(name: str, labels: dict[str, str] | None = None) -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default", labels=labels or {}),
                           spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="busybox")]))


def replicaset(name: str, replicas: int) -> objects_pb2.ReplicaSet:
    labels = {"app": name}
    return objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.ReplicaSetSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="busybox")]))))


def pod_names(c: Client, selector: str = "") -> set[str]:
    items, _ = c.objects.list("pods", "default", label_selector=selector)
    return {p.metadata.name for p in items}  # type: ignore[attr-defined]


def undecodable_events(c: Client) -> list[objects_pb2.Event]:
    items, _ = c.objects.list("events", "default")
    return [e for e in items if isinstance(e, objects_pb2.Event) and e.reason == "Undecodable"]


def converges(c: Client, manager: ControllerManager, name: str, replicas: int) -> None:
    c.objects.create(replicaset(name, replicas))
    eventually(lambda: len(pod_names(c, f"app={name}")) == replicas, what=f"{replicas} pods of {name}")
    assert manager.running


def test_lists_watches_and_controllers_skip_an_undecodable_object(master: InProcessMaster) -> None:
    with master.client() as c:
        c.objects.create(pod("good"))
        watch = c.objects.watch("pods", "default")
        master.raw_put(BAD_KEY, b"garbage")

        # List answers with what it can decode.
        assert pod_names(c) == {"good"}
        # Get names the key and says what to do; it is not an internal error.
        with pytest.raises(Conflict, match=BAD_KEY):
            c.objects.get("pods", "zz", "default")
        # A watch opened before goes on past the bad version, and one opened after lists the rest.
        c.objects.create(pod("after"))
        seen = []
        for event in watch:
            seen.append((event.type, event.object.metadata.name))  # type: ignore[attr-defined]
            if ("ADDED", "after") in seen:
                break
        watch.close()
        assert ("ADDED", "zz") not in seen
        fresh = c.objects.watch("pods", "default")
        listed = set()
        for event in fresh:
            listed.add(event.object.metadata.name)  # type: ignore[attr-defined]
            if fresh.synced.is_set() or len(listed) == 2:
                break
        fresh.close()
        assert listed == {"good", "after"}

        # The controllers are alive and still work.
        manager = master.manager()
        converges(c, manager, "web", 2)
        # The bad object is reported once, as a Warning event in its namespace.
        eventually(lambda: len(undecodable_events(c)) == 1, what="an Undecodable event")
        event = undecodable_events(c)[0]
        assert event.type == "Warning"
        assert (event.involved_object.kind, event.involved_object.name) == ("Pod", "zz")
        assert BAD_KEY in event.message

        # A new leader's controllers start and work while the key exists.
        manager = master.restart_controllers()
        converges(c, manager, "api", 1)
        assert len(undecodable_events(c)) == 1

        # Deleting it through the Resources API is the way out.
        c.objects.delete("pods", "zz", "default")
        with pytest.raises(NotFound):
            c.objects.get("pods", "zz", "default")
        assert pod_names(c, "app notin (web,api)") == {"good", "after"}


def test_an_object_stored_under_another_name_is_skipped(master: InProcessMaster) -> None:
    with master.client() as c:
        other = pod("elsewhere")
        master.raw_put("/registry/pods/default/here", other.SerializeToString())
        c.objects.create(pod("good"))
        assert pod_names(c) == {"good"}
        eventually(lambda: len(undecodable_events(c)) == 1, what="an Undecodable event")
        assert master.manager().running


def test_an_undecodable_object_in_a_missing_namespace_is_reported_in_default(master: InProcessMaster) -> None:
    with master.client() as c:
        master.raw_put("/registry/deployments/ghost/web", b"\xff\xff\xff")
        eventually(lambda: len(undecodable_events(c)) == 1, what="an Undecodable event")
        event = undecodable_events(c)[0]
        assert (event.involved_object.kind, event.involved_object.namespace) == ("Deployment", "ghost")
        items, _ = c.objects.list("deployments")
        assert items == []
