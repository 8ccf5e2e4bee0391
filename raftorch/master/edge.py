"""The masters' gRPC edge: every request is parsed, bounded and admitted here first.

Services are registered from their protobuf descriptors with the request left as raw bytes,
and parsed here: gRPC answers UNKNOWN when a deserializer raises, while a request that does
not parse (bad wire format, invalid UTF-8 in a string, nesting past the parser's limit) is
the sender's mistake and gets INVALID_ARGUMENT. Every parsed request is then bounded field by
field (validation.check_message), and each stream counts against its client's cap.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import grpc.aio
import structlog
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from raftorch.auth.identity import current_identity
from raftorch.errors import Internal, Invalid, RaftorchError, ResourceExhausted
from raftorch.master.metrics import MasterMetrics, bound, method_labels
from raftorch.master.validation import check_message, check_request_size

log = structlog.get_logger("raftorch.master")

# Streams a client may hold open at once on one master, by group.
DEFAULT_STREAM_CAPS: Mapping[str, int] = {"watch": 256, "stream": 64}
# Watch-like streams; every other streaming method is a "stream".
WATCH_METHODS = frozenset({"raftorch.v1.KV.Watch", "raftorch.v1.Resources.Watch",
                           "raftorch.v1.Agents.WatchNodePods"})


def client_of(context: grpc.aio.ServicerContext) -> str:
    """Whom a stream counts against: the authenticated caller, so that more connections do not
    buy more streams. Masters relay for many callers (leader forwarding) and an insecure master
    knows no callers: those count by connection, as before."""
    ident = current_identity()
    if ident is None or ident.kind == "master":
        peer: str = context.peer() or "unknown"
        return f"connection {peer}"
    return f"{ident.kind} {ident.name}"


@dataclass
class StreamCaps:
    """Open streams per (client, group), capped; one event loop touches it, so no lock."""

    caps: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_STREAM_CAPS))
    _open: dict[tuple[str, str], int] = field(default_factory=dict)

    def acquire(self, client: str, group: str) -> None:
        key = (client, group)
        count = self._open.get(key, 0)
        cap = self.caps[group]
        if count >= cap:
            what = "watches" if group == "watch" else "streams (heartbeats, logs, port-forwards)"
            raise ResourceExhausted(f"{client} already has {count} open {what} on this master, the limit; "
                                    "close some first")
        self._open[key] = count + 1

    def release(self, client: str, group: str) -> None:
        key = (client, group)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def open(self, client: str, group: str) -> int:
        return self._open.get((client, group), 0)


def parse(cls: type[Message], raw: bytes) -> Message:
    """A request from its bytes, bounded; raises Invalid for anything else."""
    check_request_size(len(raw))
    try:
        msg = cls.FromString(raw)
    except DecodeError as exc:
        reason = str(exc).rpartition(": ")[2] or "malformed"
        raise Invalid(f"request: not a valid {cls.DESCRIPTOR.name} ({reason}; strings must be UTF-8, "
                      "and messages nest at most 100 deep)") from None
    check_message(msg)
    return msg


def _serialize(msg: Message | bytes) -> bytes:
    # A watch sends the bytes of an event encoded once for all its watchers (watch_share.py).
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


async def _abort(context: grpc.aio.ServicerContext, err: RaftorchError) -> NoReturn:
    await context.abort(err.grpc_code, err.message)
    raise AssertionError("abort returned")


async def _fail(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> NoReturn:
    """End a call that raised: our errors keep their code, anything else is a logged INTERNAL."""
    if isinstance(exc, RaftorchError):
        await _abort(context, exc)
    if isinstance(exc, grpc.aio.AioRpcError):
        # A call this master made on the client's behalf failed: pass its status on.
        await context.abort(exc.code(), exc.details() or exc.code().name)
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    log.error("handler_failed", method=method, exc_info=exc)
    await _abort(context, Internal(f"{method} failed inside the master; see its log"))


class _Method:
    """One RPC behind the edge: parse and bound each request, count streams, map errors."""

    def __init__(self, method: MethodDescriptor, fn: Callable[..., Any], caps: StreamCaps,
                 metrics: MasterMetrics) -> None:
        self.name = method.full_name
        self.cls: type[Message] = GetMessageClass(method.input_type)
        self.fn = fn
        self.caps = caps
        self.group = "watch" if self.name in WATCH_METHODS else "stream"
        self.shape = (method.client_streaming, method.server_streaming)
        self.metrics = metrics
        self.labels = method_labels(self.name)
        self.seconds = bound(metrics.grpc_seconds, *self.labels)
        self._by_code: dict[str, Any] = {}

    def _count(self, context: grpc.aio.ServicerContext, failure: BaseException | None) -> None:
        """Count a finished call under its status code: a dict lookup and an increment."""
        if failure is None:
            code = "OK"
        elif isinstance(failure, (asyncio.CancelledError, GeneratorExit)):
            code = "CANCELLED"
        else:
            status = context.code()
            code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = bound(self.metrics.grpc_requests, *self.labels, code)
        child.inc()

    async def _admit(self, raw: bytes | Message, context: grpc.aio.ServicerContext) -> Message:
        if isinstance(raw, Message):
            return raw  # parsed and bounded already, by the auth interceptor (see `decode`)
        try:
            return parse(self.cls, raw)
        except RaftorchError as err:
            await _abort(context, err)

    async def _requests(self, raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        async for raw in raws:
            yield await self._admit(raw, context)

    async def _call(self, request: object, context: grpc.aio.ServicerContext) -> Message:
        try:
            result: Message = await self.fn(request, context)
            return result
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _fail(context, exc, self.name)

    async def _open(self, context: grpc.aio.ServicerContext) -> str:
        """Count a new stream against its client, or refuse it; returns the client."""
        client = client_of(context)
        try:
            self.caps.acquire(client, self.group)
        except RaftorchError as err:
            await _abort(context, err)
        return client

    async def _stream(self, request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        """A servicer written as an async generator."""
        client = await self._open(context)
        try:
            async for response in self.fn(request, context):
                yield response
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _fail(context, exc, self.name)
        finally:
            self.caps.release(client, self.group)

    async def _written(self, request: object, context: grpc.aio.ServicerContext) -> None:
        """A servicer that writes its responses with context.write (gRPC's health service)."""
        client = await self._open(context)
        try:
            await self.fn(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _fail(context, exc, self.name)
        finally:
            self.caps.release(client, self.group)

    async def unary_unary(self, raw: bytes, context: grpc.aio.ServicerContext) -> Message:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await self._call(await self._admit(raw, context), context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.seconds.observe(time.perf_counter() - started)
            self._count(context, failure)

    async def unary_stream(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        failure: BaseException | None = None
        try:
            request = await self._admit(raw, context)
            async for response in self._stream(request, context):
                yield response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._count(context, failure)

    async def unary_written(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        failure: BaseException | None = None
        try:
            await self._written(await self._admit(raw, context), context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._count(context, failure)

    async def stream_unary(self, raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Message:
        failure: BaseException | None = None
        client = await self._open(context)
        try:
            return await self._call(self._requests(raws, context), context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.caps.release(client, self.group)
            self._count(context, failure)

    async def stream_stream(self, raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[Message]:
        failure: BaseException | None = None
        try:
            async for response in self._stream(self._requests(raws, context), context):
                yield response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._count(context, failure)

    async def stream_written(self, raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        failure: BaseException | None = None
        try:
            await self._written(self._requests(raws, context), context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._count(context, failure)

    def handler(self) -> grpc.RpcMethodHandler:
        # No request deserializer: the bytes come to `_admit`, which parses them.
        if self.shape == (False, False):
            return grpc.unary_unary_rpc_method_handler(self.unary_unary, response_serializer=_serialize)
        # A streaming servicer either yields its responses or writes them: the wrapper must do the same.
        generator = inspect.isasyncgenfunction(self.fn)
        if self.shape == (False, True):
            return grpc.unary_stream_rpc_method_handler(
                self.unary_stream if generator else self.unary_written, response_serializer=_serialize)
        if self.shape == (True, False):
            return grpc.stream_unary_rpc_method_handler(self.stream_unary, response_serializer=_serialize)
        return grpc.stream_stream_rpc_method_handler(
            self.stream_stream if generator else self.stream_written, response_serializer=_serialize)


# Request classes of the methods behind the edge, by gRPC path ("/pkg.Service/Method").
_REQUEST_CLASSES: dict[str, type[Message]] = {}


def decode(path: str, raw: object) -> object:
    """The request of the method at `path` from its bytes, parsed and bounded as the edge does
    (raises Invalid). The auth interceptor runs before the edge and needs the parsed request to
    know what a call acts on; it hands the parsed message on, so each request is parsed once.
    Anything that is not bytes, or of a method not behind the edge, is returned as it is."""
    cls = _REQUEST_CLASSES.get(path)
    if cls is None or not isinstance(raw, bytes):
        return raw
    return parse(cls, raw)


def add_service(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor, caps: StreamCaps,
                metrics: MasterMetrics | None = None) -> None:
    """Serve `servicer`'s methods for `service`, each behind the edge, counted in `metrics`."""
    metrics = metrics if metrics is not None else MasterMetrics()
    for method in service.methods:
        _REQUEST_CLASSES[f"/{service.full_name}/{method.name}"] = GetMessageClass(method.input_type)
    handlers = {method.name: _Method(method, getattr(servicer, method.name), caps, metrics).handler()
                for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
