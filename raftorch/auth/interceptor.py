"""The master's authentication and authorization interceptor, and the audit log.

For every RPC but the health service (and Auth/Join, which its servicer checks against a join
token), the interceptor establishes the caller's `Identity` from a bearer token
(`authorization: Bearer ID.SECRET`) or else from the TLS client certificate, maps the RPC to a
verb, resource and namespace (`rbac.request_for`), checks the role, and makes the identity
available to the servicer (`identity_of`). Mutating requests leave one JSON line in the audit
log with their result.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import grpc
import grpc.aio
import structlog

from raftorch.auth import rbac, tokens
from raftorch.auth.identity import Identity, set_identity
from raftorch.auth.pki import CertVerifier
from raftorch.auth.proof import CERT_HEADER, PROOF_HEADER, ProofVerifier
from raftorch.errors import Invalid, RaftorchError, Unauthenticated

log = structlog.get_logger("raftorch.auth")
T = TypeVar("T")

OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
JOIN_METHOD = "/raftorch.v1.Auth/Join"
# Heartbeats are kept out of the Raft log, and out of the audit log for the same reason.
NOT_AUDITED = frozenset({"/raftorch.v1.Agents/Heartbeat", "/raftorch.v1.Agents/ForwardHeartbeats"})

TokenLookup = Callable[[str], "tokens.TokenRecord | None"]


class AuditLog:
    """One JSON line per mutating request: time, identity, verb, resource, namespace, name, result.

    Past `max_bytes` the file is renamed to PATH.1 (older ones shift to .2 ... .`backups`, the
    oldest goes) and a new one begins, so a busy cluster cannot fill the master's disk."""

    def __init__(self, path: Path | None, max_bytes: int = 100 << 20, backups: int = 5) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._size = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._file = self.path.open("a", buffering=1)
        self._size = self._file.tell()

    def record(self, who: str, req: rbac.Request, result: str) -> None:
        if self._file is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        line = json.dumps({"time": stamp,
                           "identity": who, "verb": req.verb, "resource": req.resource,
                           "namespace": req.namespace, "name": req.name, "result": result},
                          separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                return
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)

    def _rotate(self) -> None:
        """Called with the lock held. A failed rename keeps writing to the current file: losing
        rotation is better than losing audit lines."""
        assert self.path is not None and self._file is not None
        try:
            self._file.close()
            if self.backups == 0:
                self.path.unlink()
            else:
                for n in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{n}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        except OSError as err:
            log.warning("audit_rotate_failed", path=str(self.path), error=str(err))
        self._open()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization: expected 'Bearer TOKEN'")
            return token.strip()
    return None


class Authenticator:
    """Credentials to an Identity: bearer tokens from the store, certificates against the CA."""

    def __init__(self, ca_pem: bytes, lookup: TokenLookup, now: Callable[[], float] = time.time) -> None:
        self.verifier = CertVerifier(ca_pem)
        self.proofs = ProofVerifier(self.verifier, now)
        self._lookup = lookup
        self._now = now

    def token_identity(self, token: str) -> Identity:
        token_id, secret = tokens.parse(token)
        return tokens.verify(self._lookup(token_id), token_id, secret, self._now(), "user").identity()

    def join_record(self, token: str) -> tokens.TokenRecord:
        token_id, secret = tokens.parse(token)
        return tokens.verify(self._lookup(token_id), token_id, secret, self._now(), "join")

    def identify(self, token: str | None, metadata: Any) -> Identity:
        if token is not None:
            return self.token_identity(token)
        cert = proof = None
        for key, value in metadata or ():
            if key == CERT_HEADER:
                cert = value
            elif key == PROOF_HEADER:
                proof = value
        if cert is None or proof is None:
            raise Unauthenticated("no credentials: present a client certificate or a bearer token "
                                  "(raftctl: the client config's cert-file/key-file or token)")
        return self.proofs.identity(str(cert), str(proof))


def _code_name(context: Any) -> str:
    try:
        code = context.code()
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK" if code in (None, 0) else str(code)


