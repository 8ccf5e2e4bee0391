"""Lease TTLs kept in the leader's memory: keep-alives never touch the log, expiries do."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from raftorch.api.v1 import store_pb2
from raftorch.errors import NotFound, NotLeader
from raftorch.store.replica import RaftReplica

# Timers are keyed by (lease id, grant number): an id revoked and granted again is a new lease.
_Key = tuple[int, int]


class LeaseKeeper:
    def __init__(self, replica: RaftReplica, clock: Callable[[], float] = time.monotonic) -> None:
        self._replica = replica
        self._clock = clock
        self._lock = threading.Lock()
        self._term = 0  # 0 while not leader
        self._deadlines: dict[_Key, float] = {}
        self._expiring: set[_Key] = set()

    def on_role_change(self, leader: bool, term: int) -> None:
        """A new leader gives every lease a full TTL: it cannot know when keep-alives last came."""
        with self._lock:
            self._term = term if leader else 0
            self._deadlines.clear()
            self._expiring.clear()

    def _deadline(self, key: _Key, ttl: int, now: float) -> float:
        return self._deadlines.setdefault(key, now + ttl)

    def keep_alive(self, lease_id: int) -> int:
        with self._replica.reading() as machine:
            lease = machine.leases.get(lease_id)
        with self._lock:
            if not self._term:
                raise NotLeader("lease keep-alives go to the leader")
            if lease is None:
                raise NotFound(f"lease {lease_id} not found")
            self._deadlines[(lease.id, lease.grant)] = self._clock() + lease.ttl
            return lease.ttl

    def time_to_live(self, lease_id: int) -> tuple[int, int, list[str]]:
        """(seconds left, granted TTL, keys); seconds left is -1 for an unknown lease."""
        with self._replica.reading() as machine:
            lease = machine.leases.get(lease_id)
            keys = sorted(lease.keys) if lease else []
        with self._lock:
            if not self._term:
                raise NotLeader("lease time-to-live is known to the leader")
            if lease is None:
                return -1, 0, []
            now = self._clock()
            left = self._deadline((lease.id, lease.grant), lease.ttl, now) - now
            return max(0, round(left)), lease.ttl, keys

    def tick(self) -> None:
        """Commit an expiry for every lease past its deadline (leader only, after its fence)."""
        with self._replica.reading() as machine:
            fenced = machine.fence_term
            leases = [((lease.id, lease.grant), lease.ttl) for lease in machine.leases.values()]
        now = self._clock()
        expired: list[_Key] = []
        with self._lock:
            term = self._term
            if not term or fenced != term:
                return
            live = {key for key, _ in leases}
            for gone in set(self._deadlines) - live:
                del self._deadlines[gone]
            self._expiring &= live
            for key, ttl in leases:
                if now >= self._deadline(key, ttl, now) and key not in self._expiring:
                    self._expiring.add(key)
                    expired.append(key)
        for key in expired:
            future = self._replica.submit(store_pb2.Command(
                lease_expire=store_pb2.LeaseExpire(id=key[0], term=term)))
            future.add_done_callback(functools.partial(self._settled, key))

    def _settled(self, key: _Key, _future: object) -> None:
        with self._lock:
            self._expiring.discard(key)
