"""Limits on what the masters' gRPC API accepts: checked before anything reaches the log.

Two layers. `check_message` bounds every field of every request from the protobuf schema
(sizes of strings and bytes, number of items, enum values, unknown fields, nesting). The
`check_*` functions below it add what one request means (key ranges, lease ids, the keys the
masters own). README.md ("Limits") lists every bound with its reason.
"""

from __future__ import annotations

import math

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from raftorch.api.v1 import agents_pb2, kv_pb2, objects_pb2
from raftorch.errors import Invalid, PermissionDenied

# Whole request, encoded; etcd's --max-request-bytes default. A 1 MiB value fits with room.
MAX_REQUEST_BYTES = 1536 * 1024
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_TXN_OPS = 128
# Ids are kept in the dedup table of every replica: a client's own id needs no more.
MAX_REQUEST_ID_BYTES = 128
# Any string or bytes field without a bound of its own.
MAX_STRING_BYTES = 64 * 1024
# Any repeated field or map without a bound of its own.
MAX_ITEMS = 1000
# The schema nests about 8 deep; more can only be a hostile or broken sender.
MAX_DEPTH = 32
MAX_NAME_BYTES = 253
MAX_KIND_BYTES = 63
MAX_SELECTOR_BYTES = 4096
MAX_ANNOTATION_VALUE_BYTES = 256 * 1024
MAX_FRAME_BYTES = 1024 * 1024
# Lease ids, revisions: far from int64's end, so "id + 1" can never overflow in the store.
MAX_ID = 2**62
MAX_TTL_SECONDS = 365 * 24 * 3600
MAX_NODES_PER_BATCH = 10_000
# Tolerations, taints, affinity terms, their expressions and values: each list.
MAX_CONSTRAINT_ITEMS = 100
MAX_EVENT_REASON_BYTES = 128
MAX_EVENT_MESSAGE_BYTES = 4096
MAX_TIMESTAMP_BYTES = 64
# Usage figures (millicores, bytes): far beyond any host, and exact in a double (JSON, the dashboard).
MAX_USAGE = 2**53
# An agent averages CPU over its sampling period (15 s by default).
MAX_USAGE_WINDOW_SECONDS = 3600.0
# How much of an offending value an error message shows.
SHOWN_CHARS = 64

# The masters own these keys: they are written only through the Resources API.
PROTECTED_PREFIXES = ("/registry/",)
PROTECTED_HINT = "use the Resources API (raftctl apply/create/delete)"

# Bounds of single fields, by full name, then by field name.
_BYTES_BY_FULL_NAME: dict[str, int] = {
    "raftorch.v1.PutRequest.value": MAX_VALUE_BYTES,
    "raftorch.v1.Compare.value": MAX_VALUE_BYTES,
    "raftorch.v1.PortForwardFrame.data": MAX_FRAME_BYTES,
    "raftorch.v1.ObjectMeta.AnnotationsEntry.value": MAX_ANNOTATION_VALUE_BYTES,
    # Node names, like `node` fields.
    "raftorch.v1.HeartbeatRequest.nodes": MAX_NAME_BYTES,
    "raftorch.v1.HeartbeatBatch.nodes": MAX_NAME_BYTES,
    "raftorch.v1.WatchNodePodsRequest.nodes": MAX_NAME_BYTES,
    # Kubernetes' bounds: a reason is a short CamelCase word, a message a sentence or two.
    "raftorch.v1.Event.reason": MAX_EVENT_REASON_BYTES,
    "raftorch.v1.Event.message": MAX_EVENT_MESSAGE_BYTES,
    "raftorch.v1.Event.type": MAX_KIND_BYTES,
    "raftorch.v1.Event.source": MAX_NAME_BYTES,
    "raftorch.v1.Event.first_timestamp": MAX_TIMESTAMP_BYTES,
    "raftorch.v1.Event.last_timestamp": MAX_TIMESTAMP_BYTES,
    "raftorch.v1.NodeUsage.timestamp": MAX_TIMESTAMP_BYTES,
}
_BYTES_BY_NAME: dict[str, int] = {
    "request_id": MAX_REQUEST_ID_BYTES,
    "key": MAX_KEY_BYTES,
    "name": MAX_NAME_BYTES,
    "namespace": MAX_NAME_BYTES,
    "node": MAX_NAME_BYTES,
    "pod": MAX_NAME_BYTES,
    "container": MAX_NAME_BYTES,
    "uid": MAX_NAME_BYTES,
    "kind": MAX_KIND_BYTES,
    "propagation": MAX_KIND_BYTES,
    "label_selector": MAX_SELECTOR_BYTES,
    "field_selector": MAX_SELECTOR_BYTES,
}
_ITEMS_BY_FULL_NAME: dict[str, int] = {
    "raftorch.v1.HeartbeatBatch.nodes": MAX_NODES_PER_BATCH,
    "raftorch.v1.HeartbeatRequest.nodes": MAX_NODES_PER_BATCH,
    "raftorch.v1.EndpointSubset.addresses": 5000,
    "raftorch.v1.EndpointSubset.not_ready_addresses": 5000,
    # The scheduler weighs each of these for every pod against every node: keep them small.
    "raftorch.v1.PodSpec.tolerations": MAX_CONSTRAINT_ITEMS,
    "raftorch.v1.NodeSpec.taints": MAX_CONSTRAINT_ITEMS,
    "raftorch.v1.NodeSelector.node_selector_terms": MAX_CONSTRAINT_ITEMS,
    "raftorch.v1.NodeSelectorTerm.match_expressions": MAX_CONSTRAINT_ITEMS,
    "raftorch.v1.NodeSelectorRequirement.values": MAX_CONSTRAINT_ITEMS,
    "raftorch.v1.NodeAffinity.preferred_during_scheduling_ignored_during_execution": MAX_CONSTRAINT_ITEMS,
}


