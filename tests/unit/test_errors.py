"""The error hierarchy and its mapping to and from gRPC status codes and code names."""

from __future__ import annotations

import grpc
import pytest

from raftorch import errors
from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    Internal,
    Invalid,
    NotFound,
    NotLeader,
    PermissionDenied,
    RaftorchError,
    Unavailable,
    UnknownOutcome,
)
from raftorch.store.machine import StateMachine

ALL = [NotFound, AlreadyExists, Invalid, Conflict, Compacted, PermissionDenied, Unavailable, NotLeader,
       UnknownOutcome, Internal]

EXPECTED_GRPC = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Compacted: grpc.StatusCode.OUT_OF_RANGE,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    NotLeader: grpc.StatusCode.UNAVAILABLE,
    UnknownOutcome: grpc.StatusCode.DEADLINE_EXCEEDED,
    Internal: grpc.StatusCode.INTERNAL,
}


@pytest.mark.parametrize("cls", ALL)
def test_every_error_is_a_raftorch_error_with_message(cls: type[RaftorchError]) -> None:
    err = cls("something went wrong")
    assert isinstance(err, RaftorchError)
    assert isinstance(err, Exception)
    assert err.message == "something went wrong"
    assert str(err) == "something went wrong"


def test_not_leader_is_unavailable() -> None:
    err = NotLeader("ask another master")
    assert isinstance(err, Unavailable)
    assert err.code == "NOT_LEADER"
    with pytest.raises(Unavailable):
        raise err


def test_codes_are_distinct() -> None:
    codes = [cls.code for cls in ALL]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(("cls", "status"), list(EXPECTED_GRPC.items()))
def test_to_grpc_code(cls: type[RaftorchError], status: grpc.StatusCode) -> None:
    assert errors.to_grpc_code(cls("m")) is status


@pytest.mark.parametrize("cls", [c for c in ALL if c is not NotLeader])
def test_grpc_round_trip_gives_back_same_class(cls: type[RaftorchError]) -> None:
    back = errors.from_grpc_code(errors.to_grpc_code(cls("lost")), "lost")
    assert type(back) is cls
    assert back.message == "lost"


def test_not_leader_comes_back_as_unavailable_over_grpc() -> None:
    back = errors.from_grpc_code(errors.to_grpc_code(NotLeader("m")), "m")
    assert type(back) is Unavailable


def test_resource_exhausted_and_unauthenticated_map_back() -> None:
    assert type(errors.from_grpc_code(grpc.StatusCode.RESOURCE_EXHAUSTED, "cap")) is errors.ResourceExhausted
    assert type(errors.from_grpc_code(grpc.StatusCode.UNAUTHENTICATED, "who")) is errors.Unauthenticated
    assert isinstance(errors.NoSpace("full"), errors.ResourceExhausted)


@pytest.mark.parametrize("status", [grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                                    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DATA_LOSS])
def test_unmapped_grpc_code_is_internal(status: grpc.StatusCode) -> None:
    err = errors.from_grpc_code(status, "boom")
    assert type(err) is Internal
    assert err.message == "boom"


def test_empty_grpc_message_falls_back_to_code_name() -> None:
    assert errors.from_grpc_code(grpc.StatusCode.NOT_FOUND, "").message == "NOT_FOUND"


@pytest.mark.parametrize("cls", ALL)
def test_code_name_round_trip(cls: type[RaftorchError]) -> None:
    back = errors.error_for_code(cls.code, "stored")
    assert type(back) is cls
    assert back.message == "stored"


def test_unknown_code_name_is_internal() -> None:
    err = errors.error_for_code("NO_SUCH_CODE", "m")
    assert type(err) is Internal
    assert err.message == "m"


@pytest.mark.parametrize(("cls", "exit_code"), [
    (Invalid, 2), (Unavailable, 3), (NotLeader, 3), (UnknownOutcome, 3),
    (NotFound, 1), (Conflict, 1), (Internal, 1), (Compacted, 1),
])
def test_exit_codes(cls: type[RaftorchError], exit_code: int) -> None:
    assert cls("m").exit_code == exit_code


def test_state_machine_error_codes_rebuild_to_the_raised_class() -> None:
    """A command's stored error (code name) turns back into the class the machine raised."""
    result = StateMachine().apply(store_pb2.Command(put=kv_pb2.PutRequest(key="k", lease=5)))
    err = errors.error_for_code(result.error.code, result.error.message)
    assert isinstance(err, NotFound)
    assert errors.to_grpc_code(err) is grpc.StatusCode.NOT_FOUND
