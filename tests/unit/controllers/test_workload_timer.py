"""The manager's timed passes: steps ask for a pass at a wall-clock time; one pass runs then."""

from __future__ import annotations

from raftorch.master.workload_steps import WorkloadSteps


class _Clocked(WorkloadSteps):
    def __init__(self) -> None:
        self.now = 100.0
        self.wall = lambda: self.now


def test_the_earliest_wake_wins_and_is_due_once() -> None:
    steps = _Clocked()
    assert not steps._timer_due()
    steps._wake(130.0)
    steps._wake(110.0)
    steps._wake(None)
    steps.now = 109.9
    assert not steps._timer_due()
    steps.now = 110.0
    assert steps._timer_due()
    assert not steps._timer_due()  # the pass that runs asks again for what it still needs
