"""Events in Kubernetes' shape: building them, and folding repeats into one event with a count.

Pure: times are passed in. An event's name is a function of what it says (object, reason,
message, source), so a repeat, even from another process or after a leader change, lands on
the same stored event and raises its count instead of adding one more.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from raftorch.api.v1 import objects_pb2

NORMAL = "Normal"
WARNING = "Warning"
# Events kept in the correlator's memory, most recent first out last.
MAX_REMEMBERED = 4096
MAX_MESSAGE = 1024
# Longest object name in an event's name (names end with "." and 16 hex digits).
_MAX_PREFIX = 253 - 17


@dataclass(frozen=True, slots=True)
class Ref:
    """The object an event is about."""

    kind: str
    namespace: str
    name: str
    uid: str = ""

    @staticmethod
    def of(msg: objects_pb2.Pod | objects_pb2.Node | objects_pb2.ReplicaSet | objects_pb2.Deployment
           | objects_pb2.Job | objects_pb2.CronJob | objects_pb2.DaemonSet) -> Ref:
        kind = type(msg).DESCRIPTOR.name
        return Ref(kind, msg.metadata.namespace, msg.metadata.name, msg.metadata.uid)


def event_time_text(seconds: float) -> str:
    """RFC 3339 with microseconds, like Kubernetes' eventTime: events of one second keep their order."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_name(ref: Ref, reason: str, message: str, source: str) -> str:
    digest = hashlib.sha256("\x00".join((ref.kind, ref.namespace, ref.name, ref.uid, reason, message, source))
                            .encode()).hexdigest()[:16]
    return f"{ref.name[:_MAX_PREFIX].rstrip('.-')}.{digest}"


def new_event(ref: Ref, reason: str, message: str, type_: str, source: str, now: float,
              count: int = 1, first: float | None = None) -> objects_pb2.Event:
    message = message[:MAX_MESSAGE]
    return objects_pb2.Event(
        metadata=objects_pb2.ObjectMeta(name=event_name(ref, reason, message, source),
                                        namespace=ref.namespace or "default"),
        involved_object=objects_pb2.ObjectReference(kind=ref.kind, namespace=ref.namespace, name=ref.name,
                                                    uid=ref.uid),
        reason=reason, message=message, type=type_, count=count,
        first_timestamp=event_time_text(now if first is None else first), last_timestamp=event_time_text(now),
        source=source)


class EventCorrelator:
    """Counts repeats of one event (same object, reason, message, source), as Kubernetes'
    event correlator does on the recording side. Not thread-safe: one owner calls it."""

    def __init__(self, source: str, remembered: int = MAX_REMEMBERED) -> None:
        self.source = source
        self.remembered = remembered
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def observe(self, ref: Ref, reason: str, message: str, type_: str, now: float) -> objects_pb2.Event:
        """The event to store for this occurrence: a new one, or the earlier one with count + 1."""
        name = event_name(ref, reason, message[:MAX_MESSAGE], self.source)
        count, first = self._seen.pop(name, (0, now))
        count += 1
        self._seen[name] = (count, first)
        while len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        return new_event(ref, reason, message, type_, self.source, now, count=count, first=first)


def merge_repeat(stored: objects_pb2.Event, incoming: objects_pb2.Event) -> objects_pb2.Event:
    """The stored event updated by a repeat of it: counts never go down (a recorder that
    restarted counts from one again), the first time stays, the last time moves on."""
    merged = objects_pb2.Event()
    merged.CopyFrom(stored)
    merged.count = max(stored.count + 1, incoming.count) if incoming.count <= stored.count else incoming.count
    merged.last_timestamp = max(stored.last_timestamp, incoming.last_timestamp)
    merged.first_timestamp = min(filter(None, (stored.first_timestamp, incoming.first_timestamp)),
                                 default="")
    merged.type = incoming.type or stored.type
    return merged
