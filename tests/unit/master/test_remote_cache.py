"""The controller-manager process's cache, over a fake Resources stub (no network): the
current objects, then changes; a write's effects are waited for only where they can be seen."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import Future

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2, resources_pb2
from raftorch.master import controller_manager
from raftorch.master.controller_manager import RemoteCache, _Deleted
from raftorch.objects import kind_of, wrap

END = object()


class FakeWatch:
    def __init__(self, events: list[resources_pb2.ObjectEvent]) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        for e in events:
            self.queue.put(e)

    def __iter__(self) -> Iterator[resources_pb2.ObjectEvent]:
        while (item := self.queue.get()) is not END:
            assert isinstance(item, resources_pb2.ObjectEvent)
            yield item

    def cancel(self) -> None:
        self.queue.put(END)


class FakeStub:
    def __init__(self, initial: dict[str, list[Message]], revision: int) -> None:
        self.watches: dict[str, FakeWatch] = {}
        self._initial = initial
        self._revision = revision

    def Watch(self, request: resources_pb2.WatchObjectsRequest) -> FakeWatch:
        events = [resources_pb2.ObjectEvent(type="ADDED", object=wrap(m), resource_version=self._revision)
                  for m in self._initial.get(request.kind, [])]
        events.append(resources_pb2.ObjectEvent(type="BOOKMARK", resource_version=self._revision))
        watch = self.watches[request.kind] = FakeWatch(events)
        return watch


def pod(name: str, rv: int, node: str = "") -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=name,
                                                           resource_version=rv),
                           spec=objects_pb2.PodSpec(node_name=node))


def done(result: Message, future: Future[Message] | None = None) -> Future[Message]:
    f: Future[Message] = future if future is not None else Future()
    f.set_result(result)
    return f


def test_lists_then_follows_changes() -> None:
    stub = FakeStub({"Pod": [pod("a", 5)]}, 5)
    cache = RemoteCache(stub)  # type: ignore[arg-type]
    try:
        assert cache.get("Pod", "default", "a") is not None and cache.revision == 5
        seen: list[tuple[str, bool]] = []
        cache.listen(lambda ch: seen.append((ch.name, ch.new is not None)))
        stub.watches["Pod"].queue.put(resources_pb2.ObjectEvent(type="ADDED", object=wrap(pod("b", 6, "n1")),
                                                                resource_version=6))
        stub.watches["Pod"].queue.put(resources_pb2.ObjectEvent(type="DELETED", object=wrap(pod("a", 5)),
                                                                resource_version=7))
        deadline = time.monotonic() + 10
        changed: list[tuple[str, str, str]] = []
        while len(changed) < 2 and time.monotonic() < deadline:
            cache.wait(0.1)
            changed += cache.drain()
        assert changed == [("Pod", "default", "b"), ("Pod", "default", "a")]
        assert seen == [("b", True), ("a", False)]
        assert cache.get("Pod", "default", "a") is None and cache.revision == 7
        assert [k for k in cache.index.pods_on("n1")] == ["/registry/pods/default/b"]
    finally:
        cache.close()


def test_settle_waits_for_the_writes_to_be_seen() -> None:
    stub = FakeStub({"Pod": [pod("a", 5)]}, 5)
    cache = RemoteCache(stub)  # type: ignore[arg-type]
    try:
        created = done(pod("b", 8))
        deleted = done(pod("a", 5), _Deleted("/registry/pods/default/a"))
        event = done(objects_pb2.Event(metadata=objects_pb2.ObjectMeta(name="e", namespace="default",
                                                                        resource_version=9)))
        stub.watches["Pod"].queue.put(resources_pb2.ObjectEvent(type="ADDED", object=wrap(pod("b", 8)),
                                                                resource_version=8))
        # The create is seen, the delete is not: settling gives up after its timeout.
        assert cache.settle([created], timeout=10)
        assert not cache.settle([created, deleted], timeout=0.2)
        stub.watches["Pod"].queue.put(resources_pb2.ObjectEvent(type="DELETED", object=wrap(pod("a", 5)),
                                                                resource_version=10))
        # Events are not watched: their revision is not waited for.
        assert cache.settle([created, deleted, event], timeout=10)
    finally:
        cache.close()
    assert kind_of("Event").name not in {k.name for k in controller_manager.WATCHED}
