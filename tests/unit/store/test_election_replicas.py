"""Elections on three in-process replicas (127.0.0.1, free ports): a follower whose election
timer runs out while the leader is healthy does not depose it; a lost leader is replaced."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.monotonic import monotonic as raft_clock

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.local.masters import free_ports
from raftorch.store.replica import RaftReplica, RaftSettings

WAIT = 30.0


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[dict[str, RaftReplica]]:
    addrs = {f"r{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3))}
    started: dict[str, RaftReplica] = {}
    try:
        for name, addr in addrs.items():
            peers = {n: a for n, a in addrs.items() if n != name}
            started[name] = RaftReplica(name, addr, peers, tmp_path / name, "s" * 32, RaftSettings(fsync=False))
        yield started
    finally:
        for r in started.values():
            r.stop()


def leader_of(nodes: dict[str, RaftReplica]) -> RaftReplica | None:
    leaders = [r for r in nodes.values() if r.is_leader]
    return leaders[0] if len(leaders) == 1 else None


def settled(nodes: dict[str, RaftReplica]) -> bool:
    """One leader, and every replica follows it in its term."""
    leader = leader_of(nodes)
    return leader is not None and all(
        r.term == leader.term and r.leader_peer_addr == leader.peer_addr for r in nodes.values())


def settled_leader(replicas: dict[str, RaftReplica]) -> tuple[RaftReplica, int, RaftReplica]:
    """The leader once all agree on it, its term, and one of its followers."""
    wait_until(lambda: settled(replicas), "a settled leader")
    leader = leader_of(replicas)
    assert leader is not None
    return leader, leader.term, next(r for r in replicas.values() if r is not leader)


def expire_timer_until(node: Any, done: Callable[[], bool]) -> None:
    """Run a follower's election timer out (as if its thread had been held past it) until
    `done`; a leader's message found waiting resets the timer, and it is run out again."""
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, "timed out running the election timer out"
        node._deadline = 0.0
        wait_until(lambda: done() or node._deadline > 0, "the timer to be seen")


def test_a_follower_whose_timer_runs_out_waits_for_a_leader_whose_host_answers(
        replicas: dict[str, RaftReplica]) -> None:
    leader, term, follower = settled_leader(replicas)
    before = dataclasses.replace(follower.elections)  # the first election counts too
    expire_timer_until(follower._node, lambda: follower.elections.waited > before.waited)
    assert follower.elections.pre_votes == before.pre_votes
    assert follower.elections.started == before.started
    assert leader.is_leader and all(r.term == term for r in replicas.values())


def test_a_follower_that_lost_sight_of_a_healthy_leader_cannot_depose_it(
        replicas: dict[str, RaftReplica]) -> None:
    leader, term, follower = settled_leader(replicas)
    # As if its link to the leader had failed: it asks for a pre-vote, and both peers, which
    # still hear the leader, refuse.
    node = follower._node
    node._leader_alive = lambda now: False
    before = dataclasses.replace(follower.elections)
    expire_timer_until(node, lambda: follower.elections.pre_votes > before.pre_votes)
    wait_until(lambda: follower.elections.refusals >= before.refusals + 2, "both peers to refuse the pre-vote")
    assert follower.elections.started == before.started
    assert leader.is_leader and leader.term == term
    assert all(r.term == term for r in replicas.values())


def test_a_lost_leader_is_replaced_by_one_of_the_others(replicas: dict[str, RaftReplica]) -> None:
    wait_until(lambda: settled(replicas), "a settled leader")
    leader = leader_of(replicas)
    assert leader is not None
    term = leader.term
    leader.stop()
    rest = {n: r for n, r in replicas.items() if r is not leader}
    wait_until(lambda: settled(rest) and next(iter(rest.values())).term > term, "a new leader")
    assert sum(r.elections.started for r in rest.values()) >= 1


def test_a_replica_that_stops_leading_starts_a_fresh_election_timeout(tmp_path: Path) -> None:
    # pysyncobj kept the deadline from before the replica led: long past, it started an
    # election the moment the replica stepped down.
    (addr,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    replica = RaftReplica("r1", addr, {}, tmp_path / "r1", "s" * 32, RaftSettings(fsync=False))
    replica.stop()  # no tick thread: the node is driven by hand below
    node = replica._node
    node._deadline = 0.0
    node._SyncObj__setState(2)  # leader
    node._SyncObj__setState(0)  # follower again
    assert node._deadline > raft_clock()


class SlowDisk:
    """A journal sync that takes `delay` seconds once armed (a follower's slow disk)."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.slow_syncs = 0

    def __call__(self, fd: int) -> None:
        if self.delay:
            time.sleep(self.delay)
            self.slow_syncs += 1
        os.fdatasync(fd)


def test_a_leader_whose_followers_sync_slowly_keeps_its_term(tmp_path: Path) -> None:
    # Followers hold their acknowledgements until their journal is synced; their pings in the
    # leader's term still tell the leader they are there, so it does not step down.
    addrs = {f"r{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3))}
    disks = {name: SlowDisk() for name in addrs}
    nodes: dict[str, RaftReplica] = {}
    try:
        for name, addr in addrs.items():
            peers = {n: a for n, a in addrs.items() if n != name}
            nodes[name] = RaftReplica(name, addr, peers, tmp_path / name, "s" * 32, RaftSettings(),
                                      sync=disks[name])
        wait_until(lambda: settled(nodes), "a settled leader")
        leader = leader_of(nodes)
        assert leader is not None
        term = leader.term
        followers = [n for n, r in nodes.items() if r is not leader]
        for name in followers:
            disks[name].delay = 1.6  # longer than the leader's 1 s quorum check
        put = kv_pb2.PutRequest(key="slow", value=b"disk")
        leader.submit(store_pb2.Command(request_id="slow-1", put=put)).result(WAIT)
        wait_until(lambda: all(disks[n].slow_syncs > 0 for n in followers), "the slow syncs to end")
        assert leader.is_leader and leader.term == term
        assert all(r.term == term for r in nodes.values())
    finally:
        for r in nodes.values():
            r.stop()
