"""Stored objects: the compares and operations of the registry's transactions, and how an
object is encoded into and decoded from its key's value (Secrets sealed at rest included)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import kv_pb2, objects_pb2
from raftorch.errors import Conflict
from raftorch.master.encryption import SecretBox
from raftorch.objects import Kind, check_object_size, store_key

log = structlog.get_logger("raftorch.registry")


def _cmp(key: str, target: kv_pb2.Compare.Target.ValueType, result: kv_pb2.Compare.Result.ValueType,
         **value: Any) -> kv_pb2.Compare:
    return kv_pb2.Compare(key=key, target=target, result=result, **value)


def absent(key: str) -> kv_pb2.Compare:
    return _cmp(key, kv_pb2.Compare.CREATE, kv_pb2.Compare.EQUAL, create_revision=0)


def present(key: str) -> kv_pb2.Compare:
    return _cmp(key, kv_pb2.Compare.CREATE, kv_pb2.Compare.GREATER, create_revision=0)


def unchanged(key: str, revision: int) -> kv_pb2.Compare:
    return _cmp(key, kv_pb2.Compare.MOD, kv_pb2.Compare.EQUAL, mod_revision=revision)


def put_op(key: str, value: bytes) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value))


def delete_op(key: str, prefix: bool = False) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=key, prefix=prefix, prev_kv=True))


def get_op(key: str) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key))


def decode_checked(kind: Kind, kv: kv_pb2.KeyValue | Any) -> tuple[Message | None, str]:
    """The stored object, or None and why it cannot be one.

    The key decides what an object is: bytes that do not parse as `kind`, or parse into an
    object of another name, are not that object (they can only have been written around the
    Resources API, by a bug or by hand).
    """
    try:
        msg = kind.message.FromString(kv.value)
    except Exception as exc:  # protobuf raises DecodeError and, on some garbage, others
        return None, f"not a {kind.name}: {type(exc).__name__}: {_short(str(exc))}"
    meta = msg.metadata  # type: ignore[attr-defined]
    where = f"/{meta.namespace}/{meta.name}" if kind.namespaced else f"/{meta.name}"
    if not meta.name or not kv.key.endswith(where):
        return None, f"holds {kind.name.lower()} {_short(where.lstrip('/'))!r}, which belongs under another key"
    meta.resource_version = kv.mod_revision
    if isinstance(msg, objects_pb2.Secret) and msg.HasField("sealed"):
        if _secret_box is None:
            return None, "a sealed secret, and this master has no encryption-key-file"
        try:
            _secret_box.open(msg, kv.key)
        except Conflict as err:
            return None, err.message
    return msg, ""


# The masters' key for Secrets. Per process, as decoding is: the in-process test clusters run
# several masters in one process, always with one key file.
_secret_box: SecretBox | None = None


def use_secret_box(box: SecretBox | None) -> None:
    global _secret_box
    _secret_box = box


def open_secrets(found: Iterable[kv_pb2.KeyValue | Any]) -> None:
    """Conflict for the first stored secret the current key cannot open."""
    for kv in found:
        msg = objects_pb2.Secret.FromString(kv.value)
        if not msg.HasField("sealed"):
            continue
        if _secret_box is None:
            raise Conflict(f"{kv.key} is sealed and this master has no encryption-key-file")
        _secret_box.open(msg, kv.key)


def decode(kind: Kind, kv: kv_pb2.KeyValue | Any) -> Message:
    """The stored object; Conflict naming the key when it cannot be decoded (only a delete helps)."""
    msg, problem = decode_checked(kind, kv)
    if msg is None:
        raise Conflict(f"{kv.key}: the stored object cannot be decoded ({problem}); delete it")
    return msg


def try_decode(kind: Kind, kv: kv_pb2.KeyValue | Any) -> Message | None:
    """For readers of many objects: one that cannot be decoded is skipped (None) and logged
    once per stored version with its key, so one bad key cannot fail a list or a watch."""
    msg, problem = decode_checked(kind, kv)
    if msg is None:
        report_undecodable(kv.key, kv.mod_revision, problem)
    return msg


class _Once:
    """Remembers the most recent items seen (bounded), to log each bad version once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, item: tuple[str, int]) -> bool:
        with self._lock:
            if item in self._seen:
                self._seen.move_to_end(item)
                return False
            self._seen[item] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


_reported = _Once(4096)


def report_undecodable(key: str, revision: int, problem: str) -> None:
    if _reported.first((key, revision)):
        log.error("undecodable_object_skipped", key=key, revision=revision, problem=problem)


def undecodable_event_name(key: str, revision: int) -> str:
    """One event per bad stored version, whichever leader records it."""
    return "undecodable-" + hashlib.sha256(f"{key}@{revision}".encode()).hexdigest()[:20]


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def encode(msg: Message) -> bytes:
    # The revision is the key's; storing it would be stale the moment it is written.
    rv = msg.metadata.resource_version  # type: ignore[attr-defined]
    msg.metadata.resource_version = 0  # type: ignore[attr-defined]
    data = msg.SerializeToString()
    msg.metadata.resource_version = rv  # type: ignore[attr-defined]
    return data


def encode_bounded(kind: Kind, msg: Message) -> bytes:
    """The stored form; every object write comes here, so none can pass the value limit, and no
    Secret is stored unsealed."""
    if isinstance(msg, objects_pb2.Secret):
        if _secret_box is None:
            raise Conflict("secrets: this master has no encryption-key-file, and secrets are kept only encrypted")
        msg = _secret_box.seal(msg, store_key(kind, msg.metadata.namespace, msg.metadata.name))
    data = encode(msg)
    check_object_size(kind.name, len(data))
    return data
