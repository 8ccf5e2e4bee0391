"""A controller whose writes outlast its waits does not plan again until they are done and seen:
over an in-memory store, a replica set whose pod creates are held back past every wait gets its
pods once, not once per pass."""

from __future__ import annotations

from concurrent.futures import Future

from google.protobuf.message import Message
from test_template_pods import replica_set  # the same directory's helper

from raftorch.api.v1 import objects_pb2
from raftorch.master.cache import ObjectCache
from raftorch.master.manager import OUTSTANDING_FOR, ControllerManager, ReplicaLink
from raftorch.master.registry import Registry
from raftorch.objects import kind_of
from raftorch.store.memory import MemoryReplica


class HeldCreates:
    """The registry, with pod creates held back until the test lets them go."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.held: list[tuple[Message, Future[Message]]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.registry, name)

    def create(self, msg: Message, fence_term: int = 0) -> Future[Message]:
        if not isinstance(msg, objects_pb2.Pod):
            return self.registry.create(msg, fence_term=fence_term)
        future: Future[Message] = Future()
        self.held.append((msg, future))
        return future

    def write_held(self) -> None:
        for msg, future in self.held:
            future.set_result(self.registry.create(msg).result())
        self.held.clear()


class Clock:
    """A monotonic clock that jumps a second each time it is read: every wait gives up at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def setup() -> tuple[Registry, HeldCreates, ControllerManager, ObjectCache, Clock]:
    replica = MemoryReplica()
    registry = Registry(replica)  # type: ignore[arg-type]
    registry.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="default"))).result()
    replica_set(registry)  # web-1, 3 replicas
    writer = HeldCreates(registry)
    clock = Clock()
    manager = ControllerManager(writer, None, 0, link=ReplicaLink(replica), mono=clock,  # type: ignore[arg-type]
                                steps=frozenset({"replicasets"}))
    manager.events.enabled = False
    cache = ObjectCache(replica)  # type: ignore[arg-type]
    return registry, writer, manager, cache, clock


def replicaset_pass(manager: ControllerManager, cache: ObjectCache) -> bool:
    cache.drain()
    manager.queues.replicasets.add(("default", "web-1"))  # as a resync or any change would
    return manager._pass("replicasets", manager._replicasets, cache)


def pods(registry: Registry) -> list[Message]:
    return registry.list_kind(kind_of("Pod"))[0]


def test_a_replica_set_whose_creates_outlast_the_waits_is_not_planned_again_until_they_are_seen() -> None:
    registry, writer, manager, cache, _ = setup()
    assert replicaset_pass(manager, cache)
    assert len(writer.held) == 3  # the waits gave up with all three still unwritten

    # Later passes leave the replica set alone: its cache has none of the three yet.
    assert not replicaset_pass(manager, cache)
    assert not replicaset_pass(manager, cache)
    assert len(writer.held) == 3

    writer.write_held()
    assert replicaset_pass(manager, cache)  # done and seen: planned again, and nothing is missing
    assert writer.held == []
    assert len(pods(registry)) == 3


def test_writes_that_never_finish_hold_the_step_only_for_a_while() -> None:
    _, writer, manager, cache, clock = setup()
    assert replicaset_pass(manager, cache)
    assert not replicaset_pass(manager, cache)
    clock.now += OUTSTANDING_FOR
    assert replicaset_pass(manager, cache)  # given up on: the step runs again
    assert len(writer.held) == 6
