"""`apply` is total: no log entry, however malformed, makes it raise; each bad command gets
its own deterministic error and leaves the state as it was."""

from __future__ import annotations

from typing import cast

import pytest

from raftorch.api.v1 import cluster_pb2, kv_pb2, store_pb2
from raftorch.store import machine as machine_module
from raftorch.store.machine import BATCH_FORMAT, MAX_LEASE_ID, MAX_REQUEST_ID_BYTES, StateMachine
from raftorch.store.snapshot import dump_state, load_state


def _grant(m: StateMachine, lease_id: int = 0, ttl: int = 10) -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(id=lease_id, ttl=ttl)))


def _put(m: StateMachine, key: str, value: bytes = b"v", request_id: str = "") -> store_pb2.CommandResult:
    return m.apply(store_pb2.Command(request_id=request_id, put=kv_pb2.PutRequest(key=key, value=value)))


def _code(result: store_pb2.CommandResult) -> str:
    return result.error.code if result.WhichOneof("result") == "error" else "OK"


def _snapshot_bytes(m: StateMachine) -> bytes:
    return dump_state(m).SerializeToString()


# -- lease ids ------------------------------------------------------------------------


def test_lease_grant_after_the_largest_id_does_not_raise_and_wraps_to_a_free_id() -> None:
    # On the landed main, the second grant raised ValueError (id 2^63 does not fit int64) and
    # stalled every replica on the entry.
    m = StateMachine()
    assert _grant(m, lease_id=1).lease_grant.id == 1
    assert _grant(m, lease_id=MAX_LEASE_ID).lease_grant.id == MAX_LEASE_ID
    second = _grant(m)
    assert _code(second) == "OK"
    assert second.lease_grant.id == 2  # wrapped to 1, which is taken
    assert set(m.leases) == {1, 2, MAX_LEASE_ID}
    # The state still snapshots and restores (main could not encode next_lease_id = 2^63).
    restored = StateMachine()
    load_state(restored, store_pb2.Snapshot.FromString(_snapshot_bytes(m)))
    assert _grant(restored).lease_grant.id == _grant(m).lease_grant.id == 3


def test_lease_grant_through_apply_batch_never_raises() -> None:
    m = StateMachine()
    entry = store_pb2.CommandBatch(format=BATCH_FORMAT, commands=[
        store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(id=2**63 - 1, ttl=5)),
        store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=5)),
    ]).SerializeToString()
    results = m.apply_batch(entry)
    assert [_code(r) for r in results] == ["OK", "OK"]


@pytest.mark.parametrize("lease_id, ttl, what", [(-1, 10, "id"), (-(2**63), 10, "id"), (0, -5, "ttl"),
                                                  (0, 2**62, "ttl")])
def test_lease_grant_out_of_range_is_invalid_and_changes_nothing(lease_id: int, ttl: int, what: str) -> None:
    m = StateMachine()
    before = _snapshot_bytes(m)
    result = _grant(m, lease_id=lease_id, ttl=ttl)
    assert _code(result) == "INVALID"
    assert result.error.message.startswith(what)
    assert _snapshot_bytes(m) == before


# -- request ids ------------------------------------------------------------------------


def test_oversized_request_id_is_invalid_and_not_remembered() -> None:
    m = StateMachine()
    result = _put(m, "a", request_id="x" * (4 * 1024 * 1024))
    assert _code(result) == "INVALID"
    assert "request_id" in result.error.message
    assert len(result.error.message) < 200  # the id is not echoed whole
    assert m.revision == 0
    assert not m.dedup


def test_request_id_at_the_limit_is_accepted_and_deduplicated() -> None:
    m = StateMachine()
    rid = "r" * MAX_REQUEST_ID_BYTES
    first = _put(m, "a", request_id=rid)
    assert _code(first) == "OK"
    assert _put(m, "a", request_id=rid) == first
    assert m.revision == 1


