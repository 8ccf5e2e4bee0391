"""Bearer tokens: `ID.SECRET`, kept in the store as a record holding the secret's hash only.

Join tokens (kind "join") let an agent obtain its node certificate once (kubeadm's bootstrap
tokens); user tokens (kind "user") carry a role and optionally a namespace. Both may expire
and be revoked; a revoked record stays until it expires, so a bootstrap token file cannot
bring it back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass, replace

from raftorch.auth.identity import USER_ROLES, Identity
from raftorch.errors import Invalid, Unauthenticated

TOKEN_PREFIX = "/raftorch/tokens/"
JOIN_TTL = 24 * 3600.0
_TOKEN_RE = re.compile(r"^([a-z0-9]{6,16})\.([A-Za-z0-9_-]{16,64})$")
_ID_RE = re.compile(r"^[a-z0-9]{6,16}$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.@]{0,62}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    kind: str  # "join" | "user"
    name: str
    role: str
    namespace: str
    hash: str
    created: float
    expires: float  # 0: never
    revoked: bool = False

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(data: bytes) -> TokenRecord:
        return TokenRecord(**json.loads(data))

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires

    def revoke(self) -> TokenRecord:
        return replace(self, revoked=True)

    def identity(self) -> Identity:
        return Identity("user", self.name, self.role, self.namespace or None)  # type: ignore[arg-type]


def key_of(token_id: str) -> str:
    return TOKEN_PREFIX + token_id


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate() -> str:
    """A fresh token: 8 characters of id, a dot, 32 of secret."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    token_id = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{token_id}.{secrets.token_urlsafe(24)}"


def parse(token: str) -> tuple[str, str]:
    """(id, secret) of a token, or Unauthenticated."""
    m = _TOKEN_RE.match(token.strip())
    if m is None:
        raise Unauthenticated("token: malformed (expected ID.SECRET as printed by `raftctl token create`)")
    return m.group(1), m.group(2)


def check_id(token_id: str) -> None:
    if not _ID_RE.match(token_id):
        raise Invalid(f"token id {token_id!r}: expected 6-16 lowercase letters or digits")


def new_record(token: str, kind: str, name: str, role: str, namespace: str, ttl: float, now: float
               ) -> TokenRecord:
    """The record to store for `token`, after checking every field."""
    try:
        token_id, secret = parse(token)
    except Unauthenticated as err:
        raise Invalid(str(err)) from None
    if kind == "join":
        if ttl < 0:
            raise Invalid("ttl: must not be negative")
        return TokenRecord(token_id, "join", name or "bootstrap", "node", "", hash_secret(secret), now,
                           now + (ttl or JOIN_TTL))
    if kind != "user":
        raise Invalid(f"kind: expected join or user, got {kind!r}")
    if not _NAME_RE.match(name) or name.startswith("system:"):
        raise Invalid(f"name {name!r}: expected lowercase letters, digits, '-', '.', '@' (at most 64)")
    if role not in USER_ROLES:
        raise Invalid(f"role: expected one of {', '.join(USER_ROLES)}, got {role!r}")
    if namespace and not _NAME_RE.match(namespace):
        raise Invalid(f"namespace {namespace!r}: not a valid namespace name")
    if ttl < 0:
        raise Invalid("ttl: must not be negative")
    return TokenRecord(token_id, "user", name, role, namespace, hash_secret(secret), now,
                       now + ttl if ttl else 0.0)


def verify(record: TokenRecord | None, token_id: str, secret: str, now: float, kind: str) -> TokenRecord:
    """The record if `secret` is its token's and the token may be used now; else Unauthenticated
    naming why (unknown, revoked, expired, wrong kind)."""
    if record is None or not hmac.compare_digest(record.hash, hash_secret(secret)):
        raise Unauthenticated(f"token {token_id}: unknown token (wrong secret, or deleted)")
    if record.revoked:
        raise Unauthenticated(f"token {token_id}: revoked")
    if record.expired(now):
        raise Unauthenticated(f"token {token_id}: expired")
    if record.kind != kind:
        what = "a join token only joins nodes" if record.kind == "join" else "a user token cannot join nodes"
        raise Unauthenticated(f"token {token_id}: {what}")
    return record
