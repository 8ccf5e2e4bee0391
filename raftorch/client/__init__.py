"""raftorch's Python client library."""

from raftorch.client.client import Client
from raftorch.client.config import ClientConfig, load_credentials
from raftorch.client.connection import set_default_credentials
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
    "ClientConfig",
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
    "load_credentials",
    "set_default_credentials",
]
