"""Glue between asyncio gRPC handlers and the rest: error mapping and waiting on futures."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog

from raftorch.errors import Internal, RaftorchError, Unavailable, UnknownOutcome
from raftorch.store.loop_wake import wait_result

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


async def wait_write(future: Future[T], timeout: float) -> T:
    try:
        return await wait_result(future, timeout)
    except TimeoutError:
        raise UnknownOutcome(
            f"the write was not confirmed within {timeout:.1f}s (no quorum?); it may still be applied"
        ) from None


async def wait_read(future: Future[T], timeout: float) -> T:
    try:
        return await wait_result(future, timeout)
    except TimeoutError:
        raise Unavailable(f"no read barrier within {timeout:.1f}s: this master cannot reach a quorum") from None
