"""The back-off of restarted control loops: doubles up to a cap, starts over after a healthy period."""

from __future__ import annotations

from raftorch.master.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delay_doubles_up_to_the_cap() -> None:
    clock = Clock()
    backoff = Backoff(clock, start=0.1, cap=5.0, healthy=30.0)
    delays = []
    for _ in range(9):
        delays.append(backoff.failed())
        clock.now += delays[-1]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_not_ready_until_the_delay_has_passed() -> None:
    clock = Clock()
    backoff = Backoff(clock, start=0.1, cap=5.0, healthy=30.0)
    assert backoff.ready()
    backoff.failed()
    backoff.failed()
    assert not backoff.ready()
    clock.now += 0.2
    assert backoff.ready()


def test_a_healthy_period_resets_the_delay() -> None:
    clock = Clock()
    backoff = Backoff(clock, start=0.1, cap=5.0, healthy=30.0)
    for _ in range(8):
        backoff.failed()
    assert backoff.delay == 5.0
    clock.now += 30.0
    assert backoff.failed() == 0.1
