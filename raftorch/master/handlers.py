"""Glue between asyncio gRPC handlers and the rest: error mapping and waiting on futures."""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog

from raftorch.errors import Internal, RaftorchError, Unavailable, UnknownOutcome

log = structlog.get_logger("raftorch.master")

T = TypeVar("T")
Handler = Callable[..., Awaitable[Any]]


def unary(fn: Handler) -> Handler:
    """Map raftorch errors to their gRPC status; anything else becomes INTERNAL, logged."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except RaftorchError as exc:
            await context.abort(exc.grpc_code, exc.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except grpc.aio.AioRpcError as exc:
            # A call this master forwarded to another one failed: pass its status on.
            await context.abort(exc.code(), exc.details() or exc.code().name)
        except Exception:
            log.exception("handler_failed", method=fn.__name__)
            err = Internal(f"{fn.__name__} failed inside the master; see its log")
            await context.abort(err.grpc_code, err.message)

    return wrapper


def time_left(context: grpc.aio.ServicerContext, cap: float) -> float:
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return cap
    return max(0.01, min(cap, remaining - 0.05))


class LoopWaker:
    """Hands results of futures resolved on other threads (Raft's, mostly) to one event loop,
    with one wake-up per burst instead of one per future: a Raft batch settles hundreds of
    writes at once, and a wake-up (a write to the loop's self-pipe) each cost Raft's thread
    and the loop a system call per write. Cancelling the awaited side leaves the source alone
    (a write that timed out here may still be applied)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Future[Any]]] = []
        self._scheduled = False

    def wrap(self, source: Future[T]) -> asyncio.Future[T]:
        target: asyncio.Future[T] = self._loop.create_future()
        if source.done():
            _settle(target, source)
        else:
            source.add_done_callback(functools.partial(self._done, target))
        return target

    def _done(self, target: asyncio.Future[Any], source: Future[Any]) -> None:
        with self._lock:
            self._ready.append((target, source))
            if self._scheduled:
                return
            self._scheduled = True
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for target, source in ready:
            _settle(target, source)


def _settle(target: asyncio.Future[Any], source: Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = weakref.WeakKeyDictionary()


def awaitable(future: Future[T]) -> asyncio.Future[T]:
    """`future` as an asyncio future of the running loop, woken up in bursts (LoopWaker)."""
    loop = asyncio.get_running_loop()
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = LoopWaker(loop)
    return waker.wrap(future)


async def wait_write(future: Future[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable(future), timeout)
    except TimeoutError:
        raise UnknownOutcome(
            f"the write was not confirmed within {timeout:.1f}s (no quorum?); it may still be applied"
        ) from None


async def wait_read(future: Future[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable(future), timeout)
    except TimeoutError:
        raise Unavailable(f"no read barrier within {timeout:.1f}s: this master cannot reach a quorum") from None
