"""The replicated state machine: `apply(command) -> result`, pure and deterministic.

Every master applies the same commands in the same order and so holds the same state. No
clocks, no randomness, no I/O: time-based decisions (lease expiry) are made by the leader and
arrive here as commands.

`apply` is total: whatever a log entry holds (a malformed command, an id out of range, bytes
that do not decode), it yields a result or an error for that command alone and never raises.
An exception leaving it would stall pysyncobj on the entry forever, on every replica, and the
journal would replay it after a restart. Handlers check before they change anything, so a
command that fails leaves no trace but its error (and its deduplication record).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import DecodeError

from raftorch.api.v1 import cluster_pb2, kv_pb2, store_pb2
from raftorch.errors import Conflict, Internal, Invalid, NoSpace, NotFound, RaftorchError, ResourceExhausted
from raftorch.store import quota
from raftorch.store.mvcc import VERSION_OVERHEAD, Change, KeyIndex, Version

log = structlog.get_logger("raftorch.store")

# Revisions of history kept for watches and past reads; compaction runs every RETAIN revisions.
HISTORY_RETAIN = 20_000
# Request ids remembered for deduplication of retried writes, by count and by bytes.
DEDUP_RETAIN = 50_000
DEDUP_MAX_BYTES = 32 * quota.MIB
BATCH_FORMAT = 1

# Bounds checked here as well as at the gRPC edge: a log entry is applied whoever wrote it.
MAX_REQUEST_ID_BYTES = 128
MAX_LEASE_ID = 2**63 - 1  # lease ids are positive int64, as in etcd
MAX_LEASE_TTL = 9_000_000_000  # seconds; etcd's MaxLeaseTTL
MAX_MEMBERS = 128
MAX_MEMBER_FIELD_BYTES = 1024


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int
    # Sequence number of the grant: tells a re-granted id from the lease it replaced.
    grant: int = 0
    keys: set[str] = field(default_factory=set)


def to_kv(version: Version, keys_only: bool = False) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=version.key,
        value=b"" if keys_only or version.value is None else version.value,
        create_revision=version.create_revision,
        mod_revision=version.mod_revision,
        version=version.version,
        lease=version.lease,
    )


def to_event(change: Change, prev_kv: bool = True) -> kv_pb2.KeyEvent:
    event = kv_pb2.KeyEvent(
        type=kv_pb2.KeyEvent.PUT if change.kv.alive else kv_pb2.KeyEvent.DELETE,
        kv=to_kv(change.kv),
    )
    if prev_kv and change.prev is not None:
        event.prev_kv.CopyFrom(to_kv(change.prev))
    return event


class StateMachine:
    """KV store, leases, members and request deduplication."""

    def __init__(self, member: str = "") -> None:
        self.member = member
        self.index = KeyIndex()
        self.leases: dict[int, Lease] = {}
        self.next_lease_id = 1
        self.lease_grants = 0
        self.fence_term = 0
        self.members: dict[str, cluster_pb2.Member] = {}
        self.dedup: OrderedDict[str, store_pb2.CommandResult] = OrderedDict()
        self.dedup_bytes = 0
        self.member_bytes = 0
        self.quota_bytes = quota.DEFAULT_QUOTA_BYTES
        # Raised when the store refuses a write for lack of space; see `_update_alarm`.
        self.nospace_alarm = False
        # Changes made by the commands applied since the last `take_changes()`.
        self._changes: list[Change] = []
        self._handlers: dict[str, Callable[[store_pb2.Command], store_pb2.CommandResult]] = {
            "put": self._put,
            "delete_range": self._delete_range,
            "txn": self._txn,
            "compact": self._compact,
            "lease_grant": self._lease_grant,
            "lease_revoke": self._lease_revoke,
            "lease_expire": self._lease_expire,
            "member": self._member,
            "fence": self._fence,
            "quota": self._quota,
        }

    @property
    def revision(self) -> int:
        return self.index.revision

    def header(self, raft_term: int = 0) -> kv_pb2.ResponseHeader:
        return kv_pb2.ResponseHeader(member=self.member, revision=self.index.revision, raft_term=raft_term)

    # -- apply ----------------------------------------------------------------------

    def apply_batch(self, data: bytes) -> list[store_pb2.CommandResult]:
        """Apply one log entry. Never raises: an entry this master cannot read changes nothing
        and yields an error result (one per command when the commands can be counted)."""
        try:
            batch = store_pb2.CommandBatch.FromString(data)
        except (DecodeError, TypeError):  # TypeError: not bytes at all (pysyncobj unpickles entries)
            what = f"{len(data)} bytes" if isinstance(data, bytes) else f"a {type(data).__name__}"
            log.error("log_entry_undecodable", entry=what)
            return [_error(Internal(f"log entry ({what}) does not decode; it was skipped"))]
        if batch.format != BATCH_FORMAT:
            # A newer master wrote this: applying part of it would fork the replicas, and
            # raising would stall them all. Skip it whole, loudly; upgrade this master.
            log.error("log_entry_format_unknown", format=batch.format, understood=BATCH_FORMAT)
            err = _error(Internal(f"log entry format {batch.format} is newer than this master understands "
                                  f"({BATCH_FORMAT}); it was skipped: upgrade this master"))
            return [err for _ in range(max(1, len(batch.commands)))]
        return [self.apply(command) for command in batch.commands]

    def apply(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        try:
            return self._apply(command)
        except Exception as exc:  # the last line of defence: see the module docstring
            return _internal(command, exc)

    def _apply(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        rid = command.request_id
        if len(rid) > MAX_REQUEST_ID_BYTES or len(rid.encode()) > MAX_REQUEST_ID_BYTES:
            # Not remembered: a huge id must not take room in the deduplication table.
            return _error(Invalid(f"request_id: {len(rid.encode())} bytes, at most {MAX_REQUEST_ID_BYTES} "
                                  f"allowed ({rid[:32]!r}...)"))
        if rid and rid in self.dedup:
            return self._stamped(self.dedup[rid])
        kind = command.WhichOneof("op")
        handler = self._handlers.get(kind or "")
        if handler is None:
            result = _error(Invalid(f"unknown command {kind!r}"))
        elif command.fence_term and command.fence_term != self.fence_term:
            result = _error(Conflict(
                f"decided by the leader of term {command.fence_term}, but term {self.fence_term} is current"))
        else:
            try:
                result = handler(command)
            except RaftorchError as err:
                result = _error(err)
            except Exception as exc:
                result = _internal(command, exc)
        if rid:
            self._remember(rid, result)
        self._maybe_compact()
        self._update_alarm(refused=result.error.code == NoSpace.code)
        return result

    def _remember(self, rid: str, result: store_pb2.CommandResult) -> None:
        # The headers carry this replica's name, but the table is replicated state: its byte
        # count leaves the name out, snapshots store it without (`dump_state`), and a retried
        # request is answered in the name of the replica it reaches (`_stamped`).
        self.dedup[rid] = result
        self.dedup_bytes += dedup_size(rid, result)
        while self.dedup and (len(self.dedup) > DEDUP_RETAIN or self.dedup_bytes > DEDUP_MAX_BYTES):
            old_rid, old = self.dedup.popitem(last=False)
            self.dedup_bytes -= dedup_size(old_rid, old)

    def _stamped(self, stored: store_pb2.CommandResult) -> store_pb2.CommandResult:
        result = store_pb2.CommandResult()
        result.CopyFrom(stored)
        for header in _headers(result):
            header.member = self.member
        return result

    def take_changes(self) -> list[Change]:
        changes, self._changes = self._changes, []
        return changes

    def _maybe_compact(self) -> None:
        """Bound the history by revisions and by bytes (a snapshot carries all of it)."""
        index = self.index
        if index.revision - index.compact_revision >= 2 * HISTORY_RETAIN:
            index.compact(index.revision - HISTORY_RETAIN)
        limit = quota.history_limit(self.quota_bytes)
        if index.history_bytes > limit:
            start = index.history_start(limit // 2)
            if start > index.compact_revision:
                index.compact(start)

    # -- space ------------------------------------------------------------------------

    @property
    def usage(self) -> int:
        """Bytes the store holds, as the quota counts them: a function of replicated state."""
        return (self.index.version_bytes + self.index.history_bytes + self.dedup_bytes
                + len(self.leases) * quota.LEASE_BYTES + self.member_bytes)

    @property
    def alarms(self) -> list[str]:
        return [quota.NOSPACE] if self.nospace_alarm else []

    def _check_space(self, need: int) -> None:
        usage = self.usage
        if usage + need > self.quota_bytes:
            raise NoSpace(quota.nospace_message(usage, self.quota_bytes, need))

    def _update_alarm(self, refused: bool) -> None:
        """Raise NOSPACE when a write is refused or the quota is passed; clear it once usage is
        back under the low-water mark. etcd waits for an operator's `alarm disarm` after a
        defragmentation; an in-memory store has nothing to defragment, so it clears itself."""
        usage = self.usage
        if quota.alarm_clears(usage, self.quota_bytes):
            self.nospace_alarm = False
        elif refused or usage > self.quota_bytes:
            self.nospace_alarm = True

    # -- key-value --------------------------------------------------------------------

    def _put(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        self._check_put(command.put)
        self._check_space(self._put_cost(command.put))
        self.index.revision += 1
        return store_pb2.CommandResult(put=self._do_put(command.put))

    def _check_put(self, req: kv_pb2.PutRequest) -> None:
        if not req.key:
            raise Invalid("key: must not be empty")
        if req.lease and req.lease not in self.leases:
            raise NotFound(f"lease {req.lease} not found")

    def _put_cost(self, req: kv_pb2.PutRequest) -> int:
        return quota.put_cost(req.key, req.value, self.index.current(req.key))

    def _do_put(self, req: kv_pb2.PutRequest) -> kv_pb2.PutResponse:
        change = self.index.put(req.key, req.value, req.lease, self.index.revision)
        self._record(change)
        resp = kv_pb2.PutResponse(header=self.header())
        if req.prev_kv and change.prev is not None:
            resp.prev_kv.CopyFrom(to_kv(change.prev))
        return resp

    def _delete_range(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        req = command.delete_range
        if not any(True for _ in self.index.range(req.key, req.prefix, 0)):
            return store_pb2.CommandResult(delete_range=kv_pb2.DeleteRangeResponse(header=self.header()))
        self.index.revision += 1
        return store_pb2.CommandResult(delete_range=self._do_delete(req))

    def _do_delete(self, req: kv_pb2.DeleteRangeRequest) -> kv_pb2.DeleteRangeResponse:
        victims = list(self.index.range(req.key, req.prefix, 0))
        resp = kv_pb2.DeleteRangeResponse()
        for victim in victims:
            change = self.index.delete(victim.key, self.index.revision)
            if change is not None:
                self._record(change)
                resp.deleted += 1
                if req.prev_kv:
                    resp.prev_kvs.append(to_kv(victim))
        resp.header.CopyFrom(self.header())
        return resp

    def _record(self, change: Change) -> None:
        """Keep lease attachments in step with a change and queue it for watchers."""
        old_lease = change.prev.lease if change.prev else 0
        new_lease = change.kv.lease if change.kv.alive else 0
        if old_lease != new_lease and old_lease in self.leases:
            self.leases[old_lease].keys.discard(change.kv.key)
        if new_lease:
            self.leases[new_lease].keys.add(change.kv.key)
        self._changes.append(change)

    def range(self, req: kv_pb2.RangeRequest) -> kv_pb2.RangeResponse:
        """A read on this replica's state (the caller decides about barriers)."""
        resp = kv_pb2.RangeResponse()
        for version in self.index.range(req.key, req.prefix, req.revision):
            resp.count += 1
            if req.count_only:
                continue
            if req.limit and len(resp.kvs) >= req.limit:
                resp.more = True
                continue
            resp.kvs.append(to_kv(version, req.keys_only))
        resp.header.CopyFrom(self.header())
        return resp

    def _txn(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        req = command.txn
        succeeded = all(self._compare(c) for c in req.compare)
        ops = req.success if succeeded else req.failure
        # Check everything that can fail before writing anything: a txn is all or nothing.
        need = 0
        for op in ops:
            if op.WhichOneof("request") == "request_put":
                self._check_put(op.request_put)
                need += self._put_cost(op.request_put)
            elif op.WhichOneof("request") == "request_range":
                self.index.check_revision(op.request_range.revision)
        if need:
            self._check_space(need)
        writes = any(
            op.WhichOneof("request") == "request_put"
            or (op.WhichOneof("request") == "request_delete_range"
                and any(True for _ in self.index.range(op.request_delete_range.key,
                                                        op.request_delete_range.prefix, 0)))
            for op in ops
        )
        if writes:
            self.index.revision += 1
        resp = kv_pb2.TxnResponse(succeeded=succeeded)
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                resp.responses.add(response_put=self._do_put(op.request_put))
            elif kind == "request_delete_range":
                resp.responses.add(response_delete_range=self._do_delete(op.request_delete_range))
            elif kind == "request_range":
                resp.responses.add(response_range=self.range(op.request_range))
        resp.header.CopyFrom(self.header())
        return store_pb2.CommandResult(txn=resp)

    def _compare(self, cmp: kv_pb2.Compare) -> bool:
        current = self.index.current(cmp.key)
        target = cmp.target
        have: int | bytes
        want: int | bytes
        if target == kv_pb2.Compare.VALUE:
            if current is None or current.value is None:
                return False
            have, want = current.value, cmp.value
        elif target == kv_pb2.Compare.VERSION:
            have, want = (current.version if current else 0), cmp.version
        elif target == kv_pb2.Compare.CREATE:
            have, want = (current.create_revision if current else 0), cmp.create_revision
        elif target == kv_pb2.Compare.MOD:
            have, want = (current.mod_revision if current else 0), cmp.mod_revision
        else:
            have, want = (current.lease if current else 0), cmp.lease
        result = cmp.result
        if result == kv_pb2.Compare.EQUAL:
            return have == want
        if result == kv_pb2.Compare.NOT_EQUAL:
            return have != want
        if result == kv_pb2.Compare.GREATER:
            return have > want  # type: ignore[operator]
        return have < want  # type: ignore[operator]

    def _compact(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        self.index.compact(command.compact.revision)
        return store_pb2.CommandResult(compact=kv_pb2.CompactResponse(header=self.header()))

    # -- leases -------------------------------------------------------------------------

    def _lease_grant(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        req = command.lease_grant
        if not 0 <= req.ttl <= MAX_LEASE_TTL:
            raise Invalid(f"ttl: {req.ttl} is out of range (0 to {MAX_LEASE_TTL} seconds)")
        if req.id < 0:
            raise Invalid(f"id: lease ids are positive, got {req.id}")
        lease_id = req.id or self._free_lease_id()
        if lease_id in self.leases:
            raise Invalid(f"lease {lease_id} already exists")
        self._check_space(quota.LEASE_BYTES)
        if lease_id >= self.next_lease_id:
            # Wraps past the largest id (then skips the ids in use): never overflows int64.
            self.next_lease_id = lease_id + 1 if lease_id < MAX_LEASE_ID else 1
        self.lease_grants += 1
        self.leases[lease_id] = Lease(lease_id, req.ttl, self.lease_grants)
        return store_pb2.CommandResult(
            lease_grant=kv_pb2.LeaseGrantResponse(header=self.header(), id=lease_id, ttl=req.ttl))

    def _free_lease_id(self) -> int:
        """The next unused id from `next_lease_id` on; the quota bounds how many are in use."""
        lease_id = self.next_lease_id if 0 < self.next_lease_id <= MAX_LEASE_ID else 1
        while lease_id in self.leases:
            lease_id = lease_id + 1 if lease_id < MAX_LEASE_ID else 1
        return lease_id

    def _lease_revoke(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        self._revoke(command.lease_revoke.id)
        return store_pb2.CommandResult(lease_revoke=kv_pb2.LeaseRevokeResponse(header=self.header()))

    def _lease_expire(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        req = command.lease_expire
        if req.term < self.fence_term:
            raise Invalid(f"lease expiry decided in term {req.term}, but term {self.fence_term} has begun")
        self._revoke(req.id)
        return store_pb2.CommandResult(done=self.header())

    def _revoke(self, lease_id: int) -> None:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise NotFound(f"lease {lease_id} not found")
        live = [key for key in sorted(lease.keys) if self.index.current(key) is not None]
        if not live:
            return
        self.index.revision += 1
        for key in live:
            change = self.index.delete(key, self.index.revision)
            if change is not None:
                self._changes.append(change)

    # -- membership and leadership ----------------------------------------------------

    def _member(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        member = command.member
        if not member.name:
            raise Invalid("member name is empty")
        for what, text in (("name", member.name), ("client_addr", member.client_addr),
                           ("peer_addr", member.peer_addr)):
            if len(text.encode()) > MAX_MEMBER_FIELD_BYTES:
                raise Invalid(f"member {what}: longer than {MAX_MEMBER_FIELD_BYTES} bytes")
        if member.name not in self.members and len(self.members) >= MAX_MEMBERS:
            raise ResourceExhausted(f"the cluster already lists {MAX_MEMBERS} members")
        self.members[member.name] = cluster_pb2.Member()
        self.members[member.name].CopyFrom(member)
        self.member_bytes = members_size(self.members)
        return store_pb2.CommandResult(done=self.header())

    def _fence(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        self.fence_term = max(self.fence_term, command.fence.term)
        return store_pb2.CommandResult(done=self.header())

    def _quota(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        size = command.quota.bytes
        if not quota.MIN_QUOTA_BYTES <= size <= quota.MAX_QUOTA_BYTES:
            raise Invalid(f"quota: {size} bytes is out of range "
                          f"({quota.MIN_QUOTA_BYTES} to {quota.MAX_QUOTA_BYTES})")
        self.quota_bytes = size
        return store_pb2.CommandResult(done=self.header())


def _error(err: RaftorchError) -> store_pb2.CommandResult:
    return store_pb2.CommandResult(error=store_pb2.CommandError(code=err.code, message=err.message))


def _internal(command: store_pb2.Command, exc: Exception) -> store_pb2.CommandResult:
    """An unexpected failure as a result. The message names only the command and the exception
    type: it is replicated (deduplication records), and exception texts may hold addresses."""
    kind = command.WhichOneof("op")
    log.error("apply_failed", command=kind, exc_info=exc)
    return _error(Internal(f"internal error applying {kind!r}: {type(exc).__name__}"))


def _headers(result: store_pb2.CommandResult) -> Iterator[kv_pb2.ResponseHeader]:
    """The response headers a result carries (reading never marks an absent one present)."""
    kind = result.WhichOneof("result")
    if kind is None or kind == "error":
        return
    if kind == "done":
        yield result.done
        return
    response = getattr(result, kind)
    if response.HasField("header"):
        yield response.header
    if kind == "txn":
        for op in result.txn.responses:
            inner = op.WhichOneof("response")
            if inner is not None and getattr(op, inner).HasField("header"):
                yield getattr(op, inner).header


def dedup_size(rid: str, result: store_pb2.CommandResult) -> int:
    """Bytes a deduplication record is counted for: the id, the key-values and error text the
    result holds, and a fixed overhead (not its encoded size, which holds the replica's name)."""
    kind = result.WhichOneof("result")
    size = len(rid.encode()) + quota.DEDUP_OVERHEAD
    if kind == "error":
        return size + len(result.error.code) + len(result.error.message.encode())
    if kind == "put":
        return size + (_kv_size(result.put.prev_kv) if result.put.HasField("prev_kv") else 0)
    if kind == "delete_range":
        return size + sum(_kv_size(kv) for kv in result.delete_range.prev_kvs)
    if kind == "txn":
        for op in result.txn.responses:
            inner = op.WhichOneof("response")
            if inner == "response_put" and op.response_put.HasField("prev_kv"):
                size += _kv_size(op.response_put.prev_kv)
            elif inner == "response_delete_range":
                size += sum(_kv_size(kv) for kv in op.response_delete_range.prev_kvs)
            elif inner == "response_range":
                size += sum(_kv_size(kv) for kv in op.response_range.kvs)
    return size


def _kv_size(kv: kv_pb2.KeyValue) -> int:
    return len(kv.key.encode()) + len(kv.value) + VERSION_OVERHEAD


def members_size(members: dict[str, cluster_pb2.Member]) -> int:
    return sum(m.ByteSize() + quota.MEMBER_OVERHEAD for m in members.values())
