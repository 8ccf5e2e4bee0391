"""The Raft node: pysyncobj's SyncObj with the overrides raftorch needs (see store/replica.py
for the settings and why), and the poller whose wait ends at a deadline.

- durability: an entry counts toward a commit only once synced where it counts;
- acknowledgements: pipelined answers never move a follower's next index back;
- commit notices ride on the next proposal when one comes soon;
- elections: waiting input is read and peers are asked first (store/election.py); who started
  an election, and what the leader's and the follower's threads were doing, is logged.
"""

from __future__ import annotations

import math
import random
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import structlog
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as raft_clock  # pysyncobj's clock: CLOCK_MONOTONIC_RAW
from pysyncobj.syncobj import _RAFT_STATE

from raftorch.api.v1 import store_pb2
from raftorch.store.election import (
    PRE_VOTE,
    PRE_VOTE_RESPONSE,
    ElectionCounts,
    LogPosition,
    PreVoteRound,
    asker_position,
    leader_host_answers,
    ms,
    pre_vote_refusal,
    pre_vote_request,
    pre_vote_response,
)
from raftorch.store.journal import DurableJournal
from raftorch.store.peer_transport import PeerTransport

if TYPE_CHECKING:
    from raftorch.store.replica import RaftReplica

log = structlog.get_logger("raftorch.store")

_LEADER: int = _RAFT_STATE.LEADER
_ROLES = {_RAFT_STATE.FOLLOWER: "follower", _RAFT_STATE.CANDIDATE: "candidate", _LEADER: "leader"}

# How long the leader may hold back telling followers of a new commit index, for the next
# proposal to carry it (see RaftNode._SyncObj__applyLogEntries).
COMMIT_NOTICE_DELAY = 0.005
# The leader logs an append-entries round sent this much later than its period (a starved tick).
LATE_HEARTBEAT_LOG = 0.1
# Reads of waiting input before an election, at most (each one pass of the poller).
PENDING_READS = 4
# A follower whose leader is silent this long sends it a probe; a probe not acknowledged by the
# leader's host (TCP) within PROBE_GRACE means the leader is cut off, not merely held.
PROBE_AFTER = 0.08
PROBE_GRACE = 0.05
# While a silent leader's host still answers, the election check is repeated this often.
PATIENCE_STEP = 0.05


