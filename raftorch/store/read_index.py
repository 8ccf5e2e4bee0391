"""Linearizable reads on the leader without a log entry (Raft's ReadIndex, §6.4).

A read notes the commit index and, for each follower, how many append-entries messages the
leader had sent it. Once a majority of followers has answered a message sent after that
moment (so they still followed this leader when the read began) and the state machine has
applied up to the noted index, the local state is at least as new as any write
acknowledged before the read started. Followers answer every append-entries message of the
current term in order over one connection, so counting answers is enough to pair them.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from raftorch.errors import NotLeader


def resolve(future: Future[Any], result: Any) -> None:
    """Set a result on the Raft thread; a future its waiter cancelled must not stop it there."""
    with suppress(InvalidStateError):
        future.set_result(result)


def fail(future: Future[Any], exc: BaseException) -> None:
    with suppress(InvalidStateError):
        future.set_exception(exc)


@dataclass(slots=True)
class _Read:
    term: int
    commit_index: int
    marks: dict[Any, int]
    future: Future[None]
    confirmed: bool = False


@dataclass
class ReadIndexTracker:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sent: dict[Any, int] = field(default_factory=dict)
    _acked: dict[Any, int] = field(default_factory=dict)
    _pending: list[_Read] = field(default_factory=list)
    # A round of append-entries has been asked for and has not started yet: a read arriving
    # now is confirmed by that round, and need not ask for another (one round for all reads).
    _round_wanted: bool = False

    # -- Raft thread ----------------------------------------------------------------------

    def on_round(self) -> None:
        """Append-entries are about to go to every follower."""
        with self._lock:
            self._round_wanted = False

    def on_sent(self, node: Any) -> None:
        self._sent[node] = self._sent.get(node, 0) + 1

    def on_answer(self, node: Any) -> None:
        self._acked[node] = self._acked.get(node, 0) + 1

    def on_disconnect(self, node: Any) -> None:
        # Messages lost with the connection will never be answered: forget them, so only
        # answers to messages sent after this point can confirm a read.
        self._sent[node] = self._acked.get(node, 0)

    def on_term_change(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._sent.clear()
            self._acked.clear()
            self._round_wanted = False
        for read in pending:
            fail(read.future, NotLeader("leadership changed during a read; retry"))

    def poll(self, leader: bool, term: int, applied: int, followers: int) -> None:
        """Resolve the reads that are confirmed and applied; fail them if leadership is gone."""
        if not self._pending:
            return
        # A majority of the whole cluster (followers + this leader) must agree.
        needed = (followers + 1) // 2
        done: list[_Read] = []
        failed: list[_Read] = []
        with self._lock:
            keep: list[_Read] = []
            for read in self._pending:
                if not leader or read.term != term:
                    failed.append(read)
                    continue
                if not read.confirmed:
                    answers = sum(1 for node, mark in read.marks.items() if self._acked.get(node, 0) > mark)
                    read.confirmed = answers >= needed
                if read.confirmed and applied >= read.commit_index:
                    done.append(read)
                else:
                    keep.append(read)
            self._pending = keep
        for read in done:
            resolve(read.future, None)
        for read in failed:
            fail(read.future, NotLeader("this master stopped leading during a read; retry"))

    # -- any thread ------------------------------------------------------------------------

    def add(self, term: int, commit_index: int, followers: list[Any]) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            marks = {node: self._sent.get(node, 0) for node in followers}
            self._pending.append(_Read(term, commit_index, marks, future))
        return future

    def claim_round(self) -> bool:
        """After `add`: True when this read must ask the Raft thread for a round; False when
        one asked for earlier has not started yet (it is sent after this read's marks). Only
        latency depends on it: the periodic heartbeat confirms any read as well."""
        with self._lock:
            if self._round_wanted:
                return False
            self._round_wanted = True
            return True
