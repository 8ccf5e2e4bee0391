"""Pre-vote: when a replica would vote for an asker, and when a round is won (pure)."""

from __future__ import annotations

from raftorch.store.election import LogPosition, PreVoteRound, leader_host_answers, pre_vote_refusal

MIN = 0.15
SAME = LogPosition(10, 4)


def refusal(*, asked_term: int = 5, asker: LogPosition = SAME, own_term: int = 4,
            own: LogPosition = SAME, is_leader: bool = False, voted: bool = False,
            since_leader: float | None = 1.0) -> str | None:
    return pre_vote_refusal(asked_term=asked_term, asker_log=asker, own_term=own_term, own_log=own,
                            is_leader=is_leader, voted_this_term=voted, since_leader=since_leader,
                            election_min=MIN)


def test_a_follower_that_lost_its_leader_grants_an_up_to_date_asker() -> None:
    assert refusal() is None
    assert refusal(since_leader=None) is None  # never heard from a leader (a fresh start)
    assert refusal(since_leader=MIN) is None


def test_a_follower_that_hears_its_leader_refuses() -> None:
    # Leader stickiness: one starved replica cannot depose a leader the others still hear.
    assert refusal(since_leader=MIN / 2) is not None
    assert refusal(since_leader=0.0) is not None


def test_the_leader_refuses() -> None:
    assert refusal(is_leader=True, since_leader=None) is not None


def test_an_asker_whose_log_is_behind_is_refused() -> None:
    assert refusal(asker=LogPosition(12, 3), own=LogPosition(10, 4)) is not None  # older last term
    assert refusal(asker=LogPosition(9, 4), own=LogPosition(10, 4)) is not None  # same term, shorter


def test_a_later_last_term_wins_over_a_longer_log() -> None:
    assert refusal(asker=LogPosition(5, 5), own=LogPosition(10, 4), asked_term=6, own_term=5) is None


def test_terms_behind_or_already_voted_are_refused() -> None:
    assert refusal(asked_term=3, own_term=4) is not None
    assert refusal(asked_term=4, own_term=4, voted=True) is not None
    assert refusal(asked_term=4, own_term=4, voted=False) is None


def test_a_round_is_won_by_a_majority_counting_the_asker() -> None:
    three = PreVoteRound(term=5, voters=3)
    assert not three.won
    assert three.grant("b")
    five = PreVoteRound(term=5, voters=5)
    assert not five.grant("b")
    assert not five.grant("b")  # the same voter twice counts once
    assert five.grant("c")
    assert PreVoteRound(term=1, voters=1).won


def test_a_silent_leader_counts_as_alive_while_its_host_acknowledges_the_probe() -> None:
    assert leader_host_answers(None, 0, 0.05)  # no probe sent yet
    assert leader_host_answers(None, 120, 0.05)
    assert leader_host_answers(0.01, 120, 0.05)  # too early to tell
    assert leader_host_answers(0.5, 0, 0.05)  # acknowledged: a held thread, not a lost leader
    assert not leader_host_answers(0.06, 120, 0.05)  # cut off: nothing acknowledged