def test_request_id_limit_counts_utf8_bytes() -> None:
    m = StateMachine()
    assert _code(_put(m, "a", request_id="é" * (MAX_REQUEST_ID_BYTES // 2 + 1))) == "INVALID"


# -- undecodable and unknown entries ------------------------------------------------------


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x12\x05\x12\x03\x0a\x01\xff", b"\x0a"])
def test_undecodable_log_entry_gives_an_error_and_changes_nothing(data: bytes) -> None:
    m = StateMachine()
    _put(m, "a")
    before = _snapshot_bytes(m)
    results = m.apply_batch(data)
    assert [_code(r) for r in results] == ["INTERNAL"]
    assert "does not decode" in results[0].error.message
    assert _snapshot_bytes(m) == before


@pytest.mark.parametrize("data", [None, "text", 7])
def test_log_entry_that_is_not_bytes_gives_an_error(data: object) -> None:
    # pysyncobj unpickles entries: an authenticated but broken peer could send anything.
    m = StateMachine()
    results = m.apply_batch(cast(bytes, data))
    assert [_code(r) for r in results] == ["INTERNAL"]
    assert m.revision == 0


def test_empty_log_entry_applies_nothing() -> None:
    m = StateMachine()
    assert m.apply_batch(store_pb2.CommandBatch(format=BATCH_FORMAT).SerializeToString()) == []
    assert m.revision == 0


def test_command_without_an_operation_is_invalid() -> None:
    m = StateMachine()
    assert _code(m.apply(store_pb2.Command(request_id="r"))) == "INVALID"


def test_unknown_fields_from_a_newer_master_do_not_break_apply() -> None:
    m = StateMachine()
    # A command carrying an operation this master does not know (field 99) beside a request id.
    data = store_pb2.Command(request_id="r").SerializeToString() + b"\x9a\x06\x02\x08\x01"
    result = m.apply(store_pb2.Command.FromString(data))
    assert _code(result) == "INVALID"


def test_empty_key_is_invalid() -> None:
    m = StateMachine()
    assert _code(_put(m, "")) == "INVALID"
    txn = store_pb2.Command(txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="ok")),
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="")),
    ]))
    assert _code(m.apply(txn)) == "INVALID"
    assert m.revision == 0


def test_unexpected_exception_in_a_handler_becomes_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    m = StateMachine()

    def broken(command: store_pb2.Command) -> store_pb2.CommandResult:
        raise ZeroDivisionError("boom at 0x7f00")

    monkeypatch.setitem(m._handlers, "compact", broken)
    result = m.apply(store_pb2.Command(request_id="c", compact=kv_pb2.CompactRequest(revision=1)))
    assert _code(result) == "INTERNAL"
    # Replicated (it is remembered for the request id): no addresses or other varying text.
    assert result.error.message == "internal error applying 'compact': ZeroDivisionError"
    assert m.dedup["c"] == result
    assert _code(_put(m, "a")) == "OK"


def test_an_exception_outside_the_handlers_is_still_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    m = StateMachine()

    def broken() -> None:
        raise MemoryError()

    monkeypatch.setattr(m, "_maybe_compact", broken)
    assert _code(_put(m, "a")) == "INTERNAL"


# -- members -----------------------------------------------------------------------------


def test_member_fields_and_count_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    m = StateMachine()
    long = cluster_pb2.Member(name="m", client_addr="h" * 5000)
    assert _code(m.apply(store_pb2.Command(member=long))) == "INVALID"
    monkeypatch.setattr(machine_module, "MAX_MEMBERS", 2)
    for name in ("a", "b"):
        assert _code(m.apply(store_pb2.Command(member=cluster_pb2.Member(name=name)))) == "OK"
    assert _code(m.apply(store_pb2.Command(member=cluster_pb2.Member(name="c")))) == "RESOURCE_EXHAUSTED"
    # A known member may still change its addresses.
    assert _code(m.apply(store_pb2.Command(member=cluster_pb2.Member(name="a", client_addr="h:1")))) == "OK"


# -- replicas named differently --------------------------------------------------------


def test_deduplicated_results_hold_no_replica_name_and_replies_carry_the_local_one() -> None:
    one, other = StateMachine("m1"), StateMachine("a-much-longer-master-name")
    txn = store_pb2.Command(request_id="t", txn=kv_pb2.TxnRequest(success=[
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="a", value=b"1")),
        kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key="a")),
    ]))
    for m in (one, other):
        assert m.apply(txn).txn.header.member == m.member
        # The servicer that answers stamps its term on the result it was handed.
        _put(m, "b", request_id="p").put.header.raft_term = 7 if m is one else 9
    # The replicated state, byte counts included, is the same on both.
    assert _snapshot_bytes(one) == _snapshot_bytes(other)
    assert one.usage == other.usage
    # A retried request is answered by the replica it reaches, in its own name.
    again = other.apply(txn)
    assert again.txn.header.member == other.member
    assert again.txn.responses[1].response_range.header.member == other.member
    assert again.txn.responses[1].response_range.kvs[0].value == b"1"


def test_snapshot_from_before_dedup_records_were_stripped_loads_the_same() -> None:
    m = StateMachine("m1")
    _put(m, "a", request_id="p")
    snap = dump_state(m)
    snap.dedup[0].result.put.header.member = "m1"  # as older masters wrote it
    snap.dedup[0].result.put.header.raft_term = 3
    restored = StateMachine("m2")
    load_state(restored, store_pb2.Snapshot.FromString(snap.SerializeToString()))
    assert restored.usage == m.usage
    assert _snapshot_bytes(restored) == _snapshot_bytes(m)
