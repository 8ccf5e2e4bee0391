"""LeaseKeeper on a MemoryReplica with a fake clock: keep-alives, TTLs, fenced expiry."""

from __future__ import annotations

from concurrent.futures import Future
from typing import cast

import pytest

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.errors import NotFound, NotLeader
from raftorch.store.leases import LeaseKeeper
from raftorch.store.memory import MemoryReplica
from raftorch.store.replica import RaftReplica

TTL = 10


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingReplica(MemoryReplica):
    """Records every submitted command; with `hold` set, commands wait for `commit()`."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[store_pb2.Command] = []
        self.hold = False
        self._held: list[tuple[store_pb2.Command, Future[store_pb2.CommandResult]]] = []

    def submit(self, command: store_pb2.Command) -> Future[store_pb2.CommandResult]:
        self.submitted.append(command)
        if not self.hold:
            return super().submit(command)
        future: Future[store_pb2.CommandResult] = Future()
        self._held.append((command, future))
        return future

    def commit(self) -> list[store_pb2.CommandResult]:
        held, self._held = self._held, []
        results = []
        for command, future in held:
            result = super().submit(command).result()
            future.set_result(result)
            results.append(result)
        return results

    def lose(self, error: Exception) -> None:
        """Fail every held command without applying it (its log entry was lost)."""
        held, self._held = self._held, []
        for _, future in held:
            future.set_exception(error)

    def expiries(self) -> list[store_pb2.LeaseExpire]:
        return [c.lease_expire for c in self.submitted if c.WhichOneof("op") == "lease_expire"]


class Cluster:
    """One replica, its keeper and the clock, with the commands a test needs."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.replica = RecordingReplica()
        self.keeper = LeaseKeeper(cast(RaftReplica, self.replica), self.clock)

    def apply(self, command: store_pb2.Command) -> store_pb2.CommandResult:
        return self.replica.submit(command).result()

    def lead(self, term: int, fenced: bool = True) -> None:
        self.replica.term = term
        self.keeper.on_role_change(True, term)
        if fenced:
            self.fence(term)

    def fence(self, term: int) -> None:
        self.apply(store_pb2.Command(fence=store_pb2.LeaderFence(term=term, leader="memory")))

    def grant(self, ttl: int = TTL, lease_id: int = 0) -> int:
        result = self.apply(store_pb2.Command(lease_grant=kv_pb2.LeaseGrantRequest(ttl=ttl, id=lease_id)))
        assert result.WhichOneof("result") == "lease_grant", result
        return result.lease_grant.id

    def revoke(self, lease_id: int) -> None:
        self.apply(store_pb2.Command(lease_revoke=kv_pb2.LeaseRevokeRequest(id=lease_id)))

    def put(self, key: str, lease: int) -> None:
        self.apply(store_pb2.Command(put=kv_pb2.PutRequest(key=key, value=b"v", lease=lease)))

    def alive(self, lease_id: int) -> bool:
        with self.replica.reading() as machine:
            return lease_id in machine.leases

    def keys(self) -> list[str]:
        with self.replica.reading() as machine:
            return [kv.key for kv in machine.range(kv_pb2.RangeRequest(key="", prefix=True)).kvs]

    def tick_at(self, seconds_later: float) -> None:
        self.clock.advance(seconds_later)
        self.keeper.tick()


def _leader_with_lease(ttl: int = TTL, term: int = 1) -> tuple[Cluster, int]:
    """A fenced leader whose keeper has seen one lease (its deadline starts now)."""
    cluster = Cluster()
    cluster.lead(term)
    lease = cluster.grant(ttl)
    cluster.keeper.tick()
    return cluster, lease


# -- keep-alive -----------------------------------------------------------------------


def test_keep_alive_before_any_leadership_raises_not_leader() -> None:
    cluster = Cluster()
    lease = cluster.grant()
    with pytest.raises(NotLeader):
        cluster.keeper.keep_alive(lease)


