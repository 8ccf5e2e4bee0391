"""check_unknown_fields: fields a newer sender wrote, found wherever they hide."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.kinds import wrap
from raftorch.objects.validation import check_unknown_fields


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _with_unknown(msg: Message, number: int) -> bytes:
    """`msg` serialized with an extra varint field `number` that the schema does not have."""
    return msg.SerializeToString() + _varint(number << 3) + _varint(1)


def test_known_fields_only_pass(pod: objects_pb2.Pod, deployment: objects_pb2.Deployment) -> None:
    check_unknown_fields(pod)
    check_unknown_fields(wrap(deployment))
    check_unknown_fields(objects_pb2.Object())


def test_unknown_fields_at_the_top(pod: objects_pb2.Pod) -> None:
    with pytest.raises(Invalid, match=r"^Pod: unknown field number 99$"):
        check_unknown_fields(objects_pb2.Pod.FromString(_with_unknown(pod, 99)))


def test_unknown_fields_deep_inside_repeated_and_nested_messages(deployment: objects_pb2.Deployment) -> None:
    port = objects_pb2.ContainerPort.FromString(_with_unknown(objects_pb2.ContainerPort(container_port=1), 7))
    deployment.spec.template.spec.containers[1].ports.append(port)
    deployment.spec.strategy.MergeFrom(objects_pb2.DeploymentStrategy.FromString(
        _with_unknown(objects_pb2.DeploymentStrategy(type="Recreate"), 1000)))
    with pytest.raises(Invalid) as exc:
        check_unknown_fields(deployment)
    assert str(exc.value) == ("spec.template.spec.containers[1].ports[0]: unknown field number 7; "
                              "spec.strategy: unknown field number 1000")


def test_unknown_fields_survive_a_round_trip_through_the_wire(pod: objects_pb2.Pod) -> None:
    container = objects_pb2.Container.FromString(_with_unknown(pod.spec.containers[0], 42))
    pod.spec.containers[0].CopyFrom(container)
    obj = objects_pb2.Object.FromString(wrap(pod).SerializeToString())
    with pytest.raises(Invalid, match=r"^spec\.containers\[0\]: unknown field number 42$"):
        check_unknown_fields(obj)


def test_an_unknown_kind_in_the_object_wrapper() -> None:
    obj = objects_pb2.Object.FromString(_with_unknown(objects_pb2.Object(), 9))
    assert obj.WhichOneof("kind") is None
    with pytest.raises(Invalid) as exc:
        check_unknown_fields(obj)
    assert str(exc.value) == "object: unknown field number 9, perhaps a kind this version does not know"


def test_unknown_fields_in_map_values() -> None:
    value = struct_pb2.Value.FromString(_with_unknown(struct_pb2.Value(number_value=1), 99))
    struct = struct_pb2.Struct()
    struct.fields["a"].CopyFrom(value)
    struct.fields["b"].string_value = "fine"
    with pytest.raises(Invalid, match=r"^fields\[a\]: unknown field number 99$"):
        check_unknown_fields(struct)


def test_repeated_unknown_numbers_are_reported_once(pod: objects_pb2.Pod) -> None:
    data = _with_unknown(pod, 99) + _varint(99 << 3) + _varint(2)
    with pytest.raises(Invalid, match=r"^Pod: unknown field number 99$"):
        check_unknown_fields(objects_pb2.Pod.FromString(data))
