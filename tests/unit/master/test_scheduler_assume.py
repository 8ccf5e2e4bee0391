"""The scheduler step does not wait for its bindings: it assumes its pods bound in the cache
until the store answers. Over an in-memory store: an assumed pod takes its node's room, is not
placed twice, and goes back to pending when its binding fails."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Unavailable
from raftorch.master.cache import ObjectCache
from raftorch.master.manager import ControllerManager, ReplicaLink
from raftorch.master.registry import Registry
from raftorch.objects import POD
from raftorch.store.memory import MemoryReplica


class HeldBindings:
    """The registry, with the scheduler's bindings held back until the test lets them go."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.held: list[tuple[list[Message], list[Future[Message]]]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.registry, name)

    def update_many(self, msgs: Sequence[Message], status_only: bool = False,
                    fence_term: int = 0) -> list[Future[Message]]:
        futures: list[Future[Message]] = [Future() for _ in msgs]
        self.held.append((list(msgs), futures))
        return futures

    def write_held(self) -> None:
        for msgs, futures in self.held:
            for written, future in zip(self.registry.update_many(msgs), futures, strict=True):
                future.set_result(written.result())
        self.held.clear()

    def fail_held(self) -> None:
        for _, futures in self.held:
            for future in futures:
                future.set_exception(Unavailable("no quorum"))
        self.held.clear()


def setup() -> tuple[Registry, HeldBindings, ControllerManager, ObjectCache]:
    replica = MemoryReplica()
    registry = Registry(replica)  # type: ignore[arg-type]
    registry.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="default"))).result()
    room = {"cpu": "4", "memory": "16Gi", "pods": "1"}  # one pod per node
    registry.create(objects_pb2.Node(
        metadata=objects_pb2.ObjectMeta(name="n1"),
        status=objects_pb2.NodeStatus(capacity=room, allocatable=room, conditions=[
            objects_pb2.Condition(type="Ready", status="True")]))).result()
    writer = HeldBindings(registry)
    manager = ControllerManager(writer, None, 0, link=ReplicaLink(replica),  # type: ignore[arg-type]
                                steps=frozenset({"scheduler"}))
    manager.events.enabled = False
    cache = ObjectCache(replica)  # type: ignore[arg-type]
    return registry, writer, manager, cache


def add_pod(registry: Registry, name: str) -> None:
    registry.create(objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                                    spec=objects_pb2.PodSpec(containers=[
                                        objects_pb2.Container(name="c", image="busybox")]))).result()


def schedule(manager: ControllerManager, writer: HeldBindings, cache: ObjectCache) -> list[str]:
    """One scheduler pass; the pods it sent bindings for."""
    cache.drain()
    manager.queues.schedule = True
    held = len(writer.held)
    manager._schedule(cache)
    return [m.metadata.name for msgs, _ in writer.held[held:] for m in msgs]  # type: ignore[attr-defined]


def node_of(registry: Registry, name: str) -> str:
    pod = registry.get(POD, "default", name)
    assert isinstance(pod, objects_pb2.Pod)
    return pod.spec.node_name


def test_an_assumed_pod_takes_its_nodes_room_until_confirmed() -> None:
    registry, writer, manager, cache = setup()
    add_pod(registry, "first")
    assert schedule(manager, writer, cache) == ["first"]
    add_pod(registry, "second")
    # "first" is not confirmed yet, but it fills n1: "second" must wait, and "first" is not placed again.
    assert schedule(manager, writer, cache) == []
    assert len(writer.held) == 1
    writer.write_held()
    cache.drain()
    manager._settle_bindings(cache)
    assert node_of(registry, "first") == "n1" and node_of(registry, "second") == ""
    assert not manager._assumed


def test_a_pod_whose_binding_failed_is_scheduled_again() -> None:
    registry, writer, manager, cache = setup()
    add_pod(registry, "only")
    assert schedule(manager, writer, cache) == ["only"]
    writer.fail_held()
    assert node_of(registry, "only") == ""
    # The failure puts it back as it was: pending, and n1 free again.
    assert schedule(manager, writer, cache) == ["only"]
    writer.write_held()
    assert node_of(registry, "only") == "n1"


class LaggingLink(ReplicaLink):
    """A link whose cache shows a step's writes only at the third look."""

    def __init__(self, replica: MemoryReplica) -> None:
        super().__init__(replica)  # type: ignore[arg-type]
        self.looks = 0

    def leading(self, term: int) -> bool:
        return True

    def settle(self, cache: ObjectCache, futures: list[Future[Message]], timeout: float) -> bool:
        self.looks += 1
        return self.looks >= 3


def test_the_scheduler_binds_while_a_step_waits_for_the_cache() -> None:
    """A step's writes take a while to show in the cache (the watch lags under load): pods that
    arrived meanwhile are bound during that wait, not after it."""
    registry, writer, manager, cache = setup()
    link = LaggingLink(registry.replica)  # type: ignore[arg-type]
    manager.link = link
    add_pod(registry, "waiting")
    cache.drain()
    manager.queues.schedule = True
    written: Future[Message] = Future()
    written.set_result(objects_pb2.Pod())
    manager._wait([written], cache)
    assert link.looks == 3
    assert [m.metadata.name for msgs, _ in writer.held for m in msgs] == ["waiting"]  # type: ignore[attr-defined]