def test_keep_alive_after_losing_leadership_raises_not_leader() -> None:
    cluster, lease = _leader_with_lease()
    cluster.keeper.on_role_change(False, 2)
    with pytest.raises(NotLeader):
        cluster.keeper.keep_alive(lease)


def test_keep_alive_of_unknown_lease_raises_not_found() -> None:
    cluster = Cluster()
    cluster.lead(1)
    with pytest.raises(NotFound, match="42"):
        cluster.keeper.keep_alive(42)


def test_keep_alive_returns_granted_ttl() -> None:
    cluster = Cluster()
    cluster.lead(1)
    assert cluster.keeper.keep_alive(cluster.grant(ttl=17)) == 17


def test_keep_alive_extends_deadline() -> None:
    cluster, lease = _leader_with_lease()
    cluster.clock.advance(8)
    cluster.keeper.keep_alive(lease)
    cluster.tick_at(TTL - 1)           # 17 s after grant, 9 s after the keep-alive
    assert cluster.alive(lease)
    assert cluster.replica.expiries() == []
    cluster.tick_at(1)
    assert not cluster.alive(lease)


def test_keep_alive_does_not_touch_the_log() -> None:
    cluster, lease = _leader_with_lease()
    before = len(cluster.replica.submitted)
    cluster.keeper.keep_alive(lease)
    assert len(cluster.replica.submitted) == before


# -- expiry -----------------------------------------------------------------------------


def test_lease_expires_only_once_its_deadline_has_passed() -> None:
    cluster, lease = _leader_with_lease()
    cluster.put("owned", lease)
    cluster.tick_at(TTL - 0.5)
    assert cluster.alive(lease)
    assert cluster.keys() == ["owned"]
    cluster.tick_at(0.5)
    assert not cluster.alive(lease)
    assert cluster.keys() == []


def test_expiry_command_carries_the_leaders_term() -> None:
    cluster, lease = _leader_with_lease(term=3)
    cluster.tick_at(TTL)
    assert [(e.id, e.term) for e in cluster.replica.expiries()] == [(lease, 3)]


def test_leases_expire_independently() -> None:
    cluster = Cluster()
    cluster.lead(1)
    short, long = cluster.grant(ttl=5), cluster.grant(ttl=20)
    cluster.keeper.tick()
    cluster.tick_at(5)
    assert (cluster.alive(short), cluster.alive(long)) == (False, True)
    cluster.tick_at(15)
    assert not cluster.alive(long)


def test_lease_granted_later_gets_full_ttl_from_when_keeper_first_sees_it() -> None:
    cluster = Cluster()
    cluster.lead(1)
    cluster.keeper.tick()
    cluster.clock.advance(100)
    lease = cluster.grant()
    cluster.tick_at(0)
    cluster.tick_at(TTL - 1)
    assert cluster.alive(lease)
    cluster.tick_at(1)
    assert not cluster.alive(lease)


def test_no_expiry_before_the_leaders_fence_is_applied() -> None:
    cluster = Cluster()
    cluster.fence(1)
    cluster.lead(2, fenced=False)
    lease = cluster.grant()
    cluster.tick_at(10 * TTL)
    assert cluster.alive(lease)
    assert cluster.replica.expiries() == []
    cluster.fence(2)
    cluster.tick_at(0)
    assert cluster.alive(lease)     # the TTL only starts counting once fenced
    cluster.tick_at(TTL)
    assert not cluster.alive(lease)


def test_deposed_leader_does_not_expire_after_a_newer_fence() -> None:
    cluster, lease = _leader_with_lease(term=1)
    cluster.fence(2)                 # another master won term 2
    cluster.tick_at(10 * TTL)
    assert cluster.alive(lease)
    assert cluster.replica.expiries() == []


def test_follower_never_expires() -> None:
    cluster, lease = _leader_with_lease()
    cluster.keeper.on_role_change(False, 1)
    cluster.tick_at(10 * TTL)
    assert cluster.alive(lease)
    assert cluster.replica.expiries() == []


