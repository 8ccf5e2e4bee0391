"""Roles: which verbs on which resources an identity may use. Pure; the interceptor applies it.

Every RPC maps to a `Request` (verb, resource, namespace, name) by `request_for`. Roles:

- admin: everything (limited to its namespace's resources when it has one);
- edit: read everything but tokens; write namespaced objects, keys and leases, port-forward;
- view: get, list and watch everything but tokens and keys under /raftorch/ (token records,
  which only admins read); read logs, usage (`raftctl top`) and the masters' /metrics;
- node: the agent's calls (Agents service, its certificate), read the objects its rules and
  pods need, create and update mirror pods and events, report its usage (`nodes/usage`).
  Which node it may act as is checked by the Agents servicer;
- master: everything (masters call each other and the agents).

A user limited to a namespace reaches namespaced resources in that namespace only, and reads
namespaces, nodes and the cluster's status; nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message

from raftorch.api.v1 import agents_pb2, auth_pb2, kv_pb2, resources_pb2
from raftorch.auth.identity import Identity
from raftorch.errors import Invalid, PermissionDenied
from raftorch.objects.kinds import KINDS, kind_of, kind_of_message, unwrap

READ = frozenset({"get", "list", "watch"})
WRITE = frozenset({"create", "update", "delete"})
VERBS = READ | WRITE
MUTATING = WRITE

NAMESPACED = frozenset({k.plural for k in KINDS if k.namespaced} | {"pods/log", "pods/portforward",
                                                                      "pods/status"})
CLUSTER_SCOPED = frozenset({k.plural for k in KINDS if not k.namespaced} |
                           {"keys", "leases", "tokens", "cluster", "nodes/heartbeat", "certificates",
                            "nodes/usage", "metrics"})
RESOURCES = NAMESPACED | CLUSTER_SCOPED
# Keys only masters may touch through the KV API: objects (validated by the Resources API),
# allocations, and token records.
RESERVED_WRITE = ("/registry/", "/raftorch/")
RESERVED_READ = ("/raftorch/",)

# The controller manager's role (system:controller-manager): every kind of object, no keys,
# leases, tokens or certificates, none of the agents' calls.
CONTROLLER_MANAGER_RESOURCES = frozenset({k.plural for k in KINDS} | {"pods/status"})
_NODE_READ = frozenset({"pods", "nodes", "services", "endpoints", "namespaces", "cluster", "configmaps", "secrets",
                        "persistentvolumeclaims"})
_NODE_WRITE = frozenset({"pods", "events", "nodes", "pods/status", "nodes/heartbeat", "certificates",
                         "nodes/usage"})


@dataclass(frozen=True, slots=True)
class Request:
    verb: str
    resource: str
    # "" for cluster-scoped resources, and for namespaced ones across every namespace.
    namespace: str = ""
    name: str = ""
    # KV keys touched, as (key, prefix) pairs, for the reserved prefixes.
    keys: tuple[tuple[str, bool], ...] = ()

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else \
            (" in all namespaces" if self.resource in NAMESPACED else "")
        return f"{self.verb} {self.resource}{where}"


def _touches(keys: Iterable[tuple[str, bool]], reserved: tuple[str, ...]) -> str | None:
    for key, prefix in keys:
        for r in reserved:
            if key.startswith(r) or (prefix and r.startswith(key)):
                return key or "(every key)"
    return None


def decide(ident: Identity, req: Request) -> str | None:
    """None when allowed, else the reason it is not."""
    if ident.kind == "master":
        return None
    if ident.kind == "controller-manager":
        # Cluster objects through the Resources API, and the cluster's status: nothing else.
        if req.resource in CONTROLLER_MANAGER_RESOURCES or req.resource == "cluster":
            return None
        return "the controller manager uses the Resources API only"
    reserved = _touches(req.keys, RESERVED_WRITE if req.verb in WRITE else RESERVED_READ)
    if reserved is not None and not (ident.role == "admin" and ident.namespace is None and req.verb in READ):
        if req.verb in WRITE:
            return f"keys under {', '.join(RESERVED_WRITE)} are owned by the masters ({reserved!r}) and written " \
                   "only through the masters' own APIs: use the Resources API (raftctl apply/create/delete), " \
                   "or raftctl token for tokens"
        return f"keys under {', '.join(RESERVED_READ)} belong to the masters ({reserved!r})"
    if ident.role == "node":
        if req.verb in READ and req.resource in _NODE_READ:
            return None
        if req.resource in _NODE_WRITE and req.verb in WRITE:
            return None
        return "nodes may only use the agent's calls"
    if ident.namespace is not None:
        if req.resource in NAMESPACED:
            if req.namespace != ident.namespace:
                return f"limited to namespace {ident.namespace}"
        elif not (req.verb in READ and req.resource in {"namespaces", "nodes", "cluster"}):
            return f"limited to namespace {ident.namespace}"
    if ident.role == "admin":
        return None
    if req.resource in {"tokens", "certificates", "nodes/heartbeat", "pods/status"}:
        return "admins only"
    if ident.role == "view":
        if req.verb in READ or (req.verb == "get" and req.resource == "pods/log"):
            return None
        return "the view role only reads"
    if ident.role == "edit":
        if req.verb in READ:
            return None
        if req.resource in NAMESPACED or req.resource in {"keys", "leases"}:
            return None
        return "the edit role writes namespaced objects, keys and leases only"
    return f"unknown role {ident.role}"


def check(ident: Identity, req: Request) -> None:
    reason = decide(ident, req)
    if reason is not None:
        raise PermissionDenied(f"{ident.describe()} may not {req.describe()}"
                               f"{' ' + repr(req.name) if req.name else ''}: {reason}")


def parse_resource(text: str) -> str:
    """A resource as users write it (`po`, `Deployment`, `pods/log`, `keys`) in canonical form."""
    base, sep, sub = text.strip().lower().partition("/")
    if base in RESOURCES or text.lower() in RESOURCES:
        return text.lower()
    try:
        plural = kind_of(base).plural
    except Invalid:
        raise Invalid(f"unknown resource {text!r}; known: {', '.join(sorted(RESOURCES))}") from None
    out = f"{plural}/{sub}" if sep else plural
    if out not in RESOURCES:
        raise Invalid(f"unknown resource {text!r}")
    return out


# -- RPC -> Request -----------------------------------------------------------------------

def _ns(kind_namespaced: bool, namespace: str, default: bool) -> str:
    if not kind_namespaced:
        return ""
    return namespace or ("default" if default else "")


def _kv_keys(req: Message) -> tuple[tuple[str, bool], ...]:
    if isinstance(req, kv_pb2.TxnRequest):
        keys: list[tuple[str, bool]] = [(c.key, False) for c in req.compare]
        for op in (*req.success, *req.failure):
            inner = getattr(op, op.WhichOneof("request") or "request_range")
            keys.append((inner.key, bool(getattr(inner, "prefix", False))))
        return tuple(keys)
    key = getattr(req, "key", "")
    return ((key, bool(getattr(req, "prefix", False))),)


def _txn_verb(req: kv_pb2.TxnRequest) -> str:
    ops = [op.WhichOneof("request") for op in (*req.success, *req.failure)]
    return "update" if any(o in ("request_put", "request_delete_range") for o in ops) else "get"


def request_for(method: str, req: Message | None) -> Request | None:
    """The Request an RPC makes, from its full method name and (first) message.
    None: open to any authenticated caller (who am I, can I)."""
    service, _, name = method.rpartition("/")
    service = service.rsplit(".", 1)[-1]
    if service == "Resources":
        return _resources(name, req)
    if service == "KV":
        verb = {"Put": "update", "DeleteRange": "delete", "Compact": "delete", "Range": "get",
                "Watch": "watch"}.get(name)
        if verb is not None:
            keys = _kv_keys(req) if req is not None and name != "Compact" else ()
            return Request(verb, "keys", name=keys[0][0] if keys else "", keys=keys)
        if name == "Txn":
            assert isinstance(req, kv_pb2.TxnRequest)
            return Request(_txn_verb(req), "keys", keys=_kv_keys(req))
        lease_verb = {"LeaseGrant": "create", "LeaseRevoke": "delete", "LeaseKeepAlive": "update",
                      "LeaseTimeToLive": "get"}.get(name, "update")
        return Request(lease_verb, "leases")
    if service == "Cluster":
        return Request("get", "cluster")
    if service == "Agents":
        return _agents(name, req)
    if service == "Pods":
        if name == "Logs":
            assert isinstance(req, agents_pb2.LogsRequest)
            return Request("get", "pods/log", req.namespace or "default", req.pod)
        assert isinstance(req, agents_pb2.PortForwardFrame)
        return Request("create", "pods/portforward", req.namespace or "default", req.pod)
    if service == "Auth":
        return _auth(name, req)
    if service in ("ServerReflection",):
        return Request("get", "cluster")
    return Request("get", f"unknown method {method}")


def _resources(name: str, req: Message | None) -> Request:
    if name in ("Create", "Update", "UpdateStatus"):
        assert isinstance(req, (resources_pb2.CreateRequest, resources_pb2.UpdateRequest))
        kind, inner = unwrap(req.object)
        kind = kind_of_message(inner)
        meta = getattr(inner, "metadata")  # noqa: B009 - every kind has metadata
        resource = kind.plural + ("/status" if name == "UpdateStatus" and kind.plural == "pods" else "")
        verb = "create" if name == "Create" else "update"
        return Request(verb, resource, _ns(kind.namespaced, meta.namespace, True), meta.name)
    if name in ("UpdateMany", "CreateMany"):
        assert isinstance(req, (resources_pb2.UpdateManyRequest, resources_pb2.CreateManyRequest))
        kinds = {unwrap(o)[0].plural for o in req.objects}
        # One kind per batch is the rule (checked by the servicer); name it for the decision.
        return Request("update" if name == "UpdateMany" else "create", kinds.pop() if len(kinds) == 1 else "pods")
    verb = {"Get": "get", "List": "list", "Watch": "watch", "Delete": "delete"}[name]
    kind = kind_of(getattr(req, "kind", ""))
    default = name in ("Get", "Delete")
    return Request(verb, kind.plural, _ns(kind.namespaced, getattr(req, "namespace", ""), default),
                   getattr(req, "name", ""))


def _agents(name: str, req: Message | None) -> Request:
    if name == "RegisterNode":
        assert isinstance(req, agents_pb2.RegisterNodeRequest)
        return Request("create", "nodes", "", req.node.metadata.name)
    if name in ("Heartbeat", "ForwardHeartbeats"):
        return Request("update", "nodes/heartbeat", "", getattr(req, "node", ""))
    if name == "ReportPodStatus":
        assert isinstance(req, agents_pb2.ReportPodStatusRequest)
        return Request("update", "pods/status", "", req.node)
    if name == "WatchNodePods":
        assert isinstance(req, agents_pb2.WatchNodePodsRequest)
        return Request("watch", "pods", "", req.node)
    if name == "ReportEvents":
        # Events about the node's own pods (the Agents servicer checks each pod's binding).
        assert isinstance(req, agents_pb2.ReportEventsRequest)
        return Request("create", "events", "", req.node)
    if name == "ReportUsage":
        # Usage lives in the leader's memory, never the store: nodes (and masters passing it on) only.
        assert isinstance(req, agents_pb2.NodeUsage)
        return Request("update", "nodes/usage", "", req.node)
    if name == "GetUsage":
        return Request("get", "nodes/usage")
    return Request("update", f"agents/{name}")


def _auth(name: str, req: Message | None) -> Request | None:
    if name in ("WhoAmI", "CanI"):
        return None
    if name == "CreateToken":
        assert isinstance(req, auth_pb2.CreateTokenRequest)
        return Request("create", "tokens", "", req.name)
    if name == "ListTokens":
        return Request("list", "tokens")
    if name == "DeleteToken":
        assert isinstance(req, auth_pb2.DeleteTokenRequest)
        return Request("delete", "tokens", "", req.id)
    if name == "Renew":
        return Request("update", "certificates")
    return Request("create", "certificates")
