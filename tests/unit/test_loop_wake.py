"""Awaiting replica futures from asyncio: outcomes arrive, a batch wakes the loop once, and a
waiter that gives up never disturbs the thread that resolves the future."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from raftorch.errors import NotLeader
from raftorch.store.loop_wake import wait_result
from raftorch.store.read_index import fail, resolve


def test_results_and_errors_set_on_another_thread_reach_the_waiters() -> None:
    async def main() -> tuple[list[int], BaseException]:
        sources: list[Future[int]] = [Future() for _ in range(50)]
        failing: Future[int] = Future()
        waiters = [wait_result(f, 10.0) for f in sources]
        failed = wait_result(failing, 10.0)

        def raft_thread() -> None:
            for i, f in enumerate(sources):
                f.set_result(i)
            failing.set_exception(NotLeader("retry"))

        threading.Thread(target=raft_thread).start()
        results = await asyncio.gather(*waiters)
        with pytest.raises(NotLeader) as err:
            await failed
        return list(results), err.value

    results, err = asyncio.run(main())
    assert results == list(range(50))
    assert isinstance(err, NotLeader)


def test_a_batch_resolved_together_wakes_the_loop_once() -> None:
    wakes: list[Any] = []

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            wakes.append(callback)
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        sources: list[Future[int]] = [Future() for _ in range(64)]
        waiters = [wait_result(f, 10.0) for f in sources]
        done = threading.Event()

        def raft_thread() -> None:
            for i, f in enumerate(sources):
                f.set_result(i)
            done.set()

        # The loop is busy (blocked here) while the whole batch is resolved, as when the Raft
        # thread resolves one entry's commands back to back.
        thread = threading.Thread(target=raft_thread)
        thread.start()
        done.wait(10)
        return list(await asyncio.gather(*waiters))

    assert asyncio.run(main()) == list(range(64))
    assert len(wakes) == 1


def test_a_timed_out_waiter_leaves_the_source_future_to_its_resolver() -> None:
    async def main() -> Future[int]:
        source: Future[int] = Future()
        with pytest.raises(TimeoutError):
            await wait_result(source, 0.01)
        return source

    source = asyncio.run(main())
    assert not source.cancelled()
    source.set_result(7)  # the Raft thread, later: no error
    assert source.result() == 7


def test_an_already_resolved_future_needs_no_wake_up() -> None:
    async def main() -> int:
        source: Future[int] = Future()
        source.set_result(3)
        return await wait_result(source, 1.0)

    assert asyncio.run(main()) == 3


def test_resolving_a_future_its_waiter_cancelled_does_not_raise() -> None:
    cancelled: Future[int] = Future()
    assert cancelled.cancel()
    resolve(cancelled, 1)
    fail(cancelled, NotLeader("retry"))
    assert cancelled.cancelled()
