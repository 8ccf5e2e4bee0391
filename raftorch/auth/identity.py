"""Who is calling: the identity every request on a master (or an agent) carries.

Identities come from one of two credentials, checked by the server's authentication
interceptor before any servicer runs:

- a client certificate signed by the cluster CA, presented with each request together with
  a proof of its key (see :mod:`raftorch.auth.proof`; the agents' endpoint takes it in the TLS
  handshake). Its subject says who it is:

  ======================================  ========  ==========  ==========  =============
  certificate subject                     kind      name        role        namespace
  ======================================  ========  ==========  ==========  =============
  CN=system:node:NAME                     "node"    NAME        "node"      None
  CN=system:master:NAME                   "master"  NAME        "admin"     None
  CN=NAME, O=raftorch:ROLE[, OU=NS]       "user"    NAME        ROLE        NS or None
  ======================================  ========  ==========  ==========  =============

  Agents hold the node kind: ``Identity(kind="node", name="node-1", role="node")`` is the
  agent of node ``node-1`` (certificate CN ``system:node:node-1``), and nothing else may
  present that name. Masters use the master kind when they call each other (leader
  forwarding) and the agents (logs, port-forward).
- a bearer token (``authorization: Bearer TOKEN`` metadata) made with
  ``raftctl token create NAME --role ROLE [--namespace NS]``: kind "user".

Servicers read the caller with :func:`identity_of`; the interceptor has set it for the
duration of the call (in a context variable, so it follows the handler's coroutine or thread).
A master started with ``--insecure`` (benchmarks only) treats every caller as ``INSECURE``.

Role checks (verb, resource, namespace) happen in the interceptor, before the servicer: the
"node" role may call the Agents service (RegisterNode, Heartbeat, ReportPodStatus,
WatchNodePods) and read pods, nodes, services, endpoints and namespaces. Which node a node
identity may act as (its own name only) is checked by the Agents servicer with
``identity_of(context)``.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Literal

from raftorch.errors import Unauthenticated

Kind = Literal["user", "node", "master", "controller-manager"]
Role = Literal["admin", "edit", "view", "node", "controller-manager"]
ROLES: tuple[Role, ...] = ("admin", "edit", "view", "node")
USER_ROLES: tuple[Role, ...] = ("admin", "edit", "view")

NODE_PREFIX = "system:node:"
MASTER_PREFIX = "system:master:"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    ``namespace`` limits a user to one namespace (None: every namespace, as the role allows).
    Nodes and masters always have ``namespace=None``."""

    kind: Kind
    name: str
    role: Role
    namespace: str | None = None

    @property
    def is_node(self) -> bool:
        return self.kind == "node"

    @property
    def is_master(self) -> bool:
        return self.kind == "master"

    @property
    def is_controller_manager(self) -> bool:
        return self.kind == "controller-manager"

    def describe(self) -> str:
        """How messages name the caller: 'user "alice" (role view in namespace a)'."""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        if self.kind == "user":
            return f'user "{self.name}" (role {self.role}{where})'
        return f'{self.kind} "{self.name}"'

    @property
    def common_name(self) -> str:
        """The certificate CN that carries this identity."""
        if self.kind == "node":
            return NODE_PREFIX + self.name
        if self.kind == "master":
            return MASTER_PREFIX + self.name
        return self.name


def node_identity(name: str) -> Identity:
    return Identity("node", name, "node")


def master_identity(name: str) -> Identity:
    return Identity("master", name, "admin")


# The controller-manager process, on its master's local socket (only there: no certificate or
# token carries it). Role system:controller-manager: the Resources API, term-fenced writes.
CONTROLLER_MANAGER = Identity("controller-manager", "system:controller-manager", "controller-manager")

# What a master in --insecure mode (benchmarks, never production) sees every caller as.
INSECURE = Identity("user", "insecure", "admin")

_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("raftorch_identity", default=None)
# Set only by a master started with --insecure: then no interceptor runs, and every caller is it.
_fallback: Identity | None = None


def set_insecure_identity(ident: Identity | None) -> None:
    global _fallback
    _fallback = ident


def identity_of(context: object = None) -> Identity:
    """The authenticated caller of the request being served.

    ``context`` is the gRPC servicer context (accepted for clarity at call sites; the identity
    travels in a context variable set by the interceptor). Raises Unauthenticated when no
    identity was established, so a servicer reached without the interceptor fails closed."""
    ident = _current.get() or _fallback
    if ident is None:
        raise Unauthenticated("no credentials: this request was not authenticated")
    return ident


def current_identity() -> Identity | None:
    """The caller the interceptor authenticated for this request, if any (never the insecure
    fallback: callers of an insecure master are not told apart)."""
    return _current.get()


def set_identity(ident: Identity | None) -> contextvars.Token[Identity | None]:
    """Used by the interceptor (and by tests) to set the caller for the current context."""
    return _current.set(ident)


def reset_identity(token: contextvars.Token[Identity | None]) -> None:
    _current.reset(token)
