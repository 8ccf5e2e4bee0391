from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.kinds import KINDS, Kind, wrap
from raftorch.objects.meta import (
    controller_of,
    format_time,
    get_condition,
    int_or_percent,
    meta,
    owned_by,
    parse_int_or_percent,
    parse_time,
    pod_is_ready,
    pod_is_terminal,
    set_condition,
)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_meta_is_the_objects_own_metadata(kind: Kind) -> None:
    msg = kind.message()
    meta(msg).name = "x"
    assert meta(msg).name == "x"
    obj = wrap(msg)
    meta(obj).name = "y"
    assert meta(obj).name == "y"


def test_meta_of_a_message_that_is_not_a_kind_is_invalid() -> None:
    with pytest.raises(Invalid, match=r"^PodSpec is not a kind of object"):
        meta(objects_pb2.PodSpec())


@pytest.mark.parametrize(("value", "total", "round_up", "expected"), [
    ("0", 10, True, 0), ("3", 10, False, 3), ("3", 0, True, 3),
    ("25%", 10, True, 3), ("25%", 10, False, 2), ("25%", 4, True, 1), ("25%", 4, False, 1),
    ("0%", 10, True, 0), ("100%", 7, False, 7), ("150%", 4, True, 6), ("1%", 1, True, 1), ("1%", 1, False, 0),
])
def test_int_or_percent(value: str, total: int, round_up: bool, expected: int) -> None:
    assert int_or_percent(value, total, round_up) == expected


@pytest.mark.parametrize("value", ["", "-1", "1.5", "25 %", "%", "25%%", "x", "1e3", "٣"])
def test_int_or_percent_rejects(value: str) -> None:
    with pytest.raises(Invalid) as exc:
        int_or_percent(value, 10, True)
    assert str(exc.value) == (f'invalid int or percent "{value}": expected a non-negative whole number like "1" '
                              'or a percentage like "25%"')


@pytest.mark.parametrize(("value", "parsed"), [("5", (5, False)), ("5%", (5, True)), ("007", (7, False))])
def test_parse_int_or_percent(value: str, parsed: tuple[int, bool]) -> None:
    assert parse_int_or_percent(value) == parsed


def _owned(*refs: objects_pb2.OwnerReference) -> objects_pb2.ObjectMeta:
    return objects_pb2.ObjectMeta(name="x", owner_references=list(refs))


RS = objects_pb2.OwnerReference(kind="ReplicaSet", name="web-1", uid="u-1", controller=True)
OTHER = objects_pb2.OwnerReference(kind="Deployment", name="web", uid="u-2")


@pytest.mark.parametrize(("metadata", "controller"), [
    (_owned(), None), (_owned(OTHER), None), (_owned(OTHER, RS), RS), (_owned(RS, OTHER), RS),
])
def test_controller_of(metadata: objects_pb2.ObjectMeta, controller: objects_pb2.OwnerReference | None) -> None:
    assert controller_of(metadata) == controller


