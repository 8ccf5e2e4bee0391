"""raftorch's Python client library."""

from raftorch.client.client import Client
from raftorch.client.types import (
    ClusterStatus,
    Compare,
    Delete,
    DeleteResult,
    Get,
    KeyValue,
    Lease,
    LeaseTTL,
    Member,
    MemberStatus,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
)
from raftorch.client.watch import Watch

__all__ = [
    "Client",
    "ClusterStatus",
    "Compare",
    "Delete",
    "DeleteResult",
    "Get",
    "KeyValue",
    "Lease",
    "LeaseTTL",
    "Member",
    "MemberStatus",
    "Put",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "Watch",
    "WatchEvent",
]
