"""Authentication and authorization: the cluster PKI, tokens, identities and roles."""

from __future__ import annotations

from raftorch.auth.identity import (
    INSECURE,
    MASTER_PREFIX,
    NODE_PREFIX,
    ROLES,
    USER_ROLES,
    Identity,
    identity_of,
    master_identity,
    node_identity,
    reset_identity,
    set_identity,
    set_insecure_identity,
)

__all__ = [
    "INSECURE",
    "MASTER_PREFIX",
    "NODE_PREFIX",
    "ROLES",
    "USER_ROLES",
    "Identity",
    "identity_of",
    "master_identity",
    "node_identity",
    "reset_identity",
    "set_identity",
    "set_insecure_identity",
]