class DeadlinePoller:
    """pysyncobj's poller, whose wait at the end of a tick also ends at a deadline set during
    the tick (pysyncobj waits up to its fixed tick period otherwise)."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller
        self._deadline = 0.0
        # When the last wait ended, and the longest stretch between waits since `reset_work`:
        # how long the Raft thread went without reading its sockets.
        self.wait_ended = raft_clock()
        self.max_work = 0.0

    def reset_work(self) -> None:
        self.max_work = 0.0

    def read_now(self) -> None:
        """Handle the input waiting now, without waiting for more."""
        self._poller.poll(0)

    def wake_by(self, deadline: float) -> None:
        if not self._deadline or deadline < self._deadline:
            self._deadline = deadline

    def poll(self, timeout: float) -> None:
        now = raft_clock()
        self.max_work = max(self.max_work, now - self.wait_ended)
        if self._deadline:
            timeout = max(0.0, min(timeout, self._deadline - now))
            self._deadline = 0.0
        self._poller.poll(timeout)
        self.wait_ended = raft_clock()

    def subscribe(self, descr: Any, callback: Any, eventMask: int) -> None:
        self._poller.subscribe(descr, callback, eventMask)

    def unsubscribe(self, descr: Any) -> None:
        self._poller.unsubscribe(descr)


class RaftNode(SyncObj):  # type: ignore[misc]
    """pysyncobj's SyncObj with the overrides raftorch needs, each explained where it is.

    Durability: an entry counts toward a commit only once it is synced on the replicas that
    count (`_SyncObj__applyLogEntries` on the leader, `_SyncObj__sendNextNodeIdx` on followers)."""

    # pysyncobj's own attributes that are read here.
    _poller: Any
    _SyncObj__newAppendEntriesTime: float
    _SyncObj__raftState: int

    def __init__(self, replica: RaftReplica, self_addr: str, others: list[str], conf: SyncObjConf,
                 journal: DurableJournal, pre_vote: bool = True,
                 connected_timeout: tuple[float, float] = (1.0, 2.0)) -> None:
        self._replica = replica
        self._journal = journal
        self._pre_vote_enabled = pre_vote
        self._connected_timeout = connected_timeout
        # The election deadline (see the property below) and whether pysyncobj may act on it.
        self._deadline = 0.0
        self._may_elect = False
        # How long a silent leader whose host still answers is waited for (drawn from the long
        # range at each contact), and when this follower probed it (0: not in this silence).
        self._patience = connected_timeout[0]
        self._probe_at = 0.0
        self._pre_vote: PreVoteRound | None = None
        self._pre_vote_won = False
        self._asked_term = 0
        self.elections = ElectionCounts()
        # When this replica last accepted append-entries from a leader (0: never).
        self._leader_contact = 0.0
        # The leader's last append-entries round: its term and when it was sent.
        self._round_term = -1
        self._round_at = 0.0
        # Acknowledgements of append-entries waiting for their entries' sync:
        # (node, reset, next index, success, journal generation when held).
        self._held_acks: deque[tuple[Any, bool, int, bool, int]] = deque()
        self._durable_commit = 0
        super().__init__(self_addr, others, conf, transportClass=PeerTransport)
        # Only the tick's own wait goes through this; pysyncobj's connections keep the poller
        # they were given.
        self._poller = DeadlinePoller(self._poller)

    def wake(self) -> None:
        """Make the Raft thread run a tick now (any thread)."""
        # The pipe may be full (a tick is due anyway) or not created yet.
        with suppress(OSError, AttributeError):
            self._SyncObj__pipeNotifier.notify()

    def _SyncObj__sendNextNodeIdx(self, node: Any, reset: bool = False, nextNodeIdx: int | None = None,
                                  success: bool = False) -> None:
        """A follower acknowledges entries only once they are on its disk: the leader counts
        the acknowledgement toward a majority. Later answers wait behind a held one, in order."""
        if nextNodeIdx is None:
            nextNodeIdx = int(self._journal[-1][1]) + 1
        journal = self._journal
        if self._held_acks or (success and journal.synced_index < nextNodeIdx - 1):
            self._held_acks.append((node, reset, nextNodeIdx, success, journal.generation))
            return
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)

    def release_acks(self) -> None:
        """Send the held acknowledgements whose entries are now synced (the Raft thread)."""
        synced, generation = self._journal.synced_index, self._journal.generation
        held = self._held_acks
        while held:
            node, reset, nxt, success, held_in = held[0]
            if held_in != generation:
                held.popleft()  # entries were removed since: the leader will ask again
                continue
            if success and synced < nxt - 1:
                return
            held.popleft()
            SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nxt, success)

    def _SyncObj__applyLogEntries(self) -> bool:
        """pysyncobj counts the leader's own copy of every entry toward the majority at once;
        here it counts only once synced. Runs right after pysyncobj's commit computation and
        before anything is applied or the commit index is sent to followers."""
        commit: int = getattr(self, "_SyncObj__raftCommitIndex")  # noqa: B009 - pysyncobj's private field
        if not self._isLeader() or not self._journal.durable:
            self._durable_commit = commit
        elif commit > self._durable_commit:
            match = self._SyncObj__raftMatchIndex
            copies = sorted([self._journal.synced_index, *(match.get(n, 0) for n in self.otherNodes)],
                            reverse=True)
            on_majority = min(commit, copies[len(copies) // 2])
            if on_majority > self._durable_commit and self._entry_term(on_majority) == self.raftCurrentTerm:
                self._durable_commit = on_majority
            if commit > self._durable_commit:
                self._SyncObj__raftCommitIndex = self._durable_commit
                self._journal.setRaftCommitIndex(self._durable_commit)
        applied = bool(SyncObj._SyncObj__applyLogEntries(self))
        if not applied or not self._isLeader():
            return applied
        # pysyncobj sends append-entries right after applying, only to tell followers the new
        # commit index: a round of messages and acknowledgements per entry. When a proposal is
        # queued (the next group, submitted by the callbacks just run), the same tick sends its
        # entry with that commit index. Otherwise the notice waits up to COMMIT_NOTICE_DELAY
        # for the next proposal to carry it (a lone client's next put comes within it), then
        # goes out as a heartbeat: followers learn of a commit at most that much later.
        if not self._commands_queued():
            due = raft_clock() + COMMIT_NOTICE_DELAY
            if self._SyncObj__newAppendEntriesTime > due:
                self._SyncObj__newAppendEntriesTime = due
            poller = self._poller
            if isinstance(poller, DeadlinePoller):  # installed right after pysyncobj's start
                poller.wake_by(due)
        return False

    def _commands_queued(self) -> bool:
        queue = getattr(self, "_SyncObj__commandsQueue")  # noqa: B009 - pysyncobj's private field
        return bool(getattr(queue, "_FastQueue__queue", None))

    def _entry_term(self, index: int) -> int:
        journal = self._journal
        pos = index - int(journal[0][1])
        return int(journal[pos][2]) if 0 <= pos < len(journal) else -1

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> list[store_pb2.CommandResult]:
        return self._replica._apply(data)

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """pysyncobj moves a follower's next index back when an older acknowledgement arrives
        after newer entries were sent (pipelining), then resends entries the follower has.
        Handle acknowledgements here so the next index only moves back on a real reset.
        Pre-vote messages are answered here; vote requests and leader contact are noted."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == PRE_VOTE:
            self._answer_pre_vote(node, message)
            return
        if kind == PRE_VOTE_RESPONSE:
            self._count_pre_vote(node, message)
            return
        if kind == "append_entries" and message["term"] >= self.raftCurrentTerm:
            self._on_leader_contact()
        elif kind == "request_vote":
            self._log_vote_request(node, message)
        elif kind == "ping":
            self._on_ping(node, message)
            return
        if kind == "next_node_idx" and self._isLeader():
            self._replica.reads.on_answer(node)
            match = self._SyncObj__raftMatchIndex
            nxt = self._SyncObj__raftNextIndex
            if node in match:
                acked = message["next_node_idx"]
                if message["reset"]:
                    nxt[node] = acked
                if message["success"] and match[node] < acked - 1:
                    match[node] = acked - 1
                    nxt[node] = max(nxt[node], acked)
                self._SyncObj__lastResponseTime[node] = raft_clock()
                return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """Load the snapshot, keeping the journal entries after it.

        pysyncobj clears the journal unless its first two entries are the snapshot's last two.
        A snapshot written by the forked child is renamed into place before the journal is
        truncated; a crash in between left a journal that starts earlier, and pysyncobj threw
        away every entry after the snapshot, acknowledged writes included. Here the journal is
        kept from the snapshot's entries on whenever it holds them (same index and term: by
        Raft's log matching, everything before them is what the snapshot contains)."""
        try:
            _, last, previous, _cluster = self._SyncObj__serializer.deserialize()
            journal = self._SyncObj__raftLog
            keep = False
            pos = 0
            if not clearJournal and len(journal) >= 2:
                pos = previous[1] - journal[0][1]
                keep = (pos >= 0 and pos + 1 < len(journal)
                        and tuple(journal[pos][1:]) == tuple(previous[1:])
                        and tuple(journal[pos + 1][1:]) == tuple(last[1:]))
            if keep:
                if pos > 0:
                    journal.deleteEntriesTo(pos)
            else:
                journal.clear()
                journal.add(*previous)
                journal.add(*last)
            self._SyncObj__raftLastApplied = last[1]
            current = journal[len(journal) - 1][1]
            commit: int = getattr(self, "_SyncObj__raftCommitIndex")  # noqa: B009 - pysyncobj's private field
            if commit > current:
                self._SyncObj__raftCommitIndex = current
                journal.setRaftCommitIndex(current)
            self._SyncObj__onSetCodeVersion(0)
        except Exception:
            log.exception("snapshot_load_failed")

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:
        self._replica.reads.on_disconnect(node)
        SyncObj._SyncObj__onNodeDisconnected(self, node)
        if node == self._SyncObj__raftLeader and not self._isLeader():
            # A crashed leader's peers see its connections close at once: from now on the
            # short election timeout applies.
            self._deadline = min(self._deadline, raft_clock() + self._SyncObj__generateRaftTimeout())
            log.info("raft_leader_disconnected", leader=str(getattr(node, "address", node)),
                     term=self.raftCurrentTerm, since_leader_ms=ms(self._since_leader(raft_clock())))

    def _SyncObj__sendAppendEntries(self) -> None:
        self._replica.reads.on_round()
        now = raft_clock()
        term = self.raftCurrentTerm
        if self._round_term == term:
            # Followers went this long without a message from this leader.
            gap = now - self._round_at
            if gap - self.conf.appendEntriesPeriod > LATE_HEARTBEAT_LOG:
                buffered, kernel = self._SyncObj__transport.queued_bytes()
                log.info("raft_heartbeat_late", gap_ms=ms(gap), term=term, out_buffered_bytes=buffered,
                         out_kernel_bytes=kernel, max_work_ms=ms(getattr(self._poller, "max_work", None)))
        self._round_term, self._round_at = term, now
        if isinstance(self._poller, DeadlinePoller):
            self._poller.reset_work()
        SyncObj._SyncObj__sendAppendEntries(self)

    # -- elections (store/election.py) -------------------------------------------------

    # pysyncobj's election deadline. pysyncobj sets it (a leader's message, a vote granted, an
    # election started) and reads it in one place only: to start an election when it has
    # passed. It reads +inf there unless `_onTick` decided that an election starts now, so
    # pysyncobj never starts one on its own (a deadline passing between this node's check and
    # pysyncobj's would otherwise skip the pre-vote).
    @property
    def _SyncObj__raftElectionDeadline(self) -> float:
        return self._deadline if self._may_elect else math.inf

    @_SyncObj__raftElectionDeadline.setter
    def _SyncObj__raftElectionDeadline(self, deadline: float) -> None:
        self._deadline = deadline

    def _SyncObj__setState(self, state: int) -> None:
        """pysyncobj keeps the election deadline a leader had as a follower: a leader that
        stepped down (a higher term seen, or no majority heard) found it long past and started
        an election at once, turning one election into two or three terms. A replica that
        stops leading starts a fresh timeout, as Raft's followers do."""
        was_leader = self._SyncObj__raftState == _LEADER
        SyncObj._SyncObj__setState(self, state)
        if was_leader and state != _LEADER:
            self._deadline = raft_clock() + self._SyncObj__generateRaftTimeout()
            now = raft_clock()
            log.info("raft_leader_stepped_down", term=self.raftCurrentTerm,
                     since_answers_ms={str(getattr(n, "address", n)): ms(now - t)
                                       for n, t in self._SyncObj__lastResponseTime.items()})

    def _leader_connected(self) -> bool:
        """This replica follows a leader whose peer connection is up."""
        leader = self._SyncObj__raftLeader
        return leader is not None and leader != self._SyncObj__selfNode and leader in self._SyncObj__connectedNodes

    def _leader_alive(self, now: float) -> bool:
        """The leader's connection is up and its host acknowledges what this replica sends
        (store/election.py: a held leader's kernel still does; a cut-off one's does not)."""
        if not self._leader_connected():
            return False
        unacked = self._SyncObj__transport.unacked_to(self._SyncObj__raftLeader)
        return leader_host_answers(now - self._probe_at if self._probe_at else None, unacked, PROBE_GRACE)

    def _probe_leader(self, now: float) -> None:
        """Once per silence of the leader, send it a ping: something its host must acknowledge."""
        if self._probe_at or not self._leader_contact or now - self._leader_contact < PROBE_AFTER:
            return
        if self._leader_connected():
            self._probe_at = now
            self._SyncObj__transport.send(self._SyncObj__raftLeader, {"type": "ping", "term": self.raftCurrentTerm})

    def _onTick(self, timeToWait: float = 0.0) -> None:
        """pysyncobj checks the election timer first thing in a tick, before reading its
        sockets: a thread held past the deadline started an election with the leader's
        heartbeats unread. Here the waiting input is read first, and then peers are asked
        (pre-vote) before pysyncobj may start the election."""
        if self._SyncObj__raftState == _LEADER:
            self._before_quorum_check()
        elif self._SyncObj__selfNode is not None:
            now = raft_clock()
            self._probe_leader(now)
            if self._deadline < now and self._SyncObj__connectedToAnyone():
                self._may_elect = self._election_due()
        try:
            SyncObj._onTick(self, timeToWait)
        finally:
            self._may_elect = False

    def _before_quorum_check(self) -> None:
        """pysyncobj's leader steps down, first thing in a tick, when it has no answer from a
        majority within leaderFallbackTimeout: after its thread was held that long, the
        answers were waiting unread. Read them first."""
        last = self._SyncObj__lastResponseTime
        since = raft_clock() - self.conf.leaderFallbackTimeout
        others = self.otherNodes
        if (sum(1 for n in others if last.get(n, 0.0) > since) + 1) * 2 > len(others) + 1:
            return
        poller = self._poller
        if isinstance(poller, DeadlinePoller):
            poller.read_now()
        if (sum(1 for n in others if last.get(n, 0.0) > since) + 1) * 2 > len(others) + 1:
            self.elections.averted += 1
            log.info("raft_step_down_averted", reason="followers' answers were waiting unread",
                     term=self.raftCurrentTerm, max_work_ms=ms(getattr(poller, "max_work", None)))

    def _on_ping(self, node: Any, message: dict[str, Any]) -> None:
        """A follower's ping in the leader's term counts toward the leader's quorum check.
        pysyncobj counts only acknowledgements, and a follower holds those until its journal
        is synced: a follower alive in this term but with a slow disk made the leader step
        down after leaderFallbackTimeout (etcd's CheckQuorum also counts heartbeat answers,
        which never wait for the disk)."""
        last = self._SyncObj__lastResponseTime
        if self._isLeader() and message.get("term") == self.raftCurrentTerm and node in last:
            last[node] = max(last[node], raft_clock())

    def _own_log(self) -> LogPosition:
        return LogPosition(int(self._SyncObj__getCurrentLogIndex()), int(self._SyncObj__getCurrentLogTerm()))

    def _since_leader(self, now: float) -> float | None:
        return now - self._leader_contact if self._leader_contact else None

    def _election_due(self) -> bool:
        """The election timer ran out (the Raft thread, before pysyncobj's tick): True if
        pysyncobj is to start an election in this tick."""
        if self._pre_vote_won:  # a majority said yes
            self._pre_vote_won = False
            self.elections.started += 1
            log.info("raft_election_start", term=self.raftCurrentTerm + 1, pre_vote=True)
            return True
        now = raft_clock()
        transport = self._SyncObj__transport
        poller = self._poller
        facts: dict[str, Any] = {
            "term": self.raftCurrentTerm,
            "since_leader_ms": ms(self._since_leader(now)),
            "late_ms": ms(now - self._deadline),
            "leader_connected": self._leader_connected(),
            "leader_alive": self._leader_alive(now),
            "max_work_ms": ms(getattr(poller, "max_work", None)),
            "unread_bytes": transport.unread_bytes(),
        }
        if isinstance(poller, DeadlinePoller):
            for _ in range(PENDING_READS):
                poller.read_now()
                if self._deadline >= raft_clock() or not transport.unread_bytes():
                    break
        if self._deadline >= raft_clock():
            self.elections.averted += 1
            log.info("raft_election_averted", reason="a leader's message was waiting unread", **facts)
            return False
        since = self._since_leader(now)
        if since is not None and since < self._patience and self._leader_alive(raft_clock()):
            # A silent leader whose host answers: its thread is held, it is not lost. Wait for
            # it up to the long timeout, checking again shortly.
            self._deadline = raft_clock() + PATIENCE_STEP
            self.elections.waited += 1
            return False
        if not self._pre_vote_enabled or not self.otherNodes:
            self.elections.started += 1
            log.info("raft_election_start", pre_vote=False, **facts)
            return True
        term = self.raftCurrentTerm + 1
        self._pre_vote = PreVoteRound(term, voters=len(self.otherNodes) + 1)
        self._asked_term = term
        self.elections.pre_votes += 1
        request = pre_vote_request(term, self._own_log())
        for node in self.otherNodes:
            transport.send(node, request)
        # No election from pysyncobj until a majority says yes; none: ask again after a timeout.
        self._deadline = raft_clock() + self._SyncObj__generateRaftTimeout()
        log.info("raft_pre_vote_start", asked_term=term, **facts)
        return False

    def _answer_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        asked = int(message["term"])
        now = raft_clock()
        alive = self._leader_alive(now)
        refusal = pre_vote_refusal(
            asked_term=asked, asker_log=asker_position(message), own_term=self.raftCurrentTerm,
            own_log=self._own_log(), is_leader=self._isLeader(),
            voted_this_term=self._SyncObj__votedForNodeId is not None,
            since_leader=self._since_leader(now) if self._leader_connected() else None,
            election_min=self._connected_timeout[0] if alive else self.conf.raftMinTimeout)
        log.info("raft_pre_vote_answer", asker=str(getattr(node, "address", node)), asked_term=asked,
                 term=self.raftCurrentTerm, granted=refusal is None, reason=refusal,
                 since_leader_ms=ms(self._since_leader(now)), leader_connected=self._leader_connected(),
                 leader_alive=alive)
        self._SyncObj__transport.send(node, pre_vote_response(asked, refusal is None))

    def _count_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        term = int(message["term"])
        if not message.get("granted"):
            if term == self._asked_term:
                self.elections.refusals += 1
            return
        current = self._pre_vote  # none once a leader was heard since: a late yes counts no more
        if current is None or self._isLeader() or term != current.term or term != self.raftCurrentTerm + 1:
            return
        if current.grant(node):
            self._pre_vote = None
            self._pre_vote_won = True
            self._deadline = 0.0  # the next tick starts the election

    def _on_leader_contact(self) -> None:
        self._leader_contact = raft_clock()
        self._probe_at = 0.0
        low, high = self._connected_timeout
        self._patience = low + (high - low) * random.random()
        self._pre_vote = None
        self._pre_vote_won = False
        if isinstance(self._poller, DeadlinePoller):
            self._poller.reset_work()

    def _log_vote_request(self, node: Any, message: dict[str, Any]) -> None:
        """Every vote request is logged where it arrives: each master's log then says who
        started which election and what the receiver had last heard from a leader."""
        role = _ROLES.get(self._SyncObj__raftState, "?")
        log.info("raft_vote_requested", candidate=str(getattr(node, "address", node)), asked_term=message["term"],
                 term=self.raftCurrentTerm, role=role, since_leader_ms=ms(self._since_leader(raft_clock())))

    def request_heartbeat(self) -> None:
        """Make the Raft thread send append-entries to every follower now (any thread)."""
        self._SyncObj__newAppendEntriesTime = 0
        self._SyncObj__pipeNotifier.notify()

    def send_pings(self) -> None:
        transport = self._SyncObj__transport
        for node in self.otherNodes:
            if self.isNodeConnected(node):
                # The term lets the leader count a follower's ping as an answer (see below).
                transport.send(node, {"type": "ping", "term": self.raftCurrentTerm})
