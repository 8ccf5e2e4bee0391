"""The event writer over an in-memory store: a first occurrence is created without a read, a
repeat is folded into the stored event, and so is a "first" occurrence that exists already
(a recorder that restarted counts from one again)."""

from __future__ import annotations

from raftorch.api.v1 import objects_pb2
from raftorch.master.events import EventWriter
from raftorch.master.metrics import MasterMetrics
from raftorch.master.registry import Registry
from raftorch.objects import EVENT
from raftorch.objects.events import Ref, new_event
from raftorch.store.memory import MemoryReplica

REF = Ref("Pod", "default", "web-1", "uid-1")


def writer() -> tuple[Registry, EventWriter]:
    registry = Registry(MemoryReplica())  # type: ignore[arg-type]
    registry.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="default"))).result()
    return registry, EventWriter(registry, MasterMetrics(), rate=1000.0, burst=1000)


def stored_count(registry: Registry, event: objects_pb2.Event) -> int:
    got = registry.get(EVENT, "default", event.metadata.name)
    assert isinstance(got, objects_pb2.Event)
    return got.count


def test_first_occurrences_are_created_and_repeats_folded() -> None:
    registry, events = writer()
    first = new_event(REF, "Scheduled", "assigned to n1", "Normal", "default-scheduler", 1000.0)
    other = new_event(REF, "Pulled", "image present", "Normal", "agent/n1", 1000.0)
    events.record(first)
    events.record(other)
    events.flush()
    assert stored_count(registry, first) == 1 and stored_count(registry, other) == 1
    events.record(new_event(REF, "Scheduled", "assigned to n1", "Normal", "default-scheduler", 1001.0, count=2))
    events.flush()
    assert stored_count(registry, first) == 2


def test_a_first_occurrence_that_exists_already_is_folded_in() -> None:
    registry, events = writer()
    event = new_event(REF, "Scheduled", "assigned to n1", "Normal", "default-scheduler", 1000.0)
    events.record(event)
    events.flush()
    again = new_event(REF, "Scheduled", "assigned to n1", "Normal", "default-scheduler", 1005.0)
    events.record(again)  # count 1 again: its recorder started over
    events.flush()
    assert stored_count(registry, event) == 2
