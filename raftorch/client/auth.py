"""`client.auth`: who am I, can I, and bearer tokens."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from raftorch.api.v1 import auth_pb2

if TYPE_CHECKING:
    from raftorch.client.connection import Connection


class AuthAPI:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def whoami(self) -> auth_pb2.Identity:
        resp: auth_pb2.Identity = self._conn.call(lambda s, t: s.auth.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=t))
        return resp

    def can_i(self, verb: str, resource: str, namespace: str = "") -> auth_pb2.CanIResponse:
        req = auth_pb2.CanIRequest(verb=verb, resource=resource, namespace=namespace)
        resp: auth_pb2.CanIResponse = self._conn.call(lambda s, t: s.auth.CanI(req, timeout=t))
        return resp

    def create_token(self, name: str = "", role: str = "", namespace: str = "", ttl: float = 0.0,
                     join: bool = False, token: str = "") -> auth_pb2.CreateTokenResponse:
        """A user token (`name`, `role`, optional `namespace`), or a join token (`join=True`).
        `ttl` in seconds (0: 24 h for join tokens, never for user tokens)."""
        req = auth_pb2.CreateTokenRequest(kind="join" if join else "user", name=name, role=role,
                                          namespace=namespace, ttl=ttl, token=token,
                                          request_id=uuid.uuid4().hex)
        resp: auth_pb2.CreateTokenResponse = self._conn.call(lambda s, t: s.auth.CreateToken(req, timeout=t))
        return resp

    def list_tokens(self) -> list[auth_pb2.Token]:
        resp: auth_pb2.ListTokensResponse = self._conn.call(
            lambda s, t: s.auth.ListTokens(auth_pb2.ListTokensRequest(), timeout=t))
        return list(resp.tokens)

    def delete_token(self, token_id: str) -> auth_pb2.Token:
        req = auth_pb2.DeleteTokenRequest(id=token_id, request_id=uuid.uuid4().hex)
        resp: auth_pb2.DeleteTokenResponse = self._conn.call(lambda s, t: s.auth.DeleteToken(req, timeout=t))
        return resp.info
