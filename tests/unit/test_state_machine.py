"""StateMachine.apply: KV writes, txn, compaction, leases, members, dedup, batches."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import cluster_pb2, kv_pb2, store_pb2
from raftorch.errors import Compacted, Invalid
from raftorch.store import machine as machine_module
from raftorch.store.machine import BATCH_FORMAT, StateMachine, to_event, to_kv
from raftorch.store.mvcc import Change, Version

Cmp = kv_pb2.Compare


# -- helpers --------------------------------------------------------------------------


def _ok(result: store_pb2.CommandResult) -> store_pb2.CommandResult:
    assert result.WhichOneof("result") != "error", result.error
    return result


def _error_code(result: store_pb2.CommandResult) -> str:
    assert result.WhichOneof("result") == "error", result
    return result.error.code


def _put(m: StateMachine, key: str, value: bytes = b"v", lease: int = 0, prev_kv: bool = False,
         request_id: str = "") -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(
        request_id=request_id, put=kv_pb2.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv)))


def _delete(m: StateMachine, key: str, prefix: bool = False, prev_kv: bool = False,
            request_id: str = "") -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(
        request_id=request_id, delete_range=kv_pb2.DeleteRangeRequest(key=key, prefix=prefix, prev_kv=prev_kv)))


def _get(m: StateMachine, key: str, revision: int = 0) -> kv_pb2.KeyValue | None:
    resp = m.range(kv_pb2.RangeRequest(key=key, revision=revision))
    return resp.kvs[0] if resp.kvs else None


def _value(m: StateMachine, key: str, revision: int = 0) -> bytes | None:
    kv = _get(m, key, revision)
    return kv.value if kv is not None else None


def _keys(m: StateMachine, prefix: str) -> list[str]:
    return [kv.key for kv in m.range(kv_pb2.RangeRequest(key=prefix, prefix=True)).kvs]


def _grant(m: StateMachine, ttl: int = 10, lease_id: int = 0) -> int:
    result = _ok(m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=ttl, id=lease_id))))
    return result.lease_grant.id


def _revoke(m: StateMachine, lease_id: int) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(lease_revoke=kv_pb2.LeaseRevokeRequest(id=lease_id)))


def _expire(m: StateMachine, lease_id: int, term: int) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(lease_expire=store_pb2.LeaseExpire(id=lease_id, term=term)))


def _fence(m: StateMachine, term: int) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(fence=store_pb2.LeaderFence(term=term, leader="m1")))


def _compact(m: StateMachine, revision: int) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(compact=kv_pb2.CompactRequest(revision=revision)))


def _cmp(key: str, target: kv_pb2.Compare.Target.ValueType, result: kv_pb2.Compare.Result.ValueType,
         **want: int | bytes) -> kv_pb2.Compare:
    return kv_pb2.Compare(key=key, target=target, result=result, **want)  # type: ignore[arg-type]


def _put_op(key: str, value: bytes = b"v", lease: int = 0) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value, lease=lease))


def _delete_op(key: str, prefix: bool = False) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=key, prefix=prefix))


def _range_op(key: str, revision: int = 0) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=key, revision=revision))


def _txn(m: StateMachine, compare: list[kv_pb2.Compare], success: list[kv_pb2.RequestOp],
         failure: list[kv_pb2.RequestOp] | None = None, request_id: str = "") -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(request_id=request_id, txn=kv_pb2.TxnRequest(
        compare=compare, success=success, failure=failure or [])))


def _batch(*commands: store_pb2.Command, fmt: int = BATCH_FORMAT) -> bytes:
    return store_pb2.CommandBatch(format=fmt, commands=list(commands)).SerializeToString()


def _machine_with(*keys: str) -> StateMachine:
    m = StateMachine("m1")
    for key in keys:
        _ok(_put(m, key, key.encode()))
    return m


# -- revisions ------------------------------------------------------------------------


def test_each_write_request_bumps_revision_by_one() -> None:
    m = StateMachine()
    assert m.revision == 0
    _ok(_put(m, "a"))
    assert m.revision == 1
    _ok(_put(m, "a"))
    assert m.revision == 2
    _ok(_delete(m, "a"))
    assert m.revision == 3


def test_delete_of_missing_key_does_not_bump_revision() -> None:
    m = _machine_with("a")
    result = _ok(_delete(m, "missing"))
    assert result.delete_range.deleted == 0
    assert result.delete_range.header.revision == 1
    assert m.revision == 1
    assert m.take_changes()[-1].kv.key == "a"


def test_prefix_delete_is_one_revision_for_all_keys() -> None:
    m = _machine_with("p/1", "p/2", "q")
    result = _ok(_delete(m, "p/", prefix=True))
    assert result.delete_range.deleted == 2
    assert m.revision == 4
    assert _keys(m, "") == ["q"]


def test_put_response_header_carries_new_revision_and_member() -> None:
    m = _machine_with("a")
    header = _ok(_put(m, "b")).put.header
    assert (header.member, header.revision) == ("m1", 2)


def test_header_reports_raft_term_given() -> None:
    m = _machine_with("a")
    assert m.header(raft_term=7) == kv_pb2.ResponseHeader(member="m1", revision=1, raft_term=7)


# -- put / range ------------------------------------------------------------------------


def test_put_then_get_returns_etcd_like_metadata() -> None:
    m = StateMachine()
    _put(m, "a", b"1")
    _put(m, "b", b"x")
    _put(m, "a", b"2")
    kv = _get(m, "a")
    assert kv == kv_pb2.KeyValue(key="a", value=b"2", create_revision=1, mod_revision=3, version=2)


def test_version_resets_after_delete() -> None:
    m = _machine_with("a")
    _put(m, "a")
    _delete(m, "a")
    _put(m, "a", b"new")
    kv = _get(m, "a")
    assert kv is not None
    assert (kv.version, kv.create_revision, kv.mod_revision) == (1, 4, 4)


def test_put_prev_kv_returns_replaced_value() -> None:
    m = _machine_with("a")
    resp = _ok(_put(m, "a", b"2", prev_kv=True)).put
    assert resp.HasField("prev_kv")
    assert resp.prev_kv.value == b"a"
    assert resp.prev_kv.mod_revision == 1


def test_put_prev_kv_absent_for_new_key_or_when_not_asked() -> None:
    m = StateMachine()
    assert not _ok(_put(m, "a", prev_kv=True)).put.HasField("prev_kv")
    assert not _ok(_put(m, "a")).put.HasField("prev_kv")


def test_prefix_range_is_sorted_and_excludes_non_matching() -> None:
    m = _machine_with("k/b", "k", "k/a", "j", "l", "k/c/1", "kk")
    assert _keys(m, "k/") == ["k/a", "k/b", "k/c/1"]


def test_range_limit_sets_more_and_counts_everything() -> None:
    m = _machine_with("p/1", "p/2", "p/3", "q")
    resp = m.range(kv_pb2.RangeRequest(key="p/", prefix=True, limit=2))
    assert [kv.key for kv in resp.kvs] == ["p/1", "p/2"]
    assert resp.more
    assert resp.count == 3


def test_range_limit_equal_to_count_has_no_more() -> None:
    m = _machine_with("p/1", "p/2")
    resp = m.range(kv_pb2.RangeRequest(key="p/", prefix=True, limit=2))
    assert len(resp.kvs) == 2
    assert not resp.more
    assert resp.count == 2


def test_range_count_only_returns_no_kvs() -> None:
    m = _machine_with("p/1", "p/2")
    resp = m.range(kv_pb2.RangeRequest(key="p/", prefix=True, count_only=True))
    assert resp.count == 2
    assert list(resp.kvs) == []


def test_range_keys_only_blanks_values() -> None:
    m = _machine_with("p/1")
    (kv,) = m.range(kv_pb2.RangeRequest(key="p/", prefix=True, keys_only=True)).kvs
    assert (kv.key, kv.value, kv.version) == ("p/1", b"", 1)


def test_range_header_is_current_revision() -> None:
    m = _machine_with("a", "b")
    assert m.range(kv_pb2.RangeRequest(key="a")).header.revision == 2


def test_range_at_past_revision_returns_old_value() -> None:
    m = StateMachine()
    _put(m, "a", b"1")
    _put(m, "a", b"2")
    _delete(m, "a")
    assert _value(m, "a", revision=1) == b"1"
    assert _value(m, "a", revision=2) == b"2"
    assert _value(m, "a") is None


def test_range_at_future_revision_is_invalid() -> None:
    m = _machine_with("a")
    with pytest.raises(Invalid):
        m.range(kv_pb2.RangeRequest(key="a", revision=2))


def test_range_at_compacted_revision_raises_compacted() -> None:
    m = _machine_with("a", "b", "c")
    _ok(_compact(m, 3))
    with pytest.raises(Compacted):
        m.range(kv_pb2.RangeRequest(key="a", revision=2))


def test_delete_prev_kv_returns_deleted_values() -> None:
    m = _machine_with("p/1", "p/2")
    resp = _ok(_delete(m, "p/", prefix=True, prev_kv=True)).delete_range
    assert [(kv.key, kv.value) for kv in resp.prev_kvs] == [("p/1", b"p/1"), ("p/2", b"p/2")]
    assert resp.header.revision == 3


def test_unknown_command_is_invalid_and_changes_nothing() -> None:
    m = _machine_with("a")
    assert _error_code(m.apply(store_pb2.Command())) == "INVALID"
    assert m.revision == 1


# -- changes for watchers -------------------------------------------------------------------


def test_take_changes_returns_and_clears_changes() -> None:
    m = StateMachine()
    _put(m, "a")
    _delete(m, "a")
    changes = m.take_changes()
    assert [(c.kv.key, c.kv.alive) for c in changes] == [("a", True), ("a", False)]
    assert m.take_changes() == []


def test_to_event_types_and_prev_kv() -> None:
    prev = Version("a", b"1", 1, 1, 1, 0)
    put = to_event(Change(Version("a", b"2", 1, 2, 2, 0), prev))
    assert put.type == kv_pb2.KeyEvent.PUT
    assert put.prev_kv.value == b"1"
    delete = to_event(Change(Version("a", None, 0, 3, 0, 0), prev), prev_kv=False)
    assert delete.type == kv_pb2.KeyEvent.DELETE
    assert not delete.HasField("prev_kv")
    assert delete.kv.mod_revision == 3


def test_to_kv_keys_only() -> None:
    assert to_kv(Version("a", b"x", 1, 2, 3, 4), keys_only=True) == kv_pb2.KeyValue(
        key="a", create_revision=1, mod_revision=2, version=3, lease=4)


# -- txn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "want", "expected"),
    [
        (Cmp.EQUAL, b"v1", True),
        (Cmp.EQUAL, b"other", False),
        (Cmp.NOT_EQUAL, b"other", True),
        (Cmp.NOT_EQUAL, b"v1", False),
        (Cmp.GREATER, b"v0", True),
        (Cmp.GREATER, b"v2", False),
        (Cmp.LESS, b"v2", True),
        (Cmp.LESS, b"v1", False),
    ],
)
def test_txn_compare_value(result: kv_pb2.Compare.Result.ValueType, want: bytes, expected: bool) -> None:
    m = StateMachine()
    _put(m, "k", b"v1")
    resp = _ok(_txn(m, [_cmp("k", Cmp.VALUE, result, value=want)], [])).txn
    assert resp.succeeded is expected


def test_txn_compare_value_of_missing_key_fails() -> None:
    m = StateMachine()
    for result in (Cmp.EQUAL, Cmp.NOT_EQUAL, Cmp.GREATER, Cmp.LESS):
        assert not _ok(_txn(m, [_cmp("k", Cmp.VALUE, result, value=b"")], [])).txn.succeeded


@pytest.mark.parametrize(
    ("target", "field", "have"),
    [
        (Cmp.VERSION, "version", 2),
        (Cmp.CREATE, "create_revision", 2),
        (Cmp.MOD, "mod_revision", 4),
        (Cmp.LEASE, "lease", 1),
    ],
)
@pytest.mark.parametrize(
    ("result", "delta", "expected"),
    [
        (Cmp.EQUAL, 0, True),
        (Cmp.EQUAL, 1, False),
        (Cmp.NOT_EQUAL, 1, True),
        (Cmp.NOT_EQUAL, 0, False),
        (Cmp.GREATER, -1, True),
        (Cmp.GREATER, 0, False),
        (Cmp.LESS, 1, True),
        (Cmp.LESS, 0, False),
    ],
)
def test_txn_compare_numeric_targets(target: kv_pb2.Compare.Target.ValueType, field: str, have: int,
                                     result: kv_pb2.Compare.Result.ValueType, delta: int, expected: bool) -> None:
    m = StateMachine()
    lease = _grant(m)
    _put(m, "other")                       # revision 1
    _put(m, "k", b"1")                     # revision 2: create
    _put(m, "other")                       # revision 3
    _put(m, "k", b"2", lease=lease)        # revision 4: mod, version 2, lease 1
    resp = _ok(_txn(m, [_cmp("k", target, result, **{field: have + delta})], [])).txn
    assert resp.succeeded is expected


def test_txn_compare_missing_key_numeric_targets_are_zero() -> None:
    m = StateMachine()
    compares = [
        _cmp("k", Cmp.VERSION, Cmp.EQUAL, version=0),
        _cmp("k", Cmp.CREATE, Cmp.EQUAL, create_revision=0),
        _cmp("k", Cmp.MOD, Cmp.EQUAL, mod_revision=0),
        _cmp("k", Cmp.LEASE, Cmp.EQUAL, lease=0),
    ]
    assert _ok(_txn(m, compares, [])).txn.succeeded


def test_txn_all_compares_must_hold() -> None:
    m = _machine_with("a", "b")
    compares = [_cmp("a", Cmp.VALUE, Cmp.EQUAL, value=b"a"), _cmp("b", Cmp.VALUE, Cmp.EQUAL, value=b"x")]
    resp = _ok(_txn(m, compares, [_put_op("s")], [_put_op("f")])).txn
    assert not resp.succeeded
    assert _keys(m, "") == ["a", "b", "f"]


def test_txn_success_branch_runs_when_compare_holds() -> None:
    m = _machine_with("lock")
    resp = _ok(_txn(m, [_cmp("lock", Cmp.VERSION, Cmp.EQUAL, version=1)],
                    [_put_op("won", b"yes")], [_put_op("lost", b"yes")])).txn
    assert resp.succeeded
    assert _value(m, "won") == b"yes"
    assert _value(m, "lost") is None
    assert resp.responses[0].WhichOneof("response") == "response_put"


def test_txn_failure_branch_runs_when_compare_fails() -> None:
    m = _machine_with("lock")
    resp = _ok(_txn(m, [_cmp("lock", Cmp.VERSION, Cmp.EQUAL, version=5)],
                    [_put_op("won")], [_put_op("lost", b"yes"), _range_op("lock")])).txn
    assert not resp.succeeded
    assert _value(m, "lost") == b"yes"
    assert _value(m, "won") is None
    assert resp.responses[1].response_range.kvs[0].key == "lock"


def test_txn_writes_share_one_revision() -> None:
    m = _machine_with("old/1", "old/2")
    resp = _ok(_txn(m, [], [_put_op("a"), _put_op("b"), _delete_op("old/", prefix=True)])).txn
    assert m.revision == 3
    assert resp.header.revision == 3
    a, b = _get(m, "a"), _get(m, "b")
    assert a is not None and b is not None
    assert a.mod_revision == b.mod_revision == 3
    assert resp.responses[2].response_delete_range.deleted == 2
    assert {c.kv.mod_revision for c in m.take_changes()[-4:]} == {3}


def test_txn_without_writes_does_not_bump_revision() -> None:
    m = _machine_with("a")
    resp = _ok(_txn(m, [], [_range_op("a"), _delete_op("missing")])).txn
    assert m.revision == 1
    assert resp.responses[0].response_range.kvs[0].value == b"a"
    assert resp.responses[1].response_delete_range.deleted == 0


def test_txn_empty_branch_does_not_bump_revision() -> None:
    m = _machine_with("a")
    resp = _ok(_txn(m, [_cmp("a", Cmp.VERSION, Cmp.EQUAL, version=9)], [_put_op("x")])).txn
    assert not resp.succeeded
    assert len(resp.responses) == 0
    assert m.revision == 1


def test_txn_range_sees_earlier_puts_of_same_txn() -> None:
    m = StateMachine()
    resp = _ok(_txn(m, [], [_put_op("a", b"new"), _range_op("a")])).txn
    assert resp.responses[1].response_range.kvs[0].value == b"new"


def test_txn_put_with_unknown_lease_fails_without_any_write() -> None:
    m = _machine_with("a")
    result = _txn(m, [], [_put_op("b"), _put_op("c", lease=42)])
    assert _error_code(result) == "NOT_FOUND"
    assert m.revision == 1
    assert _keys(m, "") == ["a"]


def test_txn_with_invalid_range_revision_changes_nothing() -> None:
    m = _machine_with("a")
    m.take_changes()
    result = _txn(m, [], [_put_op("b", b"written"), _range_op("a", revision=99)])
    assert _error_code(result) == "INVALID"
    assert _value(m, "b") is None
    assert m.revision == 1
    assert m.take_changes() == []


def test_txn_put_attaches_lease() -> None:
    m = StateMachine()
    lease = _grant(m)
    _ok(_txn(m, [], [_put_op("k", lease=lease)]))
    assert m.leases[lease].keys == {"k"}


# -- compaction ---------------------------------------------------------------------------


def test_compact_command_compacts_and_does_not_bump_revision() -> None:
    m = _machine_with("a", "b", "c")
    resp = _ok(_compact(m, 2)).compact
    assert resp.header.revision == 3
    assert m.index.compact_revision == 2
    assert m.revision == 3


def test_compact_errors_are_results() -> None:
    m = _machine_with("a", "b")
    assert _error_code(_compact(m, 5)) == "INVALID"
    _ok(_compact(m, 2))
    assert _error_code(_compact(m, 1)) == "COMPACTED"


def test_automatic_compaction_keeps_retained_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "HISTORY_RETAIN", 3)
    m = StateMachine()
    for i in range(5):
        _put(m, "k", str(i).encode())
    assert m.index.compact_revision == 0
    _put(m, "k", b"5")
    assert m.revision == 6
    assert m.index.compact_revision == 3
    assert _value(m, "k", revision=3) == b"2"
    with pytest.raises(Compacted):
        m.range(kv_pb2.RangeRequest(key="k", revision=2))


# -- dedup ---------------------------------------------------------------------------------


def test_retried_put_is_applied_once_with_same_result() -> None:
    m = StateMachine()
    first = _ok(_put(m, "a", b"1", request_id="r1"))
    _put(m, "b")
    again = _put(m, "a", b"1", request_id="r1")
    assert again == first
    assert m.revision == 2
    kv = _get(m, "a")
    assert kv is not None
    assert kv.version == 1


def test_retried_delete_and_txn_are_applied_once() -> None:
    m = _machine_with("a")
    first = _delete(m, "a", request_id="d")
    _put(m, "a", b"again")
    assert _delete(m, "a", request_id="d") == first
    assert _value(m, "a") == b"again"
    txn = _txn(m, [], [_put_op("t")], request_id="t")
    assert _txn(m, [], [_put_op("t")], request_id="t") == txn
    kv = _get(m, "t")
    assert kv is not None
    assert kv.version == 1


def test_retried_failed_command_returns_same_error() -> None:
    m = StateMachine()
    first = _put(m, "a", lease=9, request_id="r")
    assert _error_code(first) == "NOT_FOUND"
    _grant(m, lease_id=9)
    assert _put(m, "a", lease=9, request_id="r") == first
    assert _value(m, "a") is None


def test_commands_without_request_id_are_not_deduplicated() -> None:
    m = StateMachine()
    _put(m, "a")
    _put(m, "a")
    assert m.revision == 2
    assert len(m.dedup) == 0


def test_dedup_table_forgets_oldest_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "DEDUP_RETAIN", 2)
    m = StateMachine()
    for rid in ("r1", "r2", "r3"):
        _put(m, "k", request_id=rid)
    assert list(m.dedup) == ["r2", "r3"]
    _put(m, "k", request_id="r1")
    assert m.revision == 4


# -- leases ---------------------------------------------------------------------------------


def test_lease_grant_allocates_increasing_ids_without_bumping_revision() -> None:
    m = StateMachine()
    assert [_grant(m), _grant(m)] == [1, 2]
    assert m.revision == 0


def test_lease_grant_with_explicit_id_moves_next_id_past_it() -> None:
    m = StateMachine()
    assert _grant(m, lease_id=10) == 10
    assert _grant(m) == 11
    assert _grant(m, lease_id=5) == 5
    assert _grant(m) == 12


def test_lease_grant_reports_ttl() -> None:
    m = StateMachine()
    resp = _ok(m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=30)))).lease_grant
    assert (resp.id, resp.ttl) == (1, 30)
    assert m.leases[1].ttl == 30


def test_lease_grant_of_existing_id_is_invalid() -> None:
    m = StateMachine()
    _grant(m, lease_id=3)
    result = m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5, id=3)))
    assert _error_code(result) == "INVALID"
    assert m.leases[3].ttl == 10


def test_put_with_unknown_lease_fails_not_found_and_changes_nothing() -> None:
    m = _machine_with("a")
    m.take_changes()
    result = _put(m, "a", b"new", lease=99)
    assert _error_code(result) == "NOT_FOUND"
    assert "99" in result.error.message
    assert m.revision == 1
    assert _value(m, "a") == b"a"
    assert m.take_changes() == []


def test_put_with_lease_attaches_key() -> None:
    m = StateMachine()
    lease = _grant(m)
    _put(m, "a", lease=lease)
    _put(m, "b", lease=lease)
    kv = _get(m, "a")
    assert kv is not None
    assert kv.lease == lease
    assert m.leases[lease].keys == {"a", "b"}


def test_revoke_deletes_attached_keys_in_one_revision_with_delete_events() -> None:
    m = _machine_with("free")
    lease = _grant(m)
    _put(m, "a", lease=lease)
    _put(m, "b", lease=lease)
    m.take_changes()
    resp = _ok(_revoke(m, lease)).lease_revoke
    assert m.revision == 4
    assert resp.header.revision == 4
    assert _keys(m, "") == ["free"]
    changes = m.take_changes()
    events = [to_event(c) for c in changes]
    assert [(e.type, e.kv.key, e.kv.mod_revision, e.prev_kv.lease) for e in events] == [
        (kv_pb2.KeyEvent.DELETE, "a", 4, lease), (kv_pb2.KeyEvent.DELETE, "b", 4, lease)]
    assert lease not in m.leases


def test_revoke_lease_without_keys_does_not_bump_revision() -> None:
    m = _machine_with("a")
    lease = _grant(m)
    _ok(_revoke(m, lease))
    assert m.revision == 1
    assert m.take_changes()[-1].kv.key == "a"


def test_revoke_unknown_lease_is_not_found() -> None:
    m = StateMachine()
    assert _error_code(_revoke(m, 5)) == "NOT_FOUND"


def test_revoke_spares_keys_detached_or_moved_to_another_lease() -> None:
    m = StateMachine()
    first, second = _grant(m), _grant(m)
    _put(m, "detached", lease=first)
    _put(m, "moved", lease=first)
    _put(m, "stays", lease=first)
    _put(m, "detached", b"plain")
    _put(m, "moved", lease=second)
    assert m.leases[first].keys == {"stays"}
    assert m.leases[second].keys == {"moved"}
    _ok(_revoke(m, first))
    assert _keys(m, "") == ["detached", "moved"]


def test_deleted_key_is_detached_from_its_lease() -> None:
    m = StateMachine()
    lease = _grant(m)
    _put(m, "a", lease=lease)
    _delete(m, "a")
    assert m.leases[lease].keys == set()
    revision = m.revision
    _ok(_revoke(m, lease))
    assert m.revision == revision


def test_lease_expire_revokes_like_revoke() -> None:
    m = StateMachine()
    _fence(m, 2)
    lease = _grant(m)
    _put(m, "a", lease=lease)
    resp = _ok(_expire(m, lease, term=2))
    assert resp.WhichOneof("result") == "done"
    assert _value(m, "a") is None
    assert lease not in m.leases


def test_lease_expire_from_older_term_than_fence_is_rejected() -> None:
    m = StateMachine()
    lease = _grant(m)
    _put(m, "a", lease=lease)
    _fence(m, 3)
    result = _expire(m, lease, term=2)
    assert _error_code(result) == "INVALID"
    assert _value(m, "a") == b"v"
    assert lease in m.leases


def test_lease_expire_from_newer_term_than_fence_is_accepted() -> None:
    m = StateMachine()
    _fence(m, 1)
    lease = _grant(m)
    _ok(_expire(m, lease, term=4))
    assert lease not in m.leases


def test_lease_expire_of_unknown_lease_is_not_found() -> None:
    m = StateMachine()
    assert _error_code(_expire(m, 7, term=0)) == "NOT_FOUND"


def test_fence_term_never_goes_backwards() -> None:
    m = StateMachine()
    _ok(_fence(m, 5))
    _ok(_fence(m, 3))
    assert m.fence_term == 5
    assert m.revision == 0


# -- members ----------------------------------------------------------------------------------


def test_member_registry_upserts_by_name() -> None:
    m = StateMachine()
    member = cluster_pb2.Member(name="m1", client_addr="h:1", peer_addr="h:2")
    _ok(m.apply(store_pb2.Command(member=member)))
    member.client_addr = "mutated-after-apply"
    assert m.members["m1"].client_addr == "h:1"
    _ok(m.apply(store_pb2.Command(member=cluster_pb2.Member(name="m1", client_addr="h:9"))))
    assert m.members["m1"].client_addr == "h:9"
    assert m.revision == 0


def test_member_without_name_is_invalid() -> None:
    m = StateMachine()
    assert _error_code(m.apply(store_pb2.Command(member=cluster_pb2.Member(client_addr="h:1")))) == "INVALID"
    assert m.members == {}


# -- batches ------------------------------------------------------------------------------------


def test_apply_batch_applies_commands_in_order() -> None:
    m = StateMachine()
    results = m.apply_batch(_batch(
        store_pb2.Command(put=kv_pb2.PutRequest(key="a", value=b"1")),
        store_pb2.Command(put=kv_pb2.PutRequest(key="a", value=b"2")),
        store_pb2.Command(delete_range=kv_pb2.DeleteRangeRequest(key="missing")),
    ))
    assert [r.WhichOneof("result") for r in results] == ["put", "put", "delete_range"]
    assert [r.put.header.revision for r in results[:2]] == [1, 2]
    assert _value(m, "a") == b"2"


def test_apply_batch_keeps_going_after_a_failed_command() -> None:
    m = StateMachine()
    results = m.apply_batch(_batch(
        store_pb2.Command(put=kv_pb2.PutRequest(key="a", lease=5)),
        store_pb2.Command(put=kv_pb2.PutRequest(key="b")),
    ))
    assert _error_code(results[0]) == "NOT_FOUND"
    assert _ok(results[1]).put.header.revision == 1


def test_apply_batch_of_unknown_format_is_skipped_whole_with_an_error_per_command() -> None:
    m = StateMachine()
    results = m.apply_batch(_batch(store_pb2.Command(put=kv_pb2.PutRequest(key="a")),
                                   store_pb2.Command(put=kv_pb2.PutRequest(key="b")), fmt=BATCH_FORMAT + 1))
    assert [_error_code(r) for r in results] == ["INTERNAL", "INTERNAL"]
    assert "format 2" in results[0].error.message
    assert m.revision == 0
