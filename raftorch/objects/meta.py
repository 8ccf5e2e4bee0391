"""Helpers over the parts every object shares: metadata, owners, times, conditions."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid, PermissionDenied
from raftorch.objects._checks import quote
from raftorch.objects.kinds import kind_of_message, unwrap

__all__ = [
    "CREATE_CONTAINER_CONFIG_ERROR",
    "MIRROR_ANNOTATION",
    "check_host_port_forward",
    "controller_of",
    "format_time",
    "get_condition",
    "int_or_percent",
    "is_mirror",
    "meta",
    "owned_by",
    "parse_int_or_percent",
    "parse_time",
    "pod_is_ready",
    "pod_is_terminal",
    "set_condition",
]

CONDITION_STATUSES = ("True", "False", "Unknown")
TERMINAL_PHASES = ("Succeeded", "Failed")

_INT_OR_PERCENT = re.compile(r"(?P<number>\d+)(?P<percent>%?)")
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?P<fraction>\.\d+)?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<off_hour>\d{2}):(?P<off_minute>\d{2}))"
)


def meta(msg: Message) -> objects_pb2.ObjectMeta:
    """The metadata of an object of any kind, or of the object inside an `Object`; not a copy."""
    if isinstance(msg, objects_pb2.Object):
        _, msg = unwrap(msg)
    kind_of_message(msg)
    metadata = getattr(msg, "metadata")  # noqa: B009 - every kind has one; the stubs cannot say so
    if not isinstance(metadata, objects_pb2.ObjectMeta):  # pragma: no cover - objects.proto guarantees it
        raise Invalid(f"{msg.DESCRIPTOR.name} has no metadata")
    return metadata


def parse_int_or_percent(value: str) -> tuple[int, bool]:
    """("25%" -> (25, True), "3" -> (3, False)): a non-negative integer or whole percentage."""
    match = _INT_OR_PERCENT.fullmatch(value) if value.isascii() else None
    if match is None:
        raise Invalid(f'invalid int or percent {quote(value)}: expected a non-negative whole number like "1" '
                      'or a percentage like "25%"')
    return int(match.group("number")), bool(match.group("percent"))


def int_or_percent(value: str, total: int, round_up: bool) -> int:
    """A count from "3" (3) or "25%" (a quarter of `total`, rounded up or down)."""
    number, percent = parse_int_or_percent(value)
    if not percent:
        return number
    scaled = total * number
    return -(-scaled // 100) if round_up else scaled // 100


def controller_of(metadata: objects_pb2.ObjectMeta) -> objects_pb2.OwnerReference | None:
    for ref in metadata.owner_references:
        if ref.controller:
            return ref
    return None


def owned_by(metadata: objects_pb2.ObjectMeta, uid: str) -> bool:
    """Whether any owner reference, controller or not, names `uid`."""
    return bool(uid) and any(ref.uid == uid for ref in metadata.owner_references)


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC to the whole second, like Kubernetes: "2024-05-01T12:00:00Z".

    Fractions are dropped (floor), so a formatted time is never later than the instant it names.
    """
    if not math.isfinite(seconds):
        raise Invalid(f"time: not a finite number of seconds: {seconds}")
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=math.floor(seconds))
    except OverflowError as exc:
        raise Invalid(f"time: {seconds} seconds since the epoch is out of range") from exc
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time: "2024-05-01T12:00:00Z", "...12:00:00.5+02:00"."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise Invalid(f'invalid time {quote(text)}: expected RFC 3339 like "2024-05-01T12:00:00Z"')
    field = match.group
    offset = timedelta(0)
    if field("sign"):
        if int(field("off_hour")) > 23 or int(field("off_minute")) > 59:
            raise Invalid(f'invalid time {quote(text)}: no such offset from UTC')
        offset = timedelta(hours=int(field("off_hour")), minutes=int(field("off_minute")))
        if field("sign") == "-":
            offset = -offset
    try:
        moment = datetime(int(field("year")), int(field("month")), int(field("day")), int(field("hour")),
                          int(field("minute")), int(field("second")), tzinfo=timezone(offset))
    except ValueError as exc:
        raise Invalid(f'invalid time {quote(text)}: no such date or time of day') from exc
    whole = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    return whole + (float(field("fraction")) if field("fraction") else 0.0)


def get_condition(conditions: Iterable[objects_pb2.Condition], type: str) -> objects_pb2.Condition | None:
    for condition in conditions:
        if condition.type == type:
            return condition
    return None


def set_condition(conditions: RepeatedCompositeFieldContainer[objects_pb2.Condition], type: str, status: str,
                  reason: str, message: str, now_text: str) -> bool:
    """Record a condition in place; whether anything changed.

    The transition time moves only when the status does, so it says since when the status holds.
    """
    if not type:
        raise Invalid("condition type: required")
    if status not in CONDITION_STATUSES:
        raise Invalid(f'condition status: must be one of {", ".join(CONDITION_STATUSES)}, got "{status}"')
    condition = get_condition(conditions, type)
    if condition is None:
        conditions.add(type=type, status=status, reason=reason, message=message, last_transition_time=now_text)
        return True
    if condition.status != status:
        condition.status = status
        condition.last_transition_time = now_text
    elif condition.reason == reason and condition.message == message:
        return False
    condition.reason = reason
    condition.message = message
    return True


def pod_is_ready(pod: objects_pb2.Pod) -> bool:
    condition = get_condition(pod.status.conditions, "Ready")
    return condition is not None and condition.status == "True"


# A mirror pod stands for a node's or master's own process (agent, master, controller manager):
# shown by `get pods -A`, never scheduled, forwarded to or counted against a node.
MIRROR_ANNOTATION = "raftorch.io/mirror"
# What a pod's container shows while it waits for its configuration (a ConfigMap, Secret or key).
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"


def is_mirror(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.annotations.get(MIRROR_ANNOTATION) == "true"


def pod_is_terminal(pod: objects_pb2.Pod) -> bool:
    """Whether the pod has finished for good: it will not run again."""
    return pod.status.phase in TERMINAL_PHASES


def check_host_port_forward(pod: objects_pb2.Pod, port: int) -> None:
    """A pod that shares its node's address (host network, process runtime) is reached by a
    port-forward only on the ports its containers declare, never on every port of the host.
    The master checks this against the pod's status, the agent against what its runtime runs."""
    declared = {p.container_port for c in pod.spec.containers for p in c.ports}
    if port not in declared:
        listed = ", ".join(str(p) for p in sorted(declared)) or "none"
        raise PermissionDenied(f"pod {pod.metadata.namespace}/{pod.metadata.name} shares the node's address: "
                               f"port-forward reaches only the ports its containers declare ({listed}), not "
                               f"port {port}")
