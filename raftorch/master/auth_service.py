"""The Auth gRPC service: who am I, can I, bearer tokens, and node certificates.

Token records live in the store under /raftorch/tokens/ (hashed secrets only), written
through Raft like any other key; only masters may touch that prefix through the KV API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import structlog

from raftorch.api.v1 import auth_pb2, auth_pb2_grpc, kv_pb2, store_pb2
from raftorch.auth import pki, rbac, tokens
from raftorch.auth.identity import Identity, identity_of
from raftorch.auth.interceptor import Authenticator, bearer
from raftorch.errors import AlreadyExists, Invalid, NotFound, PermissionDenied, error_for_code
from raftorch.master.handlers import time_left, unary, wait_read, wait_write
from raftorch.store.replica import RaftReplica

log = structlog.get_logger("raftorch.auth")

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


class TokenStore:
    def __init__(self, replica: RaftReplica) -> None:
        self._replica = replica

    def get(self, token_id: str) -> tokens.TokenRecord | None:
        with self._replica.reading() as machine:
            found = machine.index.current(tokens.key_of(token_id))
        if found is None:
            return None
        try:
            return tokens.TokenRecord.from_json(found.value or b"")
        except (ValueError, TypeError):
            log.warning("token_record_unreadable", id=token_id)
            return None

    def list(self) -> list[tokens.TokenRecord]:
        with self._replica.reading() as machine:
            found = list(machine.index.range(tokens.TOKEN_PREFIX, True, 0))
        out = []
        for kv in found:
            try:
                out.append(tokens.TokenRecord.from_json(kv.value or b""))
            except (ValueError, TypeError):
                continue
        return out

    async def barrier(self, timeout: float = 2.0) -> None:
        await wait_read(self._replica.read_barrier(), timeout)

    async def put(self, record: tokens.TokenRecord, only_if_absent: bool, timeout: float,
                  request_id: str = "") -> bool:
        """Write the record; with `only_if_absent`, False when the id is taken."""
        key = tokens.key_of(record.id)
        compare = [kv_pb2.Compare(key=key, target=kv_pb2.Compare.VERSION, result=kv_pb2.Compare.EQUAL,
                                  version=0)] if only_if_absent else []
        txn = kv_pb2.TxnRequest(compare=compare, success=[kv_pb2.RequestOp(
            request_put=kv_pb2.PutRequest(key=key, value=record.to_json()))])
        command = store_pb2.Command(request_id=request_id or uuid.uuid4().hex, txn=txn)
        result = await wait_write(self._replica.submit(command), timeout)
        if result.WhichOneof("result") == "error":
            raise error_for_code(result.error.code, result.error.message)
        return bool(result.txn.succeeded)


def to_pb(ident: Identity) -> auth_pb2.Identity:
    return auth_pb2.Identity(kind=ident.kind, name=ident.name, role=ident.role, namespace=ident.namespace or "")


def token_pb(r: tokens.TokenRecord) -> auth_pb2.Token:
    return auth_pb2.Token(id=r.id, kind=r.kind, name=r.name, role=r.role, namespace=r.namespace,
                          created=r.created, expires=r.expires, revoked=r.revoked)


class AuthService(auth_pb2_grpc.AuthServicer):
    def __init__(self, store: TokenStore, authenticator: Authenticator, ca: pki.CertKey,
                 node_cert_ttl: float, write_timeout: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._auth = authenticator
        self._ca = ca
        self._ca_hash = pki.ca_hash(ca.cert_pem)
        self._node_ttl = dt.timedelta(seconds=node_cert_ttl)
        self._write_timeout = write_timeout
        self._clock = clock

    @unary
    async def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
                     ) -> auth_pb2.Identity:
        return to_pb(identity_of(context))

    @unary
    async def CanI(self, request: auth_pb2.CanIRequest, context: grpc.aio.ServicerContext
                   ) -> auth_pb2.CanIResponse:
        if request.verb not in rbac.VERBS:
            raise Invalid(f"verb: expected one of {', '.join(sorted(rbac.VERBS))}, got {request.verb!r}")
        resource = rbac.parse_resource(request.resource)
        namespace = request.namespace if resource in rbac.NAMESPACED else ""
        reason = rbac.decide(identity_of(context), rbac.Request(request.verb, resource, namespace))
        return auth_pb2.CanIResponse(allowed=reason is None, reason=reason or "")

    @unary
    async def CreateToken(self, request: auth_pb2.CreateTokenRequest, context: grpc.aio.ServicerContext
                          ) -> auth_pb2.CreateTokenResponse:
        text = request.token or tokens.generate()
        record = tokens.new_record(text, request.kind or "user", request.name, request.role,
                                   request.namespace, request.ttl, self._clock())
        if not await self._store.put(record, True, time_left(context, self._write_timeout), request.request_id):
            raise AlreadyExists(f"token {record.id} already exists")
        log.info("token_created", id=record.id, kind=record.kind, name=record.name, role=record.role,
                 by=identity_of(context).name)
        return auth_pb2.CreateTokenResponse(info=token_pb(record), token=text, ca_hash=self._ca_hash)

    @unary
    async def ListTokens(self, request: auth_pb2.ListTokensRequest, context: grpc.aio.ServicerContext
                         ) -> auth_pb2.ListTokensResponse:
        await self._store.barrier(time_left(context, self._write_timeout))
        return auth_pb2.ListTokensResponse(tokens=[token_pb(r) for r in sorted(
            self._store.list(), key=lambda r: r.created)])

    @unary
    async def DeleteToken(self, request: auth_pb2.DeleteTokenRequest, context: grpc.aio.ServicerContext
                          ) -> auth_pb2.DeleteTokenResponse:
        tokens.check_id(request.id)
        await self._store.barrier(time_left(context, self._write_timeout))
        record = self._store.get(request.id)
        if record is None:
            raise NotFound(f"token {request.id} not found")
        revoked = record.revoke()
        await self._store.put(revoked, False, time_left(context, self._write_timeout), request.request_id)
        log.info("token_revoked", id=record.id, by=identity_of(context).name)
        return auth_pb2.DeleteTokenResponse(info=token_pb(revoked))

    @unary
    async def Join(self, request: auth_pb2.JoinRequest, context: grpc.aio.ServicerContext
                   ) -> auth_pb2.CertificateResponse:
        # The interceptor has checked the join token; a node name is a DNS label.
        if not _NODE_NAME.match(request.node):
            raise Invalid(f"node: {request.node!r} is not a valid node name")
        cert = pki.sign_node_csr(self._ca, request.csr, request.node, self._node_ttl)
        token = bearer(context.invocation_metadata()) or ""
        log.info("node_joined", node=request.node, token=token.partition(".")[0])
        return auth_pb2.CertificateResponse(certificate=cert, ca=self._ca.cert_pem)

    @unary
    async def Renew(self, request: auth_pb2.RenewRequest, context: grpc.aio.ServicerContext
                    ) -> auth_pb2.CertificateResponse:
        ident = identity_of(context)
        if not ident.is_node:
            raise PermissionDenied(f"{ident.describe()} may not renew a node certificate: nodes only")
        cert = pki.sign_node_csr(self._ca, request.csr, ident.name, self._node_ttl)
        log.info("node_certificate_renewed", node=ident.name)
        return auth_pb2.CertificateResponse(certificate=cert, ca=self._ca.cert_pem)


async def register_bootstrap_tokens(store: TokenStore, path: Path, ttl: float, clock: Callable[[], float]
                                    ) -> None:
    """Store the join tokens listed in `path` (one per line) unless their id is known already:
    a revoked or expired one stays so, as its record is kept."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        log.warning("bootstrap_tokens_unreadable", path=str(path), error=exc.strerror)
        return
    for line in lines:
        if not line or line.startswith("#"):
            continue
        try:
            record = tokens.new_record(line, "join", "bootstrap", "node", "", ttl, clock())
        except Invalid as err:
            log.warning("bootstrap_token_invalid", path=str(path), error=str(err))
            continue
        for _ in range(50):
            try:
                if await store.put(record, True, 5.0, f"bootstrap-{record.id}"):
                    log.info("bootstrap_token_registered", id=record.id)
                break
            except Exception as exc:
                log.warning("bootstrap_token_retry", id=record.id, error=str(exc))
                await asyncio.sleep(0.5)
