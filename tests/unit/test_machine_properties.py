"""Property-based test of the state machine: random valid and invalid commands and raw bytes.

For every sequence Hypothesis draws:
- `apply` and `apply_batch` never raise;
- a second machine fed the same commands as serialized log entries dumps byte-identical
  snapshots, and so does a third restored from a snapshot taken part way;
- a simple dict-based model agrees on every result: values, revisions, counts, error codes.

The model is written from the documented behaviour (etcd's, for the KV part), not from the
machine's code. Values stay small, so the byte quota never binds here (test_store_quota.py
covers it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftorch.api.v1 import cluster_pb2, kv_pb2, store_pb2
from raftorch.store import quota
from raftorch.store.machine import (
    BATCH_FORMAT,
    MAX_LEASE_ID,
    MAX_LEASE_TTL,
    MAX_MEMBER_FIELD_BYTES,
    MAX_MEMBERS,
    MAX_REQUEST_ID_BYTES,
    StateMachine,
)
from raftorch.store.snapshot import dump_state, load_state

Cmp = kv_pb2.Compare
KV = tuple[str, bytes, int, int, int, int]  # key, value, create_revision, mod_revision, version, lease
Norm = tuple[Any, ...]


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


# -- the model ---------------------------------------------------------------------------


@dataclass
class Model:
    revision: int = 0
    compact_revision: int = 0
    current: dict[str, KV] = field(default_factory=dict)
    # The whole key space as of each revision still readable.
    states: dict[int, dict[str, KV]] = field(default_factory=lambda: {0: {}})
    leases: dict[int, int] = field(default_factory=dict)
    next_lease_id: int = 1
    fence_term: int = 0
    members: set[str] = field(default_factory=set)
    dedup: dict[str, Norm] = field(default_factory=dict)

    def apply(self, c: store_pb2.Command) -> Norm:
        rid = c.request_id
        if len(rid.encode()) > MAX_REQUEST_ID_BYTES:
            return ("error", "INVALID")
        if rid and rid in self.dedup:
            return self.dedup[rid]
        kind = c.WhichOneof("op")
        try:
            if kind is None:
                raise _Refused("INVALID")
            if c.fence_term and c.fence_term != self.fence_term:
                raise _Refused("CONFLICT")
            result: Norm = getattr(self, f"_{kind}")(getattr(c, kind))
        except _Refused as refused:
            result = ("error", refused.code)
        if rid:
            self.dedup[rid] = result
        self.states[self.revision] = dict(self.current)
        return result

    def apply_entry(self, data: bytes) -> list[Norm]:
        try:
            batch = store_pb2.CommandBatch.FromString(data)
        except DecodeError:
            return [("error", "INTERNAL")]
        if batch.format != BATCH_FORMAT:
            return [("error", "INTERNAL")] * max(1, len(batch.commands))
        return [self.apply(c) for c in batch.commands]

    # KV

    def _matching(self, state: dict[str, KV], key: str, prefix: bool) -> list[KV]:
        return [state[k] for k in sorted(state) if (k.startswith(key) if prefix else k == key)]

    def _check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise _Refused("INVALID")
        if 0 < revision < self.compact_revision:
            raise _Refused("COMPACTED")

    def _check_put(self, req: kv_pb2.PutRequest) -> None:
        if not req.key:
            raise _Refused("INVALID")
        if req.lease and req.lease not in self.leases:
            raise _Refused("NOT_FOUND")

    def _do_put(self, req: kv_pb2.PutRequest) -> Norm:
        prev = self.current.get(req.key)
        rev = self.revision
        self.current[req.key] = (req.key, req.value, prev[2] if prev else rev, rev, prev[4] + 1 if prev else 1,
                                 req.lease)
        return ("put", rev, prev if req.prev_kv and prev else None)

    def _do_delete(self, req: kv_pb2.DeleteRangeRequest) -> Norm:
        victims = self._matching(self.current, req.key, req.prefix)
        for kv in victims:
            del self.current[kv[0]]
        return ("delete", self.revision, len(victims), victims if req.prev_kv else [])

    def _range(self, req: kv_pb2.RangeRequest) -> Norm:
        self._check_revision(req.revision)
        state = self.current if req.revision <= 0 else self.states[req.revision]
        found = self._matching(state, req.key, req.prefix)
        kvs: list[KV] = []
        more = False
        for kv in found:
            if req.count_only:
                continue
            if req.limit and len(kvs) >= req.limit:
                more = True
                continue
            kvs.append((kv[0], b"", *kv[2:]) if req.keys_only else kv)
        return ("range", self.revision, len(found), kvs, more)

    def _put(self, req: kv_pb2.PutRequest) -> Norm:
        self._check_put(req)
        self.revision += 1
        return self._do_put(req)

    def _delete_range(self, req: kv_pb2.DeleteRangeRequest) -> Norm:
        if not self._matching(self.current, req.key, req.prefix):
            return ("delete", self.revision, 0, [])
        self.revision += 1
        return self._do_delete(req)

    def _compare(self, c: kv_pb2.Compare) -> bool:
        kv = self.current.get(c.key)
        have: int | bytes
        want: int | bytes
        if c.target == Cmp.VALUE:
            if kv is None:
                return False
            have, want = kv[1], c.value
        elif c.target == Cmp.VERSION:
            have, want = (kv[4] if kv else 0), c.version
        elif c.target == Cmp.CREATE:
            have, want = (kv[2] if kv else 0), c.create_revision
        elif c.target == Cmp.MOD:
            have, want = (kv[3] if kv else 0), c.mod_revision
        else:
            have, want = (kv[5] if kv else 0), c.lease
        if c.result == Cmp.EQUAL:
            return have == want
        if c.result == Cmp.NOT_EQUAL:
            return have != want
        if c.result == Cmp.GREATER:
            return have > want  # type: ignore[operator]
        return have < want  # type: ignore[operator]

    def _txn(self, req: kv_pb2.TxnRequest) -> Norm:
        succeeded = all(self._compare(c) for c in req.compare)
        ops = req.success if succeeded else req.failure
        for op in ops:
            if op.WhichOneof("request") == "request_put":
                self._check_put(op.request_put)
            elif op.WhichOneof("request") == "request_range":
                self._check_revision(op.request_range.revision)
        if any(op.WhichOneof("request") == "request_put"
               or (op.WhichOneof("request") == "request_delete_range"
                   and self._matching(self.current, op.request_delete_range.key, op.request_delete_range.prefix))
               for op in ops):
            self.revision += 1
        responses: list[Norm] = []
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                responses.append(self._do_put(op.request_put))
            elif kind == "request_delete_range":
                responses.append(self._do_delete(op.request_delete_range))
            elif kind == "request_range":
                responses.append(self._range(op.request_range))
        return ("txn", succeeded, self.revision, responses)

    def _compact(self, req: kv_pb2.CompactRequest) -> Norm:
        if req.revision <= self.compact_revision:
            raise _Refused("COMPACTED")
        if req.revision > self.revision:
            raise _Refused("INVALID")
        self.compact_revision = req.revision
        self.states = {r: s for r, s in self.states.items() if r >= req.revision}
        return ("compact", self.revision)

    # leases

    def _lease_grant(self, req: kv_pb2.LeaseGrantRequest) -> Norm:
        if not 0 <= req.ttl <= MAX_LEASE_TTL or req.id < 0:
            raise _Refused("INVALID")
        lease_id = req.id
        if not lease_id:
            lease_id = self.next_lease_id if 0 < self.next_lease_id <= MAX_LEASE_ID else 1
            while lease_id in self.leases:
                lease_id = lease_id % MAX_LEASE_ID + 1
        if lease_id in self.leases:
            raise _Refused("INVALID")
        if lease_id >= self.next_lease_id:
            self.next_lease_id = lease_id % MAX_LEASE_ID + 1
        self.leases[lease_id] = req.ttl
        return ("grant", lease_id, req.ttl, self.revision)

    def _revoke(self, lease_id: int) -> None:
        if self.leases.pop(lease_id, None) is None:
            raise _Refused("NOT_FOUND")
        attached = [k for k, kv in self.current.items() if kv[5] == lease_id]
        if attached:
            self.revision += 1
            for key in attached:
                del self.current[key]

    def _lease_revoke(self, req: kv_pb2.LeaseRevokeRequest) -> Norm:
        self._revoke(req.id)
        return ("revoke", self.revision)

    def _lease_expire(self, req: store_pb2.LeaseExpire) -> Norm:
        if req.term < self.fence_term:
            raise _Refused("INVALID")
        self._revoke(req.id)
        return ("done", self.revision)

    # cluster

    def _member(self, m: cluster_pb2.Member) -> Norm:
        if not m.name or any(len(f.encode()) > MAX_MEMBER_FIELD_BYTES for f in (m.name, m.client_addr, m.peer_addr)):
            raise _Refused("INVALID")
        if m.name not in self.members and len(self.members) >= MAX_MEMBERS:
            raise _Refused("RESOURCE_EXHAUSTED")
        self.members.add(m.name)
        return ("done", self.revision)

    def _fence(self, f: store_pb2.LeaderFence) -> Norm:
        self.fence_term = max(self.fence_term, f.term)
        return ("done", self.revision)

    def _quota(self, q: store_pb2.StoreQuota) -> Norm:
        if not quota.MIN_QUOTA_BYTES <= q.bytes <= quota.MAX_QUOTA_BYTES:
            raise _Refused("INVALID")
        return ("done", self.revision)


# -- the machine's results, in the model's terms ---------------------------------------


def _kv(kv: kv_pb2.KeyValue) -> KV:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _range_norm(r: kv_pb2.RangeResponse) -> Norm:
    return ("range", r.header.revision, r.count, [_kv(kv) for kv in r.kvs], r.more)


def _put_norm(r: kv_pb2.PutResponse) -> Norm:
    return ("put", r.header.revision, _kv(r.prev_kv) if r.HasField("prev_kv") else None)


def _delete_norm(r: kv_pb2.DeleteRangeResponse) -> Norm:
    return ("delete", r.header.revision, r.deleted, [_kv(kv) for kv in r.prev_kvs])


def _op_norm(op: kv_pb2.ResponseOp) -> Norm:
    kind = op.WhichOneof("response")
    if kind == "response_put":
        return _put_norm(op.response_put)
    if kind == "response_delete_range":
        return _delete_norm(op.response_delete_range)
    return _range_norm(op.response_range)


def norm(r: store_pb2.CommandResult) -> Norm:
    kind = r.WhichOneof("result")
    if kind == "error":
        return ("error", r.error.code)
    if kind == "put":
        return _put_norm(r.put)
    if kind == "delete_range":
        return _delete_norm(r.delete_range)
    if kind == "txn":
        return ("txn", r.txn.succeeded, r.txn.header.revision, [_op_norm(op) for op in r.txn.responses])
    if kind == "compact":
        return ("compact", r.compact.header.revision)
    if kind == "lease_grant":
        return ("grant", r.lease_grant.id, r.lease_grant.ttl, r.lease_grant.header.revision)
    if kind == "lease_revoke":
        return ("revoke", r.lease_revoke.header.revision)
    return ("done", r.done.revision)


def _state(m: StateMachine) -> dict[str, KV]:
    return {kv.key: _kv(kv) for kv in m.range(kv_pb2.RangeRequest(key="", prefix=True)).kvs}


# -- strategies --------------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "c/1", "c/2", "a", "c/1", ""])
values = st.binary(max_size=6)
lease_ids = st.one_of(st.sampled_from([0, 0, 0, 1, 1, 2, 3]),
                      st.sampled_from([MAX_LEASE_ID, MAX_LEASE_ID - 1, -1, 2**62]))
revisions = st.integers(min_value=-1, max_value=14)
# Mostly none: a reused id makes the command a deduplicated no-op.
request_ids = st.sampled_from(["", "", "", "", "", "", "", "", "r1", "r2", "é" * 70, "x" * (MAX_REQUEST_ID_BYTES + 1)])
fence_terms = st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, 2])

puts = st.builds(kv_pb2.PutRequest, key=keys, value=values, lease=st.sampled_from([0, 0, 0, 1, 1, 2, 7]),
                 prev_kv=st.booleans())
deletes = st.builds(kv_pb2.DeleteRangeRequest, key=keys, prefix=st.booleans(), prev_kv=st.booleans())
ranges = st.builds(kv_pb2.RangeRequest, key=keys, prefix=st.booleans(), limit=st.sampled_from([0, 0, 1, 2, -1]),
                   revision=revisions, keys_only=st.booleans(), count_only=st.booleans())


@st.composite
def compares(draw: st.DrawFn) -> kv_pb2.Compare:
    target = draw(st.sampled_from([Cmp.VERSION, Cmp.CREATE, Cmp.MOD, Cmp.VALUE, Cmp.LEASE, 7]))
    result = draw(st.sampled_from([Cmp.EQUAL, Cmp.GREATER, Cmp.LESS, Cmp.NOT_EQUAL, 9]))
    c = kv_pb2.Compare(key=draw(keys), target=target, result=result)  # type: ignore[arg-type]
    which = draw(st.sampled_from(["version", "create_revision", "mod_revision", "value", "lease"]))
    if which == "value":
        c.value = draw(values)
    else:
        setattr(c, which, draw(st.integers(min_value=-1, max_value=6)))
    return c


request_ops = st.one_of(
    st.builds(kv_pb2.RequestOp, request_put=puts),
    st.builds(kv_pb2.RequestOp, request_delete_range=deletes),
    st.builds(kv_pb2.RequestOp, request_range=ranges),
    st.just(kv_pb2.RequestOp()),
)
txns = st.builds(kv_pb2.TxnRequest, compare=st.lists(compares(), max_size=2),
                 success=st.lists(request_ops, max_size=3), failure=st.lists(request_ops, max_size=3))
members = st.builds(cluster_pb2.Member, name=st.sampled_from(["", "m1", "m2", "m" * (MAX_MEMBER_FIELD_BYTES + 1)]),
                    client_addr=st.sampled_from(["", "h:1", "h:2"]))

grants = st.builds(kv_pb2.LeaseGrantRequest, id=st.one_of(st.just(0), lease_ids),
                   ttl=st.sampled_from([5, 5, 5, 0, -1, MAX_LEASE_TTL + 1]))
revokes = st.sampled_from([1, 1, 1, 2, 2, 3, 0, MAX_LEASE_ID, -1]).map(lambda i: kv_pb2.LeaseRevokeRequest(id=i))

# Weighted towards commands that change state; the rest are there to be refused.
def _weighted(*choices: tuple[int, Callable[[], st.SearchStrategy[Any]]]) -> st.SearchStrategy[Any]:
    # Distinct strategy objects: one_of would merge repeats of the same one.
    return st.one_of(*[make() for weight, make in choices for _ in range(weight)])


operations = _weighted(
    (5, lambda: puts.map(lambda r: store_pb2.Command(put=r))),
    (3, lambda: txns.map(lambda r: store_pb2.Command(txn=r))),
    (2, lambda: grants.map(lambda r: store_pb2.Command(lease_grant=r))),
    (2, lambda: revokes.map(lambda r: store_pb2.Command(lease_revoke=r))),
    (2, lambda: deletes.map(lambda r: store_pb2.Command(delete_range=r))),
    (1, lambda: st.integers(min_value=-1, max_value=8).map(
        lambda r: store_pb2.Command(compact=kv_pb2.CompactRequest(revision=r)))),
    (1, lambda: st.builds(store_pb2.LeaseExpire, id=lease_ids, term=fence_terms).map(
        lambda r: store_pb2.Command(lease_expire=r))),
    (1, lambda: members.map(lambda m: store_pb2.Command(member=m))),
    (1, lambda: fence_terms.map(lambda t: store_pb2.Command(fence=store_pb2.LeaderFence(term=t)))),
    (1, lambda: st.sampled_from([0, quota.MIN_QUOTA_BYTES, quota.DEFAULT_QUOTA_BYTES, quota.MAX_QUOTA_BYTES + 1]).map(
        lambda b: store_pb2.Command(quota=store_pb2.StoreQuota(bytes=b)))),
    (1, lambda: st.just(store_pb2.Command())),
)


@st.composite
def commands(draw: st.DrawFn) -> store_pb2.Command:
    command: store_pb2.Command = draw(operations)
    command.request_id = draw(request_ids)
    command.fence_term = draw(fence_terms)
    return command


@st.composite
def mutated_entries(draw: st.DrawFn) -> bytes:
    """A real log entry with bytes flipped, cut or appended: often undecodable, sometimes odd."""
    data = bytearray(store_pb2.CommandBatch(format=BATCH_FORMAT, commands=[draw(commands())]).SerializeToString())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if data:
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[i] = draw(st.integers(min_value=0, max_value=255))
    if draw(st.booleans()):
        del data[draw(st.integers(min_value=0, max_value=len(data))):]
    return bytes(data) + draw(st.binary(max_size=4))


# A compaction a few revisions back from the current one, whatever that is when it is applied.
compact_back = st.integers(min_value=0, max_value=3).map(lambda back: ("compact", back))

steps = st.lists(_weighted((12, commands), (1, lambda: compact_back), (1, mutated_entries),
                           (1, lambda: st.binary(max_size=12))),
                 min_size=20, max_size=60)


Step = store_pb2.Command | bytes | tuple[str, int]


def _resolve(step: Step, model: Model) -> store_pb2.Command | bytes:
    if isinstance(step, tuple):
        return store_pb2.Command(compact=kv_pb2.CompactRequest(revision=model.revision - step[1]))
    return step


def _entry(step: store_pb2.Command | bytes) -> bytes:
    if isinstance(step, bytes):
        return step
    return store_pb2.CommandBatch(format=BATCH_FORMAT, commands=[step]).SerializeToString()


def _snapshot(m: StateMachine) -> bytes:
    return dump_state(m).SerializeToString()


@settings(max_examples=200, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, split=st.integers(min_value=0, max_value=60))
def test_apply_is_total_deterministic_and_agrees_with_the_model(
        steps: list[Step], split: int) -> None:
    # Named differently, as replicas are: names must not leak into replicated state.
    direct = StateMachine("m1")
    logged = StateMachine("master-two")
    restored: StateMachine | None = None
    model = Model()
    for i, drawn in enumerate(steps):
        step = _resolve(drawn, model)
        if i == min(split, len(steps)):
            restored = StateMachine("m3")
            load_state(restored, store_pb2.Snapshot.FromString(_snapshot(direct)))
            assert restored.usage == direct.usage
        if isinstance(step, bytes):
            got = [norm(r) for r in direct.apply_batch(step)]
            want = model.apply_entry(step)
        else:
            got = [norm(direct.apply(copy.deepcopy(step)))]
            want = [model.apply(step)]
        assert got == want, f"step {i}: {step!r}"
        assert [norm(r) for r in logged.apply_batch(_entry(step))] == got
        if restored is not None:
            assert [norm(r) for r in restored.apply_batch(_entry(step))] == got
        assert _state(direct) == model.current
        assert (direct.revision, direct.index.compact_revision) == (model.revision, model.compact_revision)
    snapshot = _snapshot(direct)
    assert _snapshot(logged) == snapshot
    if restored is not None:
        assert _snapshot(restored) == snapshot
    again = StateMachine("m4")
    load_state(again, store_pb2.Snapshot.FromString(snapshot))
    assert (again.usage, again.alarms) == (direct.usage, direct.alarms)
    assert _snapshot(again) == snapshot
