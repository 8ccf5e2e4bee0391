"""Event correlation: repeats fold into one event with a count; expiry by last-seen time."""

from __future__ import annotations

from raftorch.api.v1 import objects_pb2
from raftorch.master.events import expired
from raftorch.objects.events import EventCorrelator, Ref, event_name, merge_repeat, new_event

POD = Ref("Pod", "default", "web-1", "uid-1")


def test_repeats_share_a_name_and_count_up_with_first_time_kept() -> None:
    correlator = EventCorrelator("agent/n1")
    first = correlator.observe(POD, "BackOff", "Back-off restarting failed container main", "Warning", 100.0)
    second = correlator.observe(POD, "BackOff", "Back-off restarting failed container main", "Warning", 130.0)
    assert first.metadata.name == second.metadata.name
    assert (first.count, second.count) == (1, 2)
    assert second.first_timestamp == first.first_timestamp < second.last_timestamp
    other = correlator.observe(POD, "Started", "Started container main", "Normal", 131.0)
    assert other.metadata.name != first.metadata.name and other.count == 1


def test_the_name_depends_on_object_reason_message_and_source() -> None:
    base = event_name(POD, "Killing", "Stopping container main", "agent/n1")
    assert base.startswith("web-1.")
    assert base != event_name(Ref("Pod", "default", "web-2", "uid-2"), "Killing", "Stopping container main", "agent/n1")
    assert base != event_name(POD, "Killing", "Stopping container side", "agent/n1")
    assert base != event_name(POD, "Killing", "Stopping container main", "agent/n2")
    assert len(event_name(Ref("Pod", "default", "a" * 253), "X", "m", "s")) <= 253


def test_a_restarted_recorder_never_lowers_the_stored_count() -> None:
    stored = new_event(POD, "BackOff", "m", "Warning", "agent/n1", 100.0, count=5)
    again = new_event(POD, "BackOff", "m", "Warning", "agent/n1", 200.0, count=1)
    merged = merge_repeat(stored, again)
    assert merged.count == 6
    assert merged.first_timestamp == stored.first_timestamp and merged.last_timestamp == again.last_timestamp
    ahead = new_event(POD, "BackOff", "m", "Warning", "agent/n1", 300.0, count=9)
    assert merge_repeat(stored, ahead).count == 9


def test_events_expire_by_last_seen_time() -> None:
    old = new_event(POD, "Started", "old", "Normal", "s", 1000.0)
    fresh = new_event(POD, "Started", "fresh", "Normal", "s", 1000.0)
    fresh.last_timestamp = new_event(POD, "Started", "x", "Normal", "s", 4000.0).last_timestamp
    unreadable = objects_pb2.Event(last_timestamp="yesterday")
    assert expired([old, fresh, unreadable], now=4700.0, ttl=3600.0) == [old, unreadable]