@pytest.mark.parametrize(("metadata", "uid", "owned"), [
    (_owned(RS), "u-1", True), (_owned(OTHER, RS), "u-2", True), (_owned(RS), "u-3", False),
    (_owned(), "u-1", False), (_owned(objects_pb2.OwnerReference(kind="X", name="y")), "", False),
])
def test_owned_by_any_owner(metadata: objects_pb2.ObjectMeta, uid: str, owned: bool) -> None:
    assert owned_by(metadata, uid) is owned


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "1970-01-01T00:00:00Z"), (1714564800, "2024-05-01T12:00:00Z"), (1714564800.999, "2024-05-01T12:00:00Z"),
    (-1, "1969-12-31T23:59:59Z"), (-0.5, "1969-12-31T23:59:59Z"), (253402300799, "9999-12-31T23:59:59Z"),
    (-62135596800, "0001-01-01T00:00:00Z"),
])
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text
    assert parse_time(text) == float(int(seconds // 1))


@pytest.mark.parametrize(("seconds", "message"), [
    (float("nan"), "time: not a finite number of seconds: nan"),
    (float("inf"), "time: not a finite number of seconds: inf"),
    (1e12, "time: 1000000000000.0 seconds since the epoch is out of range"),
])
def test_format_time_rejects(seconds: float, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        format_time(seconds)
    assert str(exc.value) == message


@pytest.mark.parametrize(("text", "seconds"), [
    ("2024-05-01T12:00:00Z", 1714564800.0),
    ("2024-05-01t12:00:00z", 1714564800.0),
    ("2024-05-01T12:00:00.25Z", 1714564800.25),
    ("2024-05-01T12:00:00.123456789Z", 1714564800.123456789),
    ("2024-05-01T14:00:00+02:00", 1714564800.0),
    ("2024-05-01T07:30:00-04:30", 1714564800.0),
])
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(("text", "reason"), [
    ("", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("2024-05-01", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("2024-05-01T12:00:00", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("2024-05-01 12:00:00Z", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("2024-05-01T12:00Z", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("yesterday", 'expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("2024-13-01T12:00:00Z", "no such date or time of day"),
    ("2024-02-30T12:00:00Z", "no such date or time of day"),
    ("2023-02-29T12:00:00Z", "no such date or time of day"),
    ("2024-05-01T24:00:00Z", "no such date or time of day"),
    ("2024-05-01T12:60:00Z", "no such date or time of day"),
    ("2024-05-01T23:59:60Z", "no such date or time of day"),
    ("0000-01-01T00:00:00Z", "no such date or time of day"),
    ("2024-05-01T12:00:00+24:00", "no such offset from UTC"),
    ("2024-05-01T12:00:00+01:60", "no such offset from UTC"),
])
def test_parse_time_rejects(text: str, reason: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_time(text)
    assert str(exc.value) == f'invalid time "{text}": {reason}'


T1, T2 = "2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z"


def _conditions() -> objects_pb2.PodStatus:
    status = objects_pb2.PodStatus()
    assert set_condition(status.conditions, "Ready", "False", "Starting", "waiting for probes", T1)
    return status


def test_set_condition_adds_a_new_condition() -> None:
    status = _conditions()
    assert list(status.conditions) == [objects_pb2.Condition(type="Ready", status="False", reason="Starting",
                                                             message="waiting for probes", last_transition_time=T1)]


@pytest.mark.parametrize(("status", "reason", "message", "changed", "transition"), [
    ("False", "Starting", "waiting for probes", False, T1),
    ("False", "Starting", "still waiting", True, T1),
    ("False", "Crashing", "waiting for probes", True, T1),
    ("True", "", "", True, T2),
    ("Unknown", "Starting", "waiting for probes", True, T2),
])
def test_set_condition_moves_the_transition_time_only_with_the_status(status: str, reason: str, message: str,
                                                                      changed: bool, transition: str) -> None:
    pod_status = _conditions()
    assert set_condition(pod_status.conditions, "Ready", status, reason, message, T2) is changed
    assert len(pod_status.conditions) == 1
    condition = pod_status.conditions[0]
    assert (condition.status, condition.reason, condition.message) == (status, reason, message)
    assert condition.last_transition_time == transition


def test_set_condition_keeps_other_types_apart() -> None:
    status = _conditions()
    assert set_condition(status.conditions, "Scheduled", "True", "", "", T2)
    assert [c.type for c in status.conditions] == ["Ready", "Scheduled"]
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None and ready.status == "False"
    assert get_condition(status.conditions, "Initialized") is None


@pytest.mark.parametrize(("type_", "status", "message"), [
    ("", "True", "condition type: required"),
    ("Ready", "true", 'condition status: must be one of True, False, Unknown, got "true"'),
    ("Ready", "", 'condition status: must be one of True, False, Unknown, got ""'),
])
def test_set_condition_rejects(type_: str, status: str, message: str) -> None:
    conditions = objects_pb2.PodStatus().conditions
    with pytest.raises(Invalid) as exc:
        set_condition(conditions, type_, status, "", "", T1)
    assert str(exc.value) == message
    assert len(conditions) == 0


def _pod_with(phase: str = "", ready: str | None = None) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(status=objects_pb2.PodStatus(phase=phase))
    if ready is not None:
        set_condition(pod.status.conditions, "Ready", ready, "", "", T1)
    return pod


@pytest.mark.parametrize(("pod", "ready"), [
    (_pod_with("Running", "True"), True), (_pod_with("Running", "False"), False),
    (_pod_with("Running", "Unknown"), False), (_pod_with("Running"), False), (_pod_with(), False),
])
def test_pod_is_ready(pod: objects_pb2.Pod, ready: bool) -> None:
    assert pod_is_ready(pod) is ready


@pytest.mark.parametrize(("phase", "terminal"), [
    ("", False), ("Pending", False), ("Running", False), ("Unknown", False), ("Succeeded", True), ("Failed", True),
])
def test_pod_is_terminal(phase: str, terminal: bool) -> None:
    assert pod_is_terminal(_pod_with(phase)) is terminal
