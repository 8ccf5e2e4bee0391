"""Elections: Pre-Vote with leader stickiness, and patience with a held leader.

pysyncobj starts an election as soon as a follower's timer runs out: the follower raises its
term and asks for votes, and the leader steps down on seeing the higher term. On a loaded host
the leader's Raft thread is at times held for hundreds of milliseconds (waiting for a core and
for the GIL, with nothing to send and little of its own work: bench/README.md), its followers
hear nothing for longer than 0.15-0.4 s, and a healthy leader lost its term; every write
stalled for the election.

Three things here:
- a follower whose timer (0.15-0.4 s) runs out while its leader is silent but the leader's host
  still acknowledges what the follower sends it (TCP, done by the kernel even while the
  process waits for a core) waits longer, up to 1-2 s (etcd's election timeout): a held leader
  keeps its term. A crashed leader's connections close at once, and a cut-off one's host
  acknowledges nothing: then the short timeout stands and failover stays fast;
- Pre-Vote (Raft thesis 9.6; etcd's PreVote): a replica whose timer runs out asks its peers
  whether they would vote for it at the next term, without raising its own. A peer says yes
  only if the asker's log is at least as up to date as its own and it has not heard its own
  leader within the minimum election timeout (leader stickiness, thesis 4.2.3; the long one
  while that leader's host answers). Only a majority of yeses starts the real election, so a
  lone follower cannot depose a leader the others still hear;
- (in raft_node.py) input waiting in the sockets is read before either decision.

The decisions are pure functions; `raft_node.RaftNode` wires them into pysyncobj's tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRE_VOTE = "pre_vote"
PRE_VOTE_RESPONSE = "pre_vote_response"


@dataclass(frozen=True, slots=True)
class LogPosition:
    """The last entry of a replica's log: (index, term)."""

    index: int
    term: int

    def at_least(self, other: LogPosition) -> bool:
        """Raft's "at least as up to date" (section 5.4.1): a later last term, or the same
        term and at least as long."""
        return self.term > other.term or (self.term == other.term and self.index >= other.index)


def pre_vote_refusal(*, asked_term: int, asker_log: LogPosition, own_term: int, own_log: LogPosition,
                     is_leader: bool, voted_this_term: bool, since_leader: float | None,
                     election_min: float) -> str | None:
    """Why this replica would not vote for the asker at `asked_term`; None: it would.

    `since_leader` is the time since this replica last accepted an append-entries message from
    a leader (None: never). Nothing here changes the replica's term or vote."""
    if is_leader:
        return "this replica leads"
    if asked_term < own_term:
        return "asked term is behind this replica's term"
    if asked_term == own_term and voted_this_term:
        return "already voted in that term"
    if not asker_log.at_least(own_log):
        return "asker's log is behind"
    if since_leader is not None and since_leader < election_min:
        return "a leader was heard within the minimum election timeout"
    return None


@dataclass(slots=True)
class ElectionCounts:
    """What this replica's election timer led to, since start."""

    started: int = 0  # elections this replica started (its term raised)
    averted: int = 0  # timer ran out (or a leader's quorum check failed) with the answer waiting unread
    waited: int = 0  # timer ran out while the silent leader's host still answered
    pre_votes: int = 0  # pre-vote rounds this replica asked for
    refusals: int = 0  # noes it was told


@dataclass(slots=True)
class PreVoteRound:
    """One round of pre-vote: the term asked for and who said yes (the asker counts itself)."""

    term: int
    voters: int
    granted: set[Any] = field(default_factory=set)

    @property
    def won(self) -> bool:
        return (len(self.granted) + 1) * 2 > self.voters

    def grant(self, node: Any) -> bool:
        """Count a yes from `node`; True once a majority said yes."""
        self.granted.add(node)
        return self.won


def pre_vote_request(term: int, own_log: LogPosition) -> dict[str, Any]:
    return {"type": PRE_VOTE, "term": term, "last_log_index": own_log.index, "last_log_term": own_log.term}


def pre_vote_response(term: int, granted: bool) -> dict[str, Any]:
    return {"type": PRE_VOTE_RESPONSE, "term": term, "granted": granted}


def asker_position(message: dict[str, Any]) -> LogPosition:
    return LogPosition(int(message["last_log_index"]), int(message["last_log_term"]))


def leader_host_answers(probe_age: float | None, unacked_bytes: int, grace: float) -> bool:
    """Whether a silent leader's host still acknowledges this follower's messages.

    A leader whose thread is held (a loaded host: waiting for a core, for the GIL) still has
    its kernel acknowledge what arrives on its TCP connections; a leader cut off from the
    followers (a partition, a dead host) does not. `probe_age`: how long ago this follower sent
    its probe in the current silence (None: none sent yet); `unacked_bytes`: what it sent the
    leader that is not acknowledged yet."""
    return probe_age is None or probe_age < grace or unacked_bytes == 0


def ms(seconds: float | None) -> float | None:
    """A duration for a log field: milliseconds, one decimal."""
    return None if seconds is None else round(seconds * 1000, 1)
