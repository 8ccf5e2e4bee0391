"""The store's byte quota (NOSPACE and its alarm) and the byte bound on watch history."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.errors import NoSpace, error_for_code
from raftorch.store import machine as machine_module
from raftorch.store import quota
from raftorch.store.machine import StateMachine
from raftorch.store.snapshot import dump_state, load_state

MIB = quota.MIB


def _set_quota(m: StateMachine, size: int, fence_term: int = 0) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(quota=store_pb2.StoreQuota(bytes=size), fence_term=fence_term))


def _put(m: StateMachine, key: str, value: bytes, lease: int = 0) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(put=kv_pb2.PutRequest(key=key, value=value, lease=lease)))


def _delete(m: StateMachine, key: str, prefix: bool = False) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(delete_range=kv_pb2.DeleteRangeRequest(key=key, prefix=prefix)))


def _compact(m: StateMachine, revision: int) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(compact=kv_pb2.CompactRequest(revision=revision)))


def _code(result: store_pb2.CommandResult) -> str:
    return result.error.code if result.WhichOneof("result") == "error" else "OK"


def _restored(m: StateMachine) -> StateMachine:
    fresh = StateMachine("other")
    load_state(fresh, store_pb2.Snapshot.FromString(dump_state(m).SerializeToString()))
    return fresh


def _full_machine() -> StateMachine:
    """A 1 MiB store filled with 100 KiB values until a put is refused."""
    m = StateMachine()
    assert _code(_set_quota(m, 1 * MIB)) == "OK"
    i = 0
    while _code(_put(m, f"k/{i:03d}", b"x" * 100_000)) == "OK":
        i += 1
    return m


# -- the quota ---------------------------------------------------------------------------


def test_default_quota_is_512_mib() -> None:
    assert StateMachine().quota_bytes == 512 * MIB


def test_write_over_the_quota_gets_nospace_and_changes_nothing() -> None:
    m = StateMachine()
    _set_quota(m, 1 * MIB)
    assert _code(_put(m, "small", b"x" * 1000)) == "OK"
    before = dump_state(m).SerializeToString()
    result = _put(m, "big", b"x" * (1 * MIB))
    assert _code(result) == "NOSPACE"
    assert "database space exceeded" in result.error.message
    err = error_for_code(result.error.code, result.error.message)
    assert isinstance(err, NoSpace)
    assert err.grpc_code.name == "RESOURCE_EXHAUSTED"
    assert m.revision == 1
    # A single write too big for an almost empty store does not mean the store is full.
    assert m.alarms == []
    assert dump_state(m).SerializeToString() == before


def test_usage_counts_values_history_leases_and_dedup() -> None:
    m = StateMachine()
    empty = m.usage
    _put(m, "a", b"x" * 1000)
    after_put = m.usage
    assert after_put - empty >= 2000  # the version and its history entry
    m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5)))
    assert m.usage == after_put + quota.LEASE_BYTES
    m.apply(store_pb2.Command(request_id="r" * 100, put=kv_pb2.PutRequest(key="a", value=b"y")))
    assert m.usage > after_put + quota.LEASE_BYTES + 100


def test_full_store_raises_the_alarm_and_refuses_puts_txns_and_leases() -> None:
    m = _full_machine()
    assert m.alarms == ["NOSPACE"]
    assert _code(_put(m, "more", b"x" * 100_000)) == "NOSPACE"
    txn = store_pb2.Command(txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key="k/000")),
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="t", value=b"x" * 100_000)),
    ]))
    revision = m.revision
    assert _code(m.apply(txn)) == "NOSPACE"
    assert m.revision == revision  # all or nothing: the delete in it did not happen either
    usage = m.usage
    while usage + quota.LEASE_BYTES <= m.quota_bytes:  # fill the last bytes with leases
        assert _code(m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5)))) == "OK"
        usage = m.usage
    assert _code(m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5)))) == "NOSPACE"


def test_deletes_and_compaction_stay_allowed_and_clear_the_alarm() -> None:
    m = _full_machine()
    assert m.alarms == ["NOSPACE"]
    assert _code(_delete(m, "k/", prefix=True)) == "OK"
    if m.alarms:  # deleted values stay until the history is compacted past the delete
        assert _code(_compact(m, m.revision)) == "OK"
    assert m.alarms == []
    assert _code(_put(m, "again", b"x" * 100_000)) == "OK"
    # The delete's history (which records the deleted values) is compacted away in turn.
    assert m.usage < m.quota_bytes // 2


def test_a_txn_that_only_deletes_is_allowed_when_full() -> None:
    m = _full_machine()
    txn = store_pb2.Command(txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key="k/000")),
        kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key="k/001")),
    ]))
    assert _code(m.apply(txn)) == "OK"


def test_lease_revocation_is_allowed_when_full() -> None:
    m = StateMachine()
    _set_quota(m, 1 * MIB)
    lease = m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5))).lease_grant.id
    while _code(_put(m, f"k/{m.revision}", b"x" * 100_000, lease=lease)) == "OK":
        pass
    assert _code(m.apply(store_pb2.Command(lease_revoke=kv_pb2.LeaseRevokeRequest(id=lease)))) == "OK"
    assert m.index.current("k/1") is None


def test_lowering_the_quota_below_usage_raises_the_alarm_and_raising_it_clears_it() -> None:
    m = StateMachine()
    for i in range(30):
        _put(m, f"k/{i}", b"x" * 100_000)
    assert _code(_set_quota(m, 2 * MIB)) == "OK"
    assert m.alarms == ["NOSPACE"]
    assert _code(_put(m, "one-more", b"x")) == "NOSPACE"
    assert _code(_set_quota(m, 64 * MIB)) == "OK"
    assert m.alarms == []
    assert _code(_put(m, "one-more", b"x")) == "OK"


def test_quota_out_of_range_is_invalid() -> None:
    m = StateMachine()
    for size in (0, -1, quota.MIN_QUOTA_BYTES - 1, quota.MAX_QUOTA_BYTES + 1):
        assert _code(_set_quota(m, size)) == "INVALID"
    assert m.quota_bytes == quota.DEFAULT_QUOTA_BYTES


def test_quota_from_a_deposed_leader_is_rejected() -> None:
    m = StateMachine()
    m.apply(store_pb2.Command(fence=store_pb2.LeaderFence(term=3)))
    assert _code(_set_quota(m, 8 * MIB, fence_term=2)) == "CONFLICT"
    assert _code(_set_quota(m, 8 * MIB, fence_term=3)) == "OK"
    assert m.quota_bytes == 8 * MIB


def test_quota_alarm_and_usage_survive_a_snapshot() -> None:
    m = _full_machine()
    r = _restored(m)
    assert (r.quota_bytes, r.alarms, r.usage) == (m.quota_bytes, m.alarms, m.usage)
    assert _code(_put(r, "more", b"x" * 100_000)) == "NOSPACE"


def test_snapshot_without_quota_fields_loads_with_the_default() -> None:
    m = StateMachine()
    _put(m, "a", b"1")
    snap = dump_state(m)
    snap.ClearField("quota_bytes")
    del snap.alarms[:]
    fresh = StateMachine()
    load_state(fresh, store_pb2.Snapshot.FromString(snap.SerializeToString()))
    assert fresh.quota_bytes == quota.DEFAULT_QUOTA_BYTES
    assert fresh.alarms == []
    assert fresh.usage == m.usage


# -- history bounded by bytes ------------------------------------------------------------


def test_history_is_bounded_by_bytes_as_well_as_by_revisions() -> None:
    # 200 overwrites of a 32 KiB value: 6.4 MB of values, far fewer revisions than the
    # revision bound. On the landed main all of it stayed in the history and the snapshot.
    m = StateMachine()
    _set_quota(m, 8 * MIB)
    for i in range(200):
        assert _code(_put(m, "hot", bytes([i % 256]) * 32 * 1024)) == "OK"
    limit = quota.history_limit(8 * MIB)
    assert m.index.history_bytes <= limit
    assert m.index.compact_revision > 0
    assert len(dump_state(m).SerializeToString()) < 2 * limit
    assert m.usage < m.quota_bytes // 2
    assert _restored(m).usage == m.usage  # the running count matches a count from scratch
    # What is kept is the newest history, and it is served.
    assert m.index.changes_since(m.revision)[-1][1].kv.value == bytes([199]) * 32 * 1024


def test_history_compaction_by_bytes_keeps_a_single_large_revision() -> None:
    m = StateMachine()
    _set_quota(m, 1 * MIB)
    txn = store_pb2.Command(txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=f"t/{i}", value=b"x" * 60_000)) for i in range(5)]))
    assert _code(m.apply(txn)) == "OK"
    assert _code(_put(m, "after", b"y")) == "OK"
    # The txn's own entries exceeded half the bound; the newest revision's are always kept.
    assert m.index.compact_revision == m.revision
    assert [change.kv.key for _, change in m.index.changes_since(m.revision)] == ["after"]


def test_deduplication_table_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A txn that reads much, retried by id, must not keep a copy of the store per request id.
    monkeypatch.setattr(machine_module, "DEDUP_MAX_BYTES", 100_000)
    m = StateMachine()
    for i in range(10):
        _put(m, f"k/{i}", b"x" * 5000)
    read_all = kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key="k/", prefix=True))])
    for i in range(10):
        assert _code(m.apply(store_pb2.Command(request_id=f"r{i}", txn=read_all))) == "OK"
    assert m.dedup_bytes <= 100_000
    assert list(m.dedup)[-1] == "r9" and "r0" not in m.dedup
    assert m.dedup_bytes == sum(machine_module.dedup_size(rid, r) for rid, r in m.dedup.items())