def test_expiry_in_flight_is_submitted_only_once() -> None:
    cluster, lease = _leader_with_lease()
    cluster.replica.hold = True
    cluster.tick_at(TTL)
    cluster.tick_at(1)
    cluster.tick_at(1)
    assert [e.id for e in cluster.replica.expiries()] == [lease]
    assert cluster.alive(lease)
    cluster.replica.commit()
    cluster.replica.hold = False
    cluster.tick_at(1)
    assert not cluster.alive(lease)
    assert len(cluster.replica.expiries()) == 1


def test_expiry_decided_before_a_newer_fence_is_rejected() -> None:
    cluster, lease = _leader_with_lease(term=1)
    cluster.put("owned", lease)
    cluster.replica.hold = True
    cluster.tick_at(TTL)
    (held_expiry,) = cluster.replica.expiries()
    assert held_expiry.term == 1
    cluster.replica.hold = False
    cluster.fence(2)                 # the new leader's fence lands before the old expiry
    (result,) = cluster.replica.commit()
    assert result.error.code == "INVALID"
    assert cluster.alive(lease)
    assert cluster.keys() == ["owned"]


def test_lost_expiry_is_submitted_again_on_a_later_tick() -> None:
    cluster, lease = _leader_with_lease()
    cluster.replica.hold = True
    cluster.tick_at(TTL)
    cluster.replica.lose(RuntimeError("commit outcome unknown"))
    assert cluster.alive(lease)
    cluster.replica.hold = False
    cluster.tick_at(1)
    assert [e.id for e in cluster.replica.expiries()] == [lease, lease]
    assert not cluster.alive(lease)


def test_new_leader_gives_every_lease_a_fresh_full_ttl() -> None:
    cluster, lease = _leader_with_lease(term=1)
    cluster.clock.advance(TTL - 1)
    cluster.lead(2)                  # re-elected: no record of past keep-alives survives
    cluster.tick_at(0)
    cluster.tick_at(TTL - 1)
    assert cluster.alive(lease)
    cluster.tick_at(1)
    assert not cluster.alive(lease)


def test_revoked_lease_is_never_expired() -> None:
    cluster, lease = _leader_with_lease()
    cluster.revoke(lease)
    cluster.tick_at(10 * TTL)
    assert cluster.replica.expiries() == []


def test_regranted_lease_id_gets_a_fresh_ttl() -> None:
    cluster, lease = _leader_with_lease()
    cluster.clock.advance(TTL - 1)
    cluster.revoke(lease)
    assert cluster.grant(lease_id=lease) == lease
    cluster.tick_at(1)
    assert cluster.alive(lease)


# -- time to live ---------------------------------------------------------------------------


def test_time_to_live_reports_remaining_ttl_and_sorted_keys() -> None:
    cluster = Cluster()
    cluster.lead(1)
    lease = cluster.grant(ttl=30)
    cluster.put("b", lease)
    cluster.put("a", lease)
    assert cluster.keeper.time_to_live(lease) == (30, 30, ["a", "b"])
    cluster.clock.advance(12)
    assert cluster.keeper.time_to_live(lease) == (18, 30, ["a", "b"])
    cluster.clock.advance(100)
    assert cluster.keeper.time_to_live(lease)[0] == 0


def test_time_to_live_after_keep_alive_is_full_ttl() -> None:
    cluster, lease = _leader_with_lease()
    cluster.clock.advance(7)
    cluster.keeper.keep_alive(lease)
    assert cluster.keeper.time_to_live(lease)[0] == TTL


def test_time_to_live_of_unknown_lease() -> None:
    cluster = Cluster()
    cluster.lead(1)
    assert cluster.keeper.time_to_live(99) == (-1, 0, [])


def test_time_to_live_on_follower_raises_not_leader() -> None:
    cluster = Cluster()
    lease = cluster.grant()
    with pytest.raises(NotLeader):
        cluster.keeper.time_to_live(lease)
