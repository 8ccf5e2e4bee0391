"""dump_state / load_state: a snapshot restores everything a replica's behaviour depends on."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import cluster_pb2, kv_pb2, store_pb2
from raftorch.errors import Compacted
from raftorch.store.machine import StateMachine, to_event
from raftorch.store.snapshot import SNAPSHOT_FORMAT, dump_state, load_state


def _apply(m: StateMachine, command: store_pb2.Command) -> store_pb2.CommandResult:
    result = m.apply(command)
    assert result.WhichOneof("result") != "error", result.error
    return result


def _put(m: StateMachine, key: str, value: bytes, lease: int = 0, request_id: str = "") -> store_pb2.CommandResult:
    return _apply(m, store_pb2.Command(request_id=request_id,
                                       put=kv_pb2.PutRequest(key=key, value=value, lease=lease)))


def _delete(m: StateMachine, key: str) -> None:
    _apply(m, store_pb2.Command(delete_range=kv_pb2.DeleteRangeRequest(key=key)))


def _grant(m: StateMachine, ttl: int) -> int:
    return _apply(m, store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=ttl))).lease_grant.id


def _restored(m: StateMachine) -> StateMachine:
    """Round trip through the serialized bytes, as the dump file does."""
    data = dump_state(m).SerializeToString()
    fresh = StateMachine("other")
    load_state(fresh, store_pb2.Snapshot.FromString(data))
    return fresh


def _range(m: StateMachine, key: str = "", prefix: bool = True, revision: int = 0) -> list[kv_pb2.KeyValue]:
    return list(m.range(kv_pb2.RangeRequest(key=key, prefix=prefix, revision=revision)).kvs)


def _events_since(m: StateMachine, revision: int) -> list[tuple[int, kv_pb2.KeyEvent]]:
    return [(rev, to_event(change)) for rev, change in m.index.changes_since(revision)]


def _populated() -> StateMachine:
    """A machine with overwrites, deletes, leases, members, dedup entries and a fence."""
    m = StateMachine("m1")
    _apply(m, store_pb2.Command(fence=store_pb2.LeaderFence(term=4, leader="m1")))
    lease = _grant(m, ttl=30)
    spare = _grant(m, ttl=60)
    _put(m, "a", b"1", request_id="req-a")          # 1
    _put(m, "a", b"2")                               # 2
    _put(m, "gone", b"x")                            # 3
    _delete(m, "gone")                               # 4
    _put(m, "leased/1", b"l1", lease=lease)          # 5
    _put(m, "leased/2", b"l2", lease=lease)          # 6
    _put(m, "empty", b"")                            # 7
    _apply(m, store_pb2.Command(txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="t/1", value=b"t")),
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="t/2", value=b"t", lease=spare)),
    ])))                                             # 8
    for name in ("m1", "m2"):
        _apply(m, store_pb2.Command(member=cluster_pb2.Member(
            name=name, client_addr=f"{name}:2379", peer_addr=f"{name}:2380")))
    m.apply(store_pb2.Command(request_id="req-bad", put=kv_pb2.PutRequest(key="z", lease=999)))
    return m


def test_round_trip_preserves_revisions_and_counters() -> None:
    m = _populated()
    r = _restored(m)
    assert (r.revision, r.index.compact_revision, r.next_lease_id, r.fence_term) == (8, 0, 3, 4)


def test_round_trip_preserves_current_keys_and_metadata() -> None:
    m = _populated()
    assert _range(_restored(m)) == _range(m)
    assert [kv.key for kv in _range(m)] == ["a", "empty", "leased/1", "leased/2", "t/1", "t/2"]


def test_round_trip_keeps_empty_value_alive_and_deleted_key_deleted() -> None:
    r = _restored(_populated())
    (empty,) = _range(r, "empty", prefix=False)
    assert empty.value == b""
    assert _range(r, "gone", prefix=False) == []


def test_round_trip_preserves_past_revisions() -> None:
    m = _populated()
    r = _restored(m)
    for revision in range(1, m.revision + 1):
        assert _range(r, revision=revision) == _range(m, revision=revision), revision
    (old,) = _range(r, "a", prefix=False, revision=1)
    assert old.value == b"1"
    (gone,) = _range(r, "gone", prefix=False, revision=3)
    assert gone.value == b"x"


def test_round_trip_preserves_history_for_watch_replay() -> None:
    m = _populated()
    r = _restored(m)
    assert _events_since(r, 1) == _events_since(m, 1)
    kinds = [(rev, e.type, e.kv.key) for rev, e in _events_since(r, 3)]
    assert kinds[:2] == [(3, kv_pb2.KeyEvent.PUT, "gone"), (4, kv_pb2.KeyEvent.DELETE, "gone")]
    deleted = next(e for rev, e in _events_since(r, 4) if rev == 4)
    assert deleted.prev_kv.value == b"x"


def test_round_trip_preserves_leases_and_attached_keys() -> None:
    m = _populated()
    r = _restored(m)
    assert {i: (lease.ttl, lease.keys) for i, lease in r.leases.items()} == {
        1: (30, {"leased/1", "leased/2"}), 2: (60, {"t/2"})}


def test_revoke_after_restore_deletes_attached_keys() -> None:
    r = _restored(_populated())
    _apply(r, store_pb2.Command(lease_revoke=kv_pb2.LeaseRevokeRequest(id=1)))
    assert r.revision == 9
    assert [kv.key for kv in _range(r, "leased/")] == []
    assert {c.kv.key for c in r.take_changes()} == {"leased/1", "leased/2"}


def test_restore_does_not_attach_keys_whose_lease_moved_or_was_removed() -> None:
    m = StateMachine()
    lease = _grant(m, ttl=5)
    _put(m, "k", b"1", lease=lease)
    _put(m, "k", b"2")
    _put(m, "d", b"1", lease=lease)
    _delete(m, "d")
    assert _restored(m).leases[lease].keys == set()


def test_round_trip_preserves_dedup_table_in_order() -> None:
    m = _populated()
    r = _restored(m)
    assert list(r.dedup) == ["req-a", "req-bad"]
    assert r.dedup["req-bad"] == m.dedup["req-bad"]
    retried = r.apply(store_pb2.Command(request_id="req-a", put=kv_pb2.PutRequest(key="a", value=b"1")))
    # The first answer again, given in the name of the replica that answers now.
    assert retried.put.header.revision == m.dedup["req-a"].put.header.revision == 1
    assert retried.put.header.member == "other"
    assert r.revision == 8


def test_round_trip_preserves_members() -> None:
    m = _populated()
    assert _restored(m).members == m.members


def test_fence_term_survives_restore_and_still_rejects_stale_expiry() -> None:
    r = _restored(_populated())
    result = r.apply(store_pb2.Command(lease_expire=store_pb2.LeaseExpire(id=1, term=3)))
    assert result.error.code == "INVALID"
    assert 1 in r.leases


def test_new_lease_ids_continue_after_restore() -> None:
    r = _restored(_populated())
    assert _grant(r, ttl=1) == 3


def test_round_trip_after_compaction_keeps_compaction() -> None:
    m = _populated()
    _apply(m, store_pb2.Command(compact=kv_pb2.CompactRequest(revision=5)))
    r = _restored(m)
    assert r.index.compact_revision == 5
    with pytest.raises(Compacted):
        _range(r, revision=4)
    with pytest.raises(Compacted):
        r.index.changes_since(4)
    assert _range(r, revision=5) == _range(m, revision=5)
    assert _events_since(r, 5) == _events_since(m, 5)


def test_restored_machine_keeps_writing_like_the_original() -> None:
    m = _populated()
    r = _restored(m)
    for machine in (m, r):
        _put(machine, "a", b"3")
        _delete(machine, "t/1")
    assert _range(r) == _range(m)
    assert _events_since(r, 1) == _events_since(m, 1)


def test_dump_of_restored_machine_is_identical() -> None:
    m = _populated()
    assert dump_state(_restored(m)) == dump_state(m)


def test_empty_machine_round_trips() -> None:
    r = _restored(StateMachine())
    assert (r.revision, r.next_lease_id, r.fence_term) == (0, 1, 0)
    assert _range(r) == []
    assert r.leases == {}


def test_load_replaces_existing_state() -> None:
    target = _populated()
    load_state(target, dump_state(StateMachine()))
    assert target.revision == 0
    assert _range(target) == []
    assert (target.leases, target.members, len(target.dedup)) == ({}, {}, 0)


def test_unknown_snapshot_format_is_refused() -> None:
    snap = dump_state(_populated())
    snap.format = SNAPSHOT_FORMAT + 1
    target = StateMachine()
    with pytest.raises(RuntimeError, match="format"):
        load_state(target, snap)
    assert target.revision == 0