class Identifies(Protocol):
    """What the interceptor asks of an authenticator (the cluster's, or a local socket's)."""

    def identify(self, token: str | None, metadata: Any) -> Identity: ...

    def join_record(self, token: str) -> tokens.TokenRecord: ...


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, auth: Identifies, audit: AuditLog,
                 barrier: Callable[[], Awaitable[None]] | None = None,
                 decode: Callable[[str, Any], Any] = lambda _method, request: request,
                 refused: Callable[[str, str], None] | None = None) -> None:
        """`decode(method, request)`: the parsed request, when the handlers below take raw
        bytes (the masters' edge parses requests itself); raises Invalid for bad bytes.
        `refused(method, code)`: told of each call turned away here (for metrics)."""
        self._refused = refused
        self._auth = auth
        self._decode = decode
        self._audit = audit
        # A token created a moment ago on another master may not have reached this replica:
        # on an unknown token, catch up with the leader once and look again.
        self._barrier = barrier
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method
        handler = await continuation(details)
        if handler is None or method in OPEN_METHODS:
            return handler
        # The wrapped handler is the same for every call of a method: built once.
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    async def _admit(self, method: str, request: Any, context: Any) -> tuple[str, rbac.Request | None, Any]:
        """Authenticate and authorize; returns (who, request) for the audit and the parsed
        request, or aborts."""
        metadata = context.invocation_metadata()
        who = "anonymous"
        try:
            token = bearer(metadata)
            if method == JOIN_METHOD:
                if token is None:
                    raise Unauthenticated("joining needs a join token (raftorch-agent --join-token)")
                request = self._decode(method, request)
                record = await self._retrying(lambda: self._auth.join_record(token))
                return f"join-token:{record.id}", rbac.Request("create", "certificates", "",
                                                               getattr(request, "node", "")), request
            ident = await self._retrying(lambda: self._auth.identify(token, metadata)) \
                if token is not None else self._auth.identify(None, metadata)
            who = f"{ident.kind}:{ident.name}"
            # Strangers are turned away above, before their bytes are parsed.
            request = self._decode(method, request)
            try:
                req = rbac.request_for(method, request)
            except RaftorchError:
                raise
            except Exception:
                raise Invalid(f"{method}: the request names no resource it may act on") from None
            if req is not None:
                rbac.check(ident, req)
            set_identity(ident)
            return who, req, request
        except RaftorchError as err:
            if method == JOIN_METHOD:
                log.warning("join_refused", node=getattr(request, "node", ""), error=err.message)
            req = None
            try:
                req = rbac.request_for(method, request)
            except Exception:
                req = None
            if req is not None and self._audited(method, req):
                self._audit.record(who, req, err.grpc_code.name)
            if self._refused is not None:
                self._refused(method, err.grpc_code.name)
            await context.abort(err.grpc_code, err.message)
            raise  # unreachable: abort raises

    async def _retrying(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Unauthenticated:
            if self._barrier is None:
                raise
            with contextlib.suppress(RaftorchError):
                await self._barrier()
            return fn()

    @staticmethod
    def _audited(method: str, req: rbac.Request | None) -> bool:
        return req is not None and req.verb in rbac.MUTATING and method not in NOT_AUDITED

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        admit = self._admit
        audit = self._audit
        audited = self._audited
        h: Any = handler
        if h.unary_unary is not None:
            inner_uu = h.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                who, req, request = await admit(method, request, context)
                try:
                    return await inner_uu(request, context)
                finally:
                    if audited(method, req):
                        assert req is not None
                        audit.record(who, req, _code_name(context))

            return grpc.unary_unary_rpc_method_handler(unary_unary, h.request_deserializer, h.response_serializer)
        if h.unary_stream is not None:
            inner_us = h.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                who, req, request = await admit(method, request, context)
                try:
                    if inspect.isasyncgenfunction(inner_us):
                        async for item in inner_us(request, context):
                            yield item
                    else:
                        await inner_us(request, context)
                finally:
                    if audited(method, req):
                        assert req is not None
                        audit.record(who, req, _code_name(context))

            return grpc.unary_stream_rpc_method_handler(unary_stream, h.request_deserializer, h.response_serializer)
        inner = h.stream_stream if h.stream_stream is not None else h.stream_unary
        streaming_out = h.stream_stream is not None

        async def rest(first: Any, it: AsyncIterator[Any]) -> AsyncIterator[Any]:
            if first is not None:
                yield first
            async for item in it:
                yield item

        if streaming_out:
            async def stream_stream(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
                it = aiter(request_iterator)
                first = await anext(it, None)
                who, req, first = await admit(method, first, context)
                try:
                    if inspect.isasyncgenfunction(inner):
                        async for item in inner(rest(first, it), context):
                            yield item
                    else:
                        await inner(rest(first, it), context)
                finally:
                    if audited(method, req):
                        assert req is not None
                        audit.record(who, req, _code_name(context))

            return grpc.stream_stream_rpc_method_handler(stream_stream, h.request_deserializer,
                                                         h.response_serializer)

        async def stream_unary(request_iterator: Any, context: Any) -> Any:
            it = aiter(request_iterator)
            first = await anext(it, None)
            who, req, first = await admit(method, first, context)
            try:
                return await inner(rest(first, it), context)
            finally:
                if audited(method, req):
                    assert req is not None
                    audit.record(who, req, _code_name(context))

        return grpc.stream_unary_rpc_method_handler(stream_unary, h.request_deserializer, h.response_serializer)
