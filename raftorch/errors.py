"""The one error hierarchy of raftorch, and its mapping to gRPC status codes.

    RaftorchError
    ├── NotFound            NOT_FOUND
    ├── AlreadyExists       ALREADY_EXISTS
    ├── Invalid             INVALID_ARGUMENT      bad input; names the field
    ├── Conflict            FAILED_PRECONDITION   stale resource_version, failed compare
    ├── Compacted           OUT_OF_RANGE          revision no longer kept
    ├── PermissionDenied    PERMISSION_DENIED     authenticated, but not allowed
    ├── Unauthenticated     UNAUTHENTICATED       no or bad credentials
    ├── ResourceExhausted   RESOURCE_EXHAUSTED    a per-client cap (watches, streams) is reached
    │   └── NoSpace         RESOURCE_EXHAUSTED    the store's byte quota is reached
    ├── Unavailable         UNAVAILABLE           no master answers, no leader, shutting down
    │   └── NotLeader       UNAVAILABLE           retry on another master
    ├── UnknownOutcome      DEADLINE_EXCEEDED     the write may or may not have happened
    └── Internal            INTERNAL

Servers raise these; `to_grpc_code` maps them in one place and `from_grpc_code` maps a
status code back to the same class on the client.
"""

from __future__ import annotations

import grpc


class RaftorchError(Exception):
    """Base of every error raftorch reports to a user."""

    code: str = "INTERNAL"
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(RaftorchError):
    code = "NOT_FOUND"
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RaftorchError):
    code = "ALREADY_EXISTS"
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class Invalid(RaftorchError):
    code = "INVALID"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 2


class Conflict(RaftorchError):
    code = "CONFLICT"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Compacted(RaftorchError):
    code = "COMPACTED"
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class PermissionDenied(RaftorchError):
    code = "PERMISSION_DENIED"
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(RaftorchError):
    code = "UNAUTHENTICATED"
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(RaftorchError):
    code = "RESOURCE_EXHAUSTED"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NoSpace(ResourceExhausted):
    code = "NOSPACE"


class Unavailable(RaftorchError):
    code = "UNAVAILABLE"
    grpc_code = grpc.StatusCode.UNAVAILABLE
    exit_code = 3


class NotLeader(Unavailable):
    code = "NOT_LEADER"


class UnknownOutcome(RaftorchError):
    code = "UNKNOWN_OUTCOME"
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    exit_code = 3


class Internal(RaftorchError):
    code = "INTERNAL"
    grpc_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[str, type[RaftorchError]] = {
    cls.code: cls
    for cls in (NotFound, AlreadyExists, Invalid, Conflict, Compacted, PermissionDenied,
                Unauthenticated, ResourceExhausted, NoSpace, Unavailable, NotLeader, UnknownOutcome,
                Internal)
}

_BY_GRPC: dict[grpc.StatusCode, type[RaftorchError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: Invalid,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.OUT_OF_RANGE: Compacted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnknownOutcome,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_for_code(code: str, message: str) -> RaftorchError:
    """Rebuild an error from its code name (as stored in the replicated log)."""
    return _BY_CODE.get(code, Internal)(message)


def to_grpc_code(err: RaftorchError) -> grpc.StatusCode:
    return err.grpc_code


def from_grpc_code(code: grpc.StatusCode, message: str) -> RaftorchError:
    """The client's side of the mapping: a status code back to the error class."""
    return _BY_GRPC.get(code, Internal)(message or code.name)
