"""Plain result types of the client library (the protobuf stubs stay hidden)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from raftorch.api.v1 import kv_pb2


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: list[KeyValue]
    count: int
    more: bool


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TxnResult:
    revision: int
    succeeded: bool
    responses: list[PutResult | RangeResult | DeleteResult]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @classmethod
    def from_pb(cls, ev: kv_pb2.KeyEvent) -> WatchEvent:
        return cls("PUT" if ev.type == kv_pb2.KeyEvent.PUT else "DELETE", KeyValue.from_pb(ev.kv),
                   KeyValue.from_pb(ev.prev_kv) if ev.HasField("prev_kv") else None)


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseTTL:
    id: int
    ttl: int
    granted_ttl: int
    keys: list[str]


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    client_addr: str
    peer_addr: str


@dataclass(frozen=True, slots=True)
class MemberStatus:
    name: str
    client_addr: str
    peer_addr: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    healthy: bool
    leader: str
    revision: int
    error: str
    # Bytes the store holds and its quota; alarms such as NOSPACE.
    store_bytes: int = 0
    quota_bytes: int = 0
    alarms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    leader: str
    members: list[MemberStatus]


# Compare helpers for Txn, in the spirit of etcd's clientv3.
@dataclass(frozen=True, slots=True)
class Compare:
    key: str
    target: Literal["version", "create", "mod", "value", "lease"]
    op: Literal["==", "!=", ">", "<"]
    operand: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False
