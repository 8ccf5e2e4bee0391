"""Limits on what the KV API accepts: checked before anything reaches the log."""

from __future__ import annotations

from raftorch.api.v1 import kv_pb2
from raftorch.errors import Invalid

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_TXN_OPS = 128


def check_key(key: str, field: str = "key", allow_empty: bool = False) -> None:
    if not key and not allow_empty:
        raise Invalid(f"{field}: must not be empty")
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise Invalid(f"{field}: {size} bytes is longer than the limit of {MAX_KEY_BYTES} bytes")


def check_put(req: kv_pb2.PutRequest, field: str = "put") -> None:
    check_key(req.key, f"{field}.key")
    if len(req.value) > MAX_VALUE_BYTES:
        raise Invalid(f"{field}.value: {len(req.value)} bytes is larger than the limit of {MAX_VALUE_BYTES} bytes")
    if req.lease < 0:
        raise Invalid(f"{field}.lease: must not be negative")


def check_range(req: kv_pb2.RangeRequest, field: str = "range") -> None:
    check_key(req.key, f"{field}.key", allow_empty=req.prefix)
    if req.limit < 0:
        raise Invalid(f"{field}.limit: must not be negative")
    if req.revision < 0:
        raise Invalid(f"{field}.revision: must not be negative")


def check_delete(req: kv_pb2.DeleteRangeRequest, field: str = "delete") -> None:
    check_key(req.key, f"{field}.key", allow_empty=req.prefix)


def check_txn(req: kv_pb2.TxnRequest) -> None:
    if len(req.compare) + len(req.success) + len(req.failure) > MAX_TXN_OPS:
        raise Invalid(f"txn: more than {MAX_TXN_OPS} compares and operations")
    for i, cmp in enumerate(req.compare):
        check_key(cmp.key, f"txn.compare[{i}].key")
    for name, ops in (("success", req.success), ("failure", req.failure)):
        for i, op in enumerate(ops):
            kind = op.WhichOneof("request")
            where = f"txn.{name}[{i}]"
            if kind == "request_put":
                check_put(op.request_put, where)
            elif kind == "request_range":
                check_range(op.request_range, where)
            elif kind == "request_delete_range":
                check_delete(op.request_delete_range, where)
            else:
                raise Invalid(f"{where}: empty operation")


def check_ttl(ttl: int) -> None:
    if ttl <= 0:
        raise Invalid(f"ttl: must be at least 1 second, got {ttl}")
    if ttl > 365 * 24 * 3600:
        raise Invalid(f"ttl: at most one year, got {ttl}")
