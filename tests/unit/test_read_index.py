"""The read-index tracker decides when a leader may answer a linearizable read locally.

Each test drives it the way the replica does: `on_sent`/`on_answer` per append-entries
message on Raft's thread, `add` when a read arrives, `poll` after each Raft tick.
"""

from __future__ import annotations

import pytest

from raftorch.errors import NotLeader
from raftorch.store.read_index import ReadIndexTracker

TERM = 3
FOLLOWERS = ["b", "c"]


def exchange(tracker: ReadIndexTracker, *nodes: str) -> None:
    """One append-entries message to each node, and its answer."""
    for node in nodes:
        tracker.on_sent(node)
        tracker.on_answer(node)


def test_read_waits_for_a_majority_to_answer_a_message_sent_after_it() -> None:
    tracker = ReadIndexTracker()
    exchange(tracker, "b", "c")
    read = tracker.add(TERM, commit_index=10, followers=FOLLOWERS)
    tracker.poll(leader=True, term=TERM, applied=10, followers=2)
    assert not read.done(), "answers to messages sent before the read proved nothing about it"

    tracker.on_sent("b")
    tracker.poll(leader=True, term=TERM, applied=10, followers=2)
    assert not read.done(), "a message sent but not answered proves nothing"

    tracker.on_answer("b")
    tracker.poll(leader=True, term=TERM, applied=10, followers=2)
    assert read.done() and read.exception() is None


def test_an_answer_to_an_earlier_message_does_not_confirm_a_read() -> None:
    tracker = ReadIndexTracker()
    tracker.on_sent("b")  # in flight when the read starts
    read = tracker.add(TERM, 5, FOLLOWERS)
    tracker.on_sent("b")
    tracker.on_answer("b")  # answers the first message, not the second
    tracker.poll(True, TERM, 5, 2)
    assert not read.done()
    tracker.on_answer("b")
    tracker.poll(True, TERM, 5, 2)
    assert read.done()


def test_five_members_need_two_followers() -> None:
    tracker = ReadIndexTracker()
    followers = ["b", "c", "d", "e"]
    read = tracker.add(TERM, 1, followers)
    exchange(tracker, "b")
    tracker.poll(True, TERM, 1, 4)
    assert not read.done(), "leader + one follower is 2 of 5"
    exchange(tracker, "d")
    tracker.poll(True, TERM, 1, 4)
    assert read.done()


def test_a_confirmed_read_waits_until_the_state_machine_has_applied_its_index() -> None:
    tracker = ReadIndexTracker()
    read = tracker.add(TERM, commit_index=20, followers=FOLLOWERS)
    exchange(tracker, "b", "c")
    tracker.poll(True, TERM, applied=19, followers=2)
    assert not read.done()
    tracker.poll(True, TERM, applied=20, followers=2)
    assert read.done() and read.exception() is None


def test_a_single_member_reads_once_applied() -> None:
    tracker = ReadIndexTracker()
    read = tracker.add(TERM, 4, followers=[])
    tracker.poll(True, TERM, applied=3, followers=0)
    assert not read.done()
    tracker.poll(True, TERM, applied=4, followers=0)
    assert read.done()


def test_reads_fail_with_not_leader_when_leadership_ends() -> None:
    tracker = ReadIndexTracker()
    read = tracker.add(TERM, 1, FOLLOWERS)
    tracker.poll(leader=False, term=TERM, applied=1, followers=2)
    with pytest.raises(NotLeader):
        read.result(timeout=0)


def test_reads_of_an_older_term_fail_even_if_answers_arrive() -> None:
    tracker = ReadIndexTracker()
    read = tracker.add(TERM, 1, FOLLOWERS)
    exchange(tracker, "b", "c")
    tracker.poll(leader=True, term=TERM + 1, applied=1, followers=2)
    with pytest.raises(NotLeader):
        read.result(timeout=0)


def test_a_term_change_fails_pending_reads_and_forgets_old_counts() -> None:
    tracker = ReadIndexTracker()
    exchange(tracker, "b", "c")
    old = tracker.add(TERM, 1, FOLLOWERS)
    tracker.on_term_change()
    with pytest.raises(NotLeader):
        old.result(timeout=0)
    # Counting starts again: a new read needs new answers.
    new = tracker.add(TERM + 1, 2, FOLLOWERS)
    tracker.poll(True, TERM + 1, 2, 2)
    assert not new.done()
    exchange(tracker, "c")
    tracker.poll(True, TERM + 1, 2, 2)
    assert new.done() and new.exception() is None


def test_a_read_does_not_hang_on_messages_lost_with_a_connection() -> None:
    tracker = ReadIndexTracker()
    tracker.on_sent("b")
    tracker.on_sent("b")  # two messages that the broken connection will never answer
    read = tracker.add(TERM, 1, ["b"])
    tracker.on_disconnect("b")
    # After reconnecting, answers to new messages confirm the read.
    for _ in range(3):
        exchange(tracker, "b")
    tracker.poll(True, TERM, 1, 1)
    assert read.done() and read.exception() is None


def test_answers_of_a_lost_connection_cannot_confirm_a_read_made_after_it() -> None:
    tracker = ReadIndexTracker()
    for _ in range(3):
        tracker.on_sent("b")
    tracker.on_disconnect("b")
    read = tracker.add(TERM, 1, ["b"])
    tracker.poll(True, TERM, 1, 1)
    assert not read.done()
    exchange(tracker, "b")
    tracker.poll(True, TERM, 1, 1)
    assert read.done()


def test_many_reads_resolve_together_and_in_any_order_of_index() -> None:
    tracker = ReadIndexTracker()
    low = tracker.add(TERM, 5, FOLLOWERS)
    high = tracker.add(TERM, 9, FOLLOWERS)
    exchange(tracker, "c")
    tracker.poll(True, TERM, 6, 2)
    assert low.done() and not high.done()
    tracker.poll(True, TERM, 9, 2)
    assert high.done()


def test_poll_without_reads_does_nothing() -> None:
    tracker = ReadIndexTracker()
    tracker.poll(False, TERM, 0, 2)  # no pending reads: nothing to fail or resolve
    read = tracker.add(TERM, 0, FOLLOWERS)
    exchange(tracker, "b")
    tracker.poll(True, TERM, 0, 2)
    assert read.done()


def test_reads_waiting_for_the_same_round_ask_for_it_once() -> None:
    tracker = ReadIndexTracker()
    first = tracker.add(TERM, 1, FOLLOWERS)
    assert tracker.claim_round(), "the first read asks for a round"
    second = tracker.add(TERM, 1, FOLLOWERS)
    assert not tracker.claim_round(), "the round asked for has not started: it serves this read too"

    tracker.on_round()
    exchange(tracker, "b")
    tracker.poll(True, TERM, 1, 2)
    assert first.done() and second.done()

    third = tracker.add(TERM, 1, FOLLOWERS)
    assert tracker.claim_round(), "a read after the round started needs a round of its own"
    tracker.poll(True, TERM, 1, 2)
    assert not third.done()
