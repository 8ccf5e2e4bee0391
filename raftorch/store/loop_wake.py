"""Awaiting the replica's futures from an asyncio loop with one wake-up per batch, not per future.

`asyncio.wrap_future` wakes the loop once per future (`call_soon_threadsafe`: a write to the
loop's self-pipe, then a pass of the loop), and the Raft thread resolves every command of a
log entry one after the other: one entry of 64 puts cost 64 wake-ups. Here a future resolved on
another thread is posted to its loop's inbox, and only the post that finds the inbox empty wakes
the loop, which then hands out everything posted meanwhile.

It also never cancels the source future: a replica future stands for a command that may still be
committed, and the Raft thread sets its result whatever the waiter does (a cancelled
concurrent future would refuse the result). A waiter that gives up (timeout, cancelled call)
just stops listening.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, TypeVar

T = TypeVar("T")


class _Inbox:
    """Futures resolved on other threads, waiting to be handed to their loop's waiters."""

    __slots__ = ("__weakref__", "_items", "_lock", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Future[Any], Future[Any], asyncio.TimerHandle | None]] = []

    def post(self, waiter: asyncio.Future[Any], timer: asyncio.TimerHandle | None, source: Future[Any]) -> None:
        """Any thread, `source` done: the first post since the last drain wakes the loop."""
        with self._lock:
            self._items.append((waiter, source, timer))
            wake = len(self._items) == 1
        if wake:
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for waiter, source, timer in items:
            if timer is not None:
                timer.cancel()
            if waiter.done():
                continue
            if source.cancelled():
                waiter.cancel()
                continue
            exc = source.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(source.result())


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_inboxes_lock = threading.Lock()


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    inbox = _inboxes.get(loop)
    if inbox is None:
        with _inboxes_lock:
            inbox = _inboxes.setdefault(loop, _Inbox(loop))
    return inbox


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def wait_result(source: Future[T], timeout: float) -> asyncio.Future[T]:
    """An asyncio future (of the running loop) with `source`'s outcome, or TimeoutError after
    `timeout` seconds. Cancelling or abandoning it leaves `source` alone."""
    return _waiter(source, timeout)


def settled(source: Future[T]) -> asyncio.Future[T]:
    """`wait_result` with no time limit of its own: for many futures awaited together under
    one deadline (a batch of writes gathered by one call)."""
    return _waiter(source, None)


def _waiter(source: Future[T], timeout: float | None) -> asyncio.Future[T]:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    if source.done():
        # Resolved already (a local replica, a failed submit): no wake-up needed.
        if source.cancelled():
            waiter.cancel()
        elif (exc := source.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(source.result())
        return waiter
    timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
    inbox = _inbox(loop)
    source.add_done_callback(lambda f: inbox.post(waiter, timer, f))
    return waiter
