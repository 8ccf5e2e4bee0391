"""The controllers' keyed work queue: dedup, per-key back-off, no lost updates."""

from __future__ import annotations

from raftorch.master.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_handed_out_once() -> None:
    q: WorkQueue[str] = WorkQueue(Clock())
    for _ in range(5):
        q.add("default/web")
    q.add("default/db")
    q.add_all(["default/web", "default/db"])
    assert len(q) == 2
    assert q.drain() == ["default/web", "default/db"]
    assert q.get() is None


def test_keys_come_out_in_the_order_first_added() -> None:
    q: WorkQueue[str] = WorkQueue(Clock())
    q.add_all(["a/1", "a/2", "a/1", "a/3"])
    assert [q.get(), q.get(), q.get(), q.get()] == ["a/1", "a/2", "a/3", None]


def test_a_key_added_during_its_reconcile_is_processed_again_afterwards() -> None:
    q: WorkQueue[str] = WorkQueue(Clock())
    q.add("default/web")
    key = q.get()
    assert key == "default/web"
    # An event for the same object arrives while it is being reconciled: the key is not handed
    # out a second time concurrently...
    q.add("default/web")
    q.add("default/web")
    assert q.get() is None
    # ...but once the reconcile is done, it comes back exactly once.
    q.done(key)
    assert q.get() == "default/web"
    q.done("default/web")
    assert q.get() is None


def test_a_key_not_re_added_during_its_reconcile_is_not_processed_again() -> None:
    q: WorkQueue[str] = WorkQueue(Clock())
    q.add("default/web")
    key = q.get()
    assert key is not None
    q.done(key)
    assert q.get() is None
    assert len(q) == 0


def test_other_keys_flow_while_one_is_processing() -> None:
    q: WorkQueue[str] = WorkQueue(Clock())
    q.add("a/1")
    first = q.get()
    q.add("a/2")
    q.add("a/1")
    assert q.get() == "a/2"
    assert first is not None
    q.done(first)
    assert q.get() == "a/1"


def test_retry_backs_off_per_key_doubling_up_to_a_cap() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock, base_delay=0.1, max_delay=0.5)
    delays = []
    for _ in range(5):
        q.add("a/bad")
        key = q.get()
        assert key == "a/bad"
        delays.append(q.retry(key))
        q.done(key)
        assert q.get() is None, "a retried key waits for its back-off"
        clock.now += delays[-1]
        assert q.get() == "a/bad"
        q.done("a/bad")
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert q.failures("a/bad") == 5


def test_back_off_of_one_key_does_not_hold_up_others() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock, base_delay=1.0)
    q.add("a/bad")
    bad = q.get()
    assert bad is not None
    q.retry(bad)
    q.done(bad)
    q.add("a/good")
    assert q.get() == "a/good"
    assert q.next_delay() == 1.0
    clock.now += 1.0
    assert q.get() == "a/bad"


def test_forget_starts_the_back_off_over() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock, base_delay=0.1, max_delay=10)
    for _ in range(3):
        q.retry("a/x")
    q.forget("a/x")
    assert q.failures("a/x") == 0
    assert q.retry("a/x") == 0.1


def test_a_delayed_key_added_meanwhile_comes_out_once() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock, base_delay=1.0)
    q.retry("a/x")
    q.add("a/x")  # a new event for it before the back-off ends: processed now
    assert q.get() == "a/x"
    q.done("a/x")
    clock.now += 1.0
    assert q.get() == "a/x"  # and the retry still happens: it may have been a different failure
    q.done("a/x")
    assert q.get() is None
    assert q.next_delay() is None
