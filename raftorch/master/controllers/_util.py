"""Small helpers shared by the controllers (to be merged with raftorch.objects later)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.raftorch.io/revision"

PENDING = "Pending"
RUNNING = "Running"
UNKNOWN = "Unknown"
SUCCEEDED = "Succeeded"
FAILED = "Failed"


def parse_time(value: str) -> float | None:
    """RFC 3339 to POSIX seconds; None for an empty or unreadable value."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def creation_key(meta: objects_pb2.ObjectMeta) -> tuple[float, str]:
    """Oldest first; objects without a readable timestamp sort as the oldest, ties by name."""
    when = parse_time(meta.creation_timestamp)
    return (when if when is not None else float("-inf"), meta.name)


def resolve_int_or_percent(value: str, total: int, round_up: bool, field: str) -> int:
    """"3" -> 3; "25%" of `total`, rounded up or down -> an int. Raises Invalid naming `field`."""
    text = value.strip()
    percent = text.endswith("%")
    digits = text[:-1] if percent else text
    if not digits.isdigit():
        raise Invalid(f"{field}: {value!r} is neither a non-negative integer nor a percentage like '25%'")
    number = int(digits)
    if not percent:
        return number
    scaled = total * number
    return -(-scaled // 100) if round_up else scaled // 100


def set_condition(conditions: Iterable[objects_pb2.Condition], type_: str, status: str, reason: str,
                  message: str, now: str) -> list[objects_pb2.Condition]:
    """Replace (in place, keeping the order) or append the condition of `type_`.

    The transition time only moves when the status changes, so setting the same condition
    again is a no-op and plans stay idempotent."""
    result: list[objects_pb2.Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        when = cond.last_transition_time if cond.status == status else now
        result.append(objects_pb2.Condition(type=type_, status=status, reason=reason, message=message,
                                            last_transition_time=when))
    if not found:
        result.append(objects_pb2.Condition(type=type_, status=status, reason=reason, message=message,
                                            last_transition_time=now))
    return result


def find_condition(conditions: Iterable[objects_pb2.Condition], type_: str) -> objects_pb2.Condition | None:
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None


def controller_ref(meta: objects_pb2.ObjectMeta) -> objects_pb2.OwnerReference | None:
    for ref in meta.owner_references:
        if ref.controller:
            return ref
    return None


def controller_owner(kind: str, owner: objects_pb2.ObjectMeta) -> objects_pb2.OwnerReference:
    return objects_pb2.OwnerReference(kind=kind, name=owner.name, uid=owner.uid, controller=True)


def is_controlled_by(meta: objects_pb2.ObjectMeta, kind: str, owner: objects_pb2.ObjectMeta) -> bool:
    ref = controller_ref(meta)
    if ref is None:
        return False
    if owner.uid:
        return ref.uid == owner.uid
    # Owners not stored yet (no uid) are matched by kind and name.
    return not ref.uid and ref.kind == kind and ref.name == owner.name


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_is_terminating(pod: objects_pb2.Pod) -> bool:
    return bool(pod.metadata.deletion_timestamp)


def pod_is_terminal(pod: objects_pb2.Pod) -> bool:
    return pod.status.phase in (SUCCEEDED, FAILED)


def pod_is_active(pod: objects_pb2.Pod) -> bool:
    """Counts toward a replica set's replicas: neither finished nor on its way out."""
    return not pod_is_terminating(pod) and not pod_is_terminal(pod)


def pod_is_ready(pod: objects_pb2.Pod) -> bool:
    cond = find_condition(pod.status.conditions, "Ready")
    return cond is not None and cond.status == "True"


def pod_is_available(pod: objects_pb2.Pod, min_ready_seconds: int = 0, now: float | None = None) -> bool:
    """Active, ready, and (with `min_ready_seconds` and a clock) ready for at least that long."""
    if not pod_is_active(pod) or not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0 or now is None:
        return True
    cond = find_condition(pod.status.conditions, "Ready")
    since = parse_time(cond.last_transition_time) if cond is not None else None
    return since is not None and since + min_ready_seconds <= now


def revision_of(meta: objects_pb2.ObjectMeta) -> int:
    value = meta.annotations.get(REVISION_ANNOTATION, "")
    return int(value) if value.isdigit() else 0
