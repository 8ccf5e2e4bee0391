"""Watch events decoded and encoded once for every watch (watch_share.py): each watcher still
gets its own view through its filter, and two stores never share what their revisions name."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from raftorch.api.v1 import kv_pb2, objects_pb2, resources_pb2
from raftorch.master.watch_share import SharedEvents, shared_events
from raftorch.objects import POD, store_key


def pod_kv(name: str, revision: int, node: str = "") -> kv_pb2.KeyValue:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                          spec=objects_pb2.PodSpec(node_name=node, containers=[
                              objects_pb2.Container(name="c", image="busybox")]))
    return kv_pb2.KeyValue(key=store_key(POD, "default", name), value=pod.SerializeToString(),
                           mod_revision=revision, create_revision=2)


def on(node: str) -> Callable[[Message], bool]:
    return lambda msg: isinstance(msg, objects_pb2.Pod) and msg.spec.node_name == node


def event(raw: bytes | None) -> resources_pb2.ObjectEvent | None:
    return None if raw is None else resources_pb2.ObjectEvent.FromString(raw)


def test_each_watcher_sees_the_change_through_its_filter() -> None:
    shared = SharedEvents()
    binding = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=pod_kv("a", 5, node="n1"), prev_kv=pod_kv("a", 3))
    everything = event(shared.event(POD, binding, lambda _: True))
    on_n1 = event(shared.event(POD, binding, on("n1")))
    on_n2 = event(shared.event(POD, binding, on("n2")))
    assert everything is not None and everything.type == "MODIFIED" and everything.resource_version == 5
    assert everything.object.pod.spec.node_name == "n1" and everything.object.pod.metadata.resource_version == 5
    assert on_n1 is not None and on_n1.type == "ADDED" and on_n1.object == everything.object
    assert on_n2 is None
    # A pod that leaves a watcher's filter is DELETED for it, with its last version it saw.
    moved = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=pod_kv("a", 7, node="n2"), prev_kv=pod_kv("a", 5, "n1"))
    left = event(shared.event(POD, moved, on("n1")))
    assert left is not None and left.type == "DELETED" and left.object.pod.spec.node_name == "n1"
    assert left.resource_version == 7
    gone = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.DELETE, kv=kv_pb2.KeyValue(key=store_key(POD, "default", "a"),
                                                                             mod_revision=9),
                           prev_kv=pod_kv("a", 7, "n2"))
    deleted = event(shared.event(POD, gone, lambda _: True))
    assert deleted is not None and deleted.type == "DELETED" and deleted.object.pod.spec.node_name == "n2"


def test_the_same_change_is_encoded_once() -> None:
    shared = SharedEvents()
    change = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=pod_kv("a", 4))
    assert shared.event(POD, change, lambda _: True) is shared.event(POD, change, lambda _: True)


def test_an_undecodable_version_is_skipped() -> None:
    shared = SharedEvents()
    bad = kv_pb2.KeyValue(key=store_key(POD, "default", "x"), value=b"\xff\xff", mod_revision=4)
    assert shared.event(POD, kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=bad), lambda _: True) is None


class _Store:
    """Stands for a replica: the cache is kept per replica object."""


def test_two_stores_never_share_a_revision() -> None:
    first, second = _Store(), _Store()
    assert shared_events(first) is shared_events(first)
    one = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=pod_kv("a", 4, node="n1"))
    other = kv_pb2.KeyEvent(type=kv_pb2.KeyEvent.PUT, kv=pod_kv("a", 4, node="n2"))
    seen_first = event(shared_events(first).event(POD, one, lambda _: True))
    seen_second = event(shared_events(second).event(POD, other, lambda _: True))
    assert seen_first is not None and seen_first.object.pod.spec.node_name == "n1"
    assert seen_second is not None and seen_second.object.pod.spec.node_name == "n2"