def shown(value: str | bytes) -> str:
    """A value for an error message: quoted, and cut short when long (never echo megabytes)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(value)} {'bytes' if isinstance(value, bytes) else 'characters'})"


def check_request_size(size: int) -> None:
    if size > MAX_REQUEST_BYTES:
        raise Invalid(f"request: {size} bytes is larger than the limit of {MAX_REQUEST_BYTES} bytes")


# -- every field, from the schema ----------------------------------------------------------


def check_message(msg: Message, path: str = "", depth: int = 0) -> None:
    """Raise Invalid for the first field of `msg` (recursively) that is out of bounds."""
    where_self = path or msg.DESCRIPTOR.name
    if depth > MAX_DEPTH:
        raise Invalid(f"{where_self}: nested more than {MAX_DEPTH} levels deep")
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        # Storing fields this master does not know would drop their meaning (a newer sender?).
        raise Invalid(f"{where_self}: unknown field number {unknown[0].field_number}")
    for field, value in msg.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            _check_count(field, where, len(value))
            _check_map(entry, where, value, depth)
        elif field.is_repeated:
            _check_count(field, where, len(value))
            for i, item in enumerate(value):
                _check_value(field, f"{where}[{i}]", item, depth)
        else:
            _check_value(field, where, value, depth)


def _check_map(entry: Descriptor, where: str, value: object, depth: int) -> None:
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    for key in sorted(value):  # type: ignore[call-overload]
        if isinstance(key, str):
            _check_size(key_field, f"{where} key", key)
        _check_value(value_field, f"{where}[{_short(key)}]", value[key], depth)  # type: ignore[index]


def _short(key: object) -> str:
    text = str(key)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _check_count(field: FieldDescriptor, where: str, count: int) -> None:
    limit = _ITEMS_BY_FULL_NAME.get(field.full_name, MAX_ITEMS)
    if count > limit:
        raise Invalid(f"{where}: {count} items is more than the limit of {limit}")


def _check_value(field: FieldDescriptor, where: str, value: object, depth: int) -> None:
    if field.message_type is not None:
        check_message(value, where, depth + 1)  # type: ignore[arg-type]
    elif isinstance(value, (str, bytes)):
        _check_size(field, where, value)
    elif field.enum_type is not None and isinstance(value, int) and value not in field.enum_type.values_by_number:
        known = ", ".join(v.name for v in field.enum_type.values)
        raise Invalid(f"{where}: {value} is not one of {known}")


def _check_size(field: FieldDescriptor, where: str, value: str | bytes) -> None:
    limit = _BYTES_BY_FULL_NAME.get(field.full_name) or _BYTES_BY_NAME.get(field.name, MAX_STRING_BYTES)
    if isinstance(value, str):
        size = len(value.encode())
        if size > limit:
            raise Invalid(f"{where}: {size} bytes is longer than the limit of {limit} bytes: {shown(value)}")
    elif len(value) > limit:
        raise Invalid(f"{where}: {len(value)} bytes is larger than the limit of {limit} bytes")


# -- what KV requests mean ---------------------------------------------------------------------


def check_key(key: str, field: str = "key", allow_empty: bool = False) -> None:
    if not key and not allow_empty:
        raise Invalid(f"{field}: must not be empty")
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise Invalid(f"{field}: {size} bytes is longer than the limit of {MAX_KEY_BYTES} bytes")


def check_request_id(request_id: str, field: str = "request_id") -> None:
    size = len(request_id.encode())
    if size > MAX_REQUEST_ID_BYTES:
        raise Invalid(f"{field}: {size} bytes is longer than the limit of {MAX_REQUEST_ID_BYTES} bytes: "
                      f"{shown(request_id)}")


def check_id(value: int, field: str, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_ID:
        raise Invalid(f"{field}: must be between {low} and 2^62, got {value}")


def check_writable(key: str, prefix: bool, field: str) -> None:
    """Refuse a KV write that touches a key the masters own (a prefix delete included)."""
    for owned in PROTECTED_PREFIXES:
        if key.startswith(owned):
            raise PermissionDenied(f"{field}: key {shown(key)} is owned by the masters and written only "
                                   f"through the Resources API; {PROTECTED_HINT}")
        if prefix and owned.startswith(key):
            raise PermissionDenied(f"{field}: prefix {shown(key)} covers {owned}, whose keys are owned by the "
                                   f"masters and written only through the Resources API; {PROTECTED_HINT}")


def check_put(req: kv_pb2.PutRequest, field: str = "put") -> None:
    check_key(req.key, f"{field}.key")
    if len(req.value) > MAX_VALUE_BYTES:
        raise Invalid(f"{field}.value: {len(req.value)} bytes is larger than the limit of {MAX_VALUE_BYTES} bytes")
    check_id(req.lease, f"{field}.lease", allow_zero=True)
    check_request_id(req.request_id, f"{field}.request_id")
    check_writable(req.key, False, f"{field}.key")


def check_range(req: kv_pb2.RangeRequest, field: str = "range") -> None:
    check_key(req.key, f"{field}.key", allow_empty=req.prefix)
    if req.limit < 0:
        raise Invalid(f"{field}.limit: must not be negative")
    if not 0 <= req.revision <= MAX_ID:
        raise Invalid(f"{field}.revision: must be between 0 and 2^62, got {req.revision}")


def check_delete(req: kv_pb2.DeleteRangeRequest, field: str = "delete") -> None:
    check_key(req.key, f"{field}.key", allow_empty=req.prefix)
    check_request_id(req.request_id, f"{field}.request_id")
    check_writable(req.key, req.prefix, f"{field}.key")


def check_txn(req: kv_pb2.TxnRequest) -> None:
    if len(req.compare) + len(req.success) + len(req.failure) > MAX_TXN_OPS:
        raise Invalid(f"txn: more than {MAX_TXN_OPS} compares and operations")
    check_request_id(req.request_id, "txn.request_id")
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
    if ttl > MAX_TTL_SECONDS:
        raise Invalid(f"ttl: at most one year, got {ttl}")


# -- what agents report ------------------------------------------------------------------------


def check_node_usage(usage: agents_pb2.NodeUsage) -> None:
    """Usage figures are non-negative and bounded; the window is a real number of seconds."""
    def figures(where: str, cpu: int, memory: int) -> None:
        for name, value in (("cpu_millicores", cpu), ("memory_bytes", memory)):
            if not 0 <= value <= MAX_USAGE:
                raise Invalid(f"{where}{name}: must be between 0 and 2^53, got {value}")

    figures("", usage.cpu_millicores, usage.memory_bytes)
    if not (math.isfinite(usage.window_seconds) and 0 <= usage.window_seconds <= MAX_USAGE_WINDOW_SECONDS):
        raise Invalid(f"window_seconds: must be between 0 and {MAX_USAGE_WINDOW_SECONDS:g}, "
                      f"got {usage.window_seconds}")
    for i, pod in enumerate(usage.pods):
        for j, c in enumerate(pod.containers):
            figures(f"pods[{i}].containers[{j}].", c.cpu_millicores, c.memory_bytes)


def check_reported_event(event: objects_pb2.Event, where: str) -> None:
    """An event an agent reports: Kubernetes' two types, a reason, a positive count."""
    if event.type not in ("Normal", "Warning"):
        raise Invalid(f"{where}.type: expected Normal or Warning, got {shown(event.type)}")
    if not event.reason:
        raise Invalid(f"{where}.reason: required")
    if event.count < 1:
        raise Invalid(f"{where}.count: must be at least 1, got {event.count}")
