"""The Raft thread's wait ends at a deadline set during a tick (a held-back commit notice)."""

from __future__ import annotations

from pysyncobj.monotonic import monotonic as raft_clock

from raftorch.store.raft_node import DeadlinePoller


class _Recorder:
    def __init__(self) -> None:
        self.timeouts: list[float] = []
        self.subscribed: list[int] = []

    def poll(self, timeout: float) -> None:
        self.timeouts.append(timeout)

    def subscribe(self, descr: int, callback: object, eventMask: int) -> None:
        self.subscribed.append(descr)

    def unsubscribe(self, descr: int) -> None:
        self.subscribed.remove(descr)


def test_a_deadline_shortens_the_next_wait_only() -> None:
    inner = _Recorder()
    poller = DeadlinePoller(inner)
    poller.wake_by(raft_clock() + 0.005)
    poller.wake_by(raft_clock() + 10.0)  # a later deadline does not push the earlier one back
    poller.poll(0.05)
    poller.poll(0.05)
    assert inner.timeouts[0] <= 0.005
    assert inner.timeouts[1] == 0.05


def test_a_passed_deadline_does_not_wait_at_all() -> None:
    inner = _Recorder()
    poller = DeadlinePoller(inner)
    poller.wake_by(raft_clock() - 1.0)
    poller.poll(0.05)
    assert inner.timeouts == [0.0]


def test_subscriptions_go_to_the_wrapped_poller() -> None:
    inner = _Recorder()
    poller = DeadlinePoller(inner)
    poller.subscribe(7, print, 1)
    poller.unsubscribe(7)
    assert inner.subscribed == []
