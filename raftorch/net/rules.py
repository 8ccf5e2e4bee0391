"""Pure: what a node's iptables must say so Services reach their ready pods.

`views_from` flattens Services and Endpoints into one `ServiceView` per service port;
`render_nat_rules` turns views into `iptables-restore --noflush` input that declares (and so
flushes) and fills only chains named `<prefix>-...`; `jump_rules` lists the few rules in the
built-in chains that lead into them. Nothing here touches the system.

Chains, for the default prefix:

    nat    RAFTORCH-SERVICES     clusterIP:port -> SVC chain; last: local/node IPs -> NODEPORTS
    nat    RAFTORCH-NODEPORTS    dport nodePort -> MARK-MASQ, then -> SVC chain
    nat    RAFTORCH-SVC-<hash>   picks one endpoint evenly: probability 1/n, 1/(n-1), ... 1
    nat    RAFTORCH-SEP-<hash>   hairpin -> MARK-MASQ; DNAT to ip:port
    nat    RAFTORCH-MARK-MASQ    sets the masquerade mark bit
    nat    RAFTORCH-POSTROUTING  masquerades (and clears the bit of) marked packets
    filter RAFTORCH-REJECT       refuses clusterIP:port and nodePorts of services without
                                 ready endpoints (otherwise a ClusterIP connect would hang)
    filter RAFTORCH-FORWARD      accepts forwarded service traffic, see `jump_rules`

Objects that would produce invalid rules (non-IPv4 addresses, ports out of range, protocols
other than TCP and UDP) are left out rather than failing the node's whole rule set.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid

__all__ = [
    "DEFAULT_PREFIX",
    "MASQ_MARK",
    "PROTOCOLS",
    "EndpointView",
    "ServiceView",
    "chain_names",
    "jump_rules",
    "render_nat_rules",
    "validate_prefix",
    "views_from",
]

_T = TypeVar("_T")

DEFAULT_PREFIX = "RAFTORCH"
PROTOCOLS = ("TCP", "UDP")
MASQ_MARK = "0x4000"
# The kernel's limit for a chain name (XT_EXTENSION_MAXNAMELEN - 1).
_MAX_CHAIN = 28
_MAX_HASH = 16
_MIN_HASH = 8
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9._:/>=, -]")


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One ready endpoint of one service port."""

    ip: str
    port: int
    node_name: str = ""


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One port of one service, with its ready endpoints sorted by (ip, port).

    `cluster_ip` is "" for headless services; `node_port` is 0 unless the service is of
    type NodePort."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    port: int
    cluster_ip: str = ""
    node_port: int = 0
    endpoints: tuple[EndpointView, ...] = ()

    @property
    def key(self) -> str:
        """`namespace/name:port_name` (without `:` when the port has no name)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def sort_key(self) -> tuple[str, str, str, str, int]:
        return (self.namespace, self.name, self.port_name, self.protocol, self.port)


def views_from(services: Iterable[objects_pb2.Service],
               endpoints: Iterable[objects_pb2.Endpoints]) -> list[ServiceView]:
    """One view per usable service port, sorted by namespace, name, port name and protocol.

    A service port is matched to the endpoint ports of the same name and protocol (the
    Endpoints controller names them after the service port and has already resolved named
    target ports to numbers); only `addresses` (ready) are used."""
    by_name = {(e.metadata.namespace, e.metadata.name): e for e in endpoints}
    views: list[ServiceView] = []
    for svc in services:
        ep = by_name.get((svc.metadata.namespace, svc.metadata.name))
        cluster_ip = svc.spec.cluster_ip if _is_ipv4(svc.spec.cluster_ip) else ""
        for sp in svc.spec.ports:
            protocol = (sp.protocol or "TCP").upper()
            if protocol not in PROTOCOLS or not _is_port(sp.port):
                continue
            node_port = sp.node_port if svc.spec.type == "NodePort" and _is_port(sp.node_port) else 0
            views.append(ServiceView(
                namespace=svc.metadata.namespace, name=svc.metadata.name, port_name=sp.name,
                protocol=protocol, port=sp.port, cluster_ip=cluster_ip, node_port=node_port,
                endpoints=_ready_endpoints(ep, sp.name, protocol) if ep is not None else (),
            ))
    return sorted(views, key=lambda v: v.sort_key)


def _ready_endpoints(ep: objects_pb2.Endpoints, port_name: str, protocol: str) -> tuple[EndpointView, ...]:
    found: dict[tuple[str, int], EndpointView] = {}
    for subset in ep.subsets:
        numbers = [p.port for p in subset.ports
                   if p.name == port_name and (p.protocol or "TCP").upper() == protocol and _is_port(p.port)]
        if not numbers:
            continue
        for address in subset.addresses:
            if _is_ipv4(address.ip):
                found.setdefault((address.ip, numbers[0]), EndpointView(address.ip, numbers[0], address.node_name))
    return tuple(sorted(found.values(), key=_endpoint_order))


def _endpoint_order(e: EndpointView) -> tuple[int, int, str]:
    return (int(ipaddress.IPv4Address(e.ip)), e.port, e.node_name)


def validate_prefix(prefix: str) -> str:
    """`prefix` if it can name our chains (letters, digits, `_`; short enough to leave room
    for an 8-character hash in `<prefix>-SVC-<hash>`), else raises Invalid."""
    if not _PREFIX_RE.match(prefix) or len(prefix) + len("-SVC-") + _MIN_HASH > _MAX_CHAIN:
        raise Invalid(f"iptables chain prefix {prefix!r}: must be 1-15 letters, digits or '_', "
                      "starting with a letter")
    return prefix


@dataclass(frozen=True, slots=True)
class _Chains:
    services: str
    nodeports: str
    postrouting: str
    mark_masq: str
    reject: str
    forward: str


def chain_names(prefix: str = DEFAULT_PREFIX) -> _Chains:
    """The fixed chain names for `prefix`."""
    p = validate_prefix(prefix)
    return _Chains(services=f"{p}-SERVICES", nodeports=f"{p}-NODEPORTS", postrouting=f"{p}-POSTROUTING",
                   mark_masq=f"{p}-MARK-MASQ", reject=f"{p}-REJECT", forward=f"{p}-FORWARD")


def jump_rules(prefix: str = DEFAULT_PREFIX) -> list[tuple[str, str, list[str]]]:
    """(table, built-in chain, rule arguments) of each rule leading into our chains.

    The filter FORWARD jump into `<prefix>-FORWARD` exists for hosts running Docker, whose
    FORWARD policy is DROP: without it, connections DNATed to a pod (NodePort traffic
    arriving from outside, marked for masquerading) would be dropped on the way to the pod's
    bridge. It accepts only marked packets and packets of already accepted connections."""
    c = chain_names(prefix)
    new = ["-m", "conntrack", "--ctstate", "NEW"]
    portals = ["-m", "comment", "--comment", "raftorch service portals"]
    reject = ["-m", "comment", "--comment", "raftorch services without endpoints"]
    return [
        ("nat", "PREROUTING", [*portals, "-j", c.services]),
        ("nat", "OUTPUT", [*portals, "-j", c.services]),
        ("nat", "POSTROUTING", ["-m", "comment", "--comment", "raftorch masquerade", "-j", c.postrouting]),
        ("filter", "INPUT", [*new, *reject, "-j", c.reject]),
        ("filter", "FORWARD", [*new, *reject, "-j", c.reject]),
        ("filter", "OUTPUT", [*new, *reject, "-j", c.reject]),
        ("filter", "FORWARD", ["-m", "comment", "--comment", "raftorch forwarded service traffic",
                               "-j", c.forward]),
    ]


def render_nat_rules(views: Sequence[ServiceView], node_ips: Sequence[str], prefix: str = DEFAULT_PREFIX,
                     *, cluster_cidr: str | None = None) -> str:
    """Complete `iptables-restore --noflush` input (tables nat and filter) for `views`.

    NodePorts are served on `node_ips`, or on every local address but loopback when empty
    (loopback would need route_localnet). With `cluster_cidr`, ClusterIP traffic from
    outside it is masqueraded too, and forwarded traffic from or to it is accepted.
    The output depends only on the arguments' values: same input, same text."""
    c = chain_names(prefix)
    ips = sorted({_require_ipv4(ip) for ip in node_ips}, key=ipaddress.IPv4Address)
    cidr = str(ipaddress.IPv4Network(cluster_cidr, strict=False)) if cluster_cidr else None
    usable = (s for s in map(_sanitized, views) if s is not None)
    out = _Rules()
    for v in _first_by(sorted(usable, key=lambda v: v.sort_key), _service_id):
        if not v.endpoints:
            _render_reject(out, c, v, ips)
        elif v.cluster_ip or v.node_port:
            _render_service(out, c, prefix, v, cidr)
    out.services.extend(f"-A {c.services} {dst} -j {c.nodeports}" for dst in _node_dst(ips))
    nat_chains = [c.services, c.nodeports, c.postrouting, c.mark_masq, *sorted(out.svc_chains),
                  *sorted(out.sep_chains)]
    nat = [
        "*nat",
        *(f":{name} - [0:0]" for name in nat_chains),
        f"-A {c.mark_masq} -j MARK --or-mark {MASQ_MARK}",
        f"-A {c.postrouting} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        # Cleared so a packet traversing POSTROUTING again is not masqueraded twice.
        f"-A {c.postrouting} -j MARK --xor-mark {MASQ_MARK}",
        f"-A {c.postrouting} -m comment --comment {_comment('raftorch service traffic requiring SNAT')} "
        "-j MASQUERADE",
        *out.services,
        *out.nodeports,
        *out.bodies,
        "COMMIT",
    ]
    forward = [
        f"-A {c.forward} -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f"-A {c.forward} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    if cidr:
        forward += [f"-A {c.forward} -s {cidr} -j ACCEPT", f"-A {c.forward} -d {cidr} -j ACCEPT"]
    filt = ["*filter", f":{c.reject} - [0:0]", f":{c.forward} - [0:0]", *out.rejects, *forward, "COMMIT"]
    return "\n".join([*nat, *filt]) + "\n"


@dataclass(frozen=True, slots=True)
class _Rules:
    """The rendered rules, gathered per place in the output."""

    svc_chains: list[str] = field(default_factory=list)
    sep_chains: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    nodeports: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    rejects: list[str] = field(default_factory=list)


def _render_reject(out: _Rules, c: _Chains, v: ServiceView, ips: Sequence[str]) -> None:
    proto = v.protocol.lower()
    match = f"-p {proto} -m {proto}"
    reject = "tcp-reset" if proto == "tcp" else "icmp-port-unreachable"
    if v.cluster_ip:
        out.rejects.append(f"-A {c.reject} -d {v.cluster_ip}/32 {match} --dport {v.port} "
                           f"-m comment --comment {_comment(v.key + ' has no endpoints')} "
                           f"-j REJECT --reject-with {reject}")
    if v.node_port:
        out.rejects.extend(f"-A {c.reject} {dst} {match} --dport {v.node_port} "
                           f"-m comment --comment {_comment(v.key + ' nodePort has no endpoints')} "
                           f"-j REJECT --reject-with {reject}" for dst in _node_dst(ips))


def _render_service(out: _Rules, c: _Chains, prefix: str, v: ServiceView, cidr: str | None) -> None:
    proto = v.protocol.lower()
    match = f"-p {proto} -m {proto}"
    comment = _comment(v.key)
    svc = _chain(prefix, "SVC", _service_id(v))
    out.svc_chains.append(svc)
    if v.cluster_ip:
        dst = f"-d {v.cluster_ip}/32 {match} --dport {v.port}"
        if cidr:
            out.services.append(f"-A {c.services} ! -s {cidr} {dst} -m comment --comment {comment} -j {c.mark_masq}")
        out.services.append(f"-A {c.services} {dst} -m comment --comment {comment} -j {svc}")
    if v.node_port:
        dst = f"{match} --dport {v.node_port}"
        # NodePort traffic is masqueraded so replies from an endpoint on another node come
        # back through this one, where the DNAT is undone.
        out.nodeports.append(f"-A {c.nodeports} {dst} -m comment --comment {comment} -j {c.mark_masq}")
        out.nodeports.append(f"-A {c.nodeports} {dst} -m comment --comment {comment} -j {svc}")
    endpoints = _first_by(v.endpoints, lambda e: (e.ip, e.port))
    for i, ep in enumerate(endpoints):
        sep = _chain(prefix, "SEP", f"{_service_id(v)}/{ep.ip}:{ep.port}")
        out.sep_chains.append(sep)
        to = _comment(f"{v.key} -> {ep.ip}:{ep.port}")
        remaining = len(endpoints) - i
        # 1/n, then 1/(n-1) of the rest, ...: every endpoint is picked with probability 1/n.
        pick = "" if remaining == 1 else f"-m statistic --mode random --probability {1 / remaining:.10f} "
        out.bodies.append(f"-A {svc} -m comment --comment {to} {pick}-j {sep}")
        # Hairpin: a pod picked for its own connection would answer itself directly, past the
        # reverse DNAT; masquerading sends the reply back through the node.
        out.bodies.append(f"-A {sep} -s {ep.ip}/32 -m comment --comment {to} -j {c.mark_masq}")
        out.bodies.append(f"-A {sep} {match} -m comment --comment {to} -j DNAT --to-destination {ep.ip}:{ep.port}")


def _sanitized(v: ServiceView) -> ServiceView | None:
    """`v` without what cannot be rendered, or None when nothing can be; views_from never
    yields such views, but hand-made ones might."""
    if v.protocol not in PROTOCOLS or not _is_port(v.port):
        return None
    endpoints = tuple(e for e in v.endpoints if _is_ipv4(e.ip) and _is_port(e.port))
    return replace(v, cluster_ip=v.cluster_ip if _is_ipv4(v.cluster_ip) else "",
                   node_port=v.node_port if _is_port(v.node_port) else 0,
                   endpoints=tuple(sorted(endpoints, key=_endpoint_order)))


def _first_by(items: Iterable[_T], key: Callable[[_T], Hashable]) -> list[_T]:
    first: dict[Hashable, _T] = {}
    for item in items:
        first.setdefault(key(item), item)
    return list(first.values())


def _node_dst(ips: Sequence[str]) -> list[str]:
    if ips:
        return [f"-d {ip}/32" for ip in ips]
    return ["-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8"]


def _service_id(v: ServiceView) -> str:
    return f"{v.namespace}/{v.name}:{v.port_name}/{v.protocol}"


def _chain(prefix: str, kind: str, identity: str) -> str:
    """`<prefix>-<kind>-<hash>`, the hash as long as the kernel's name limit allows (<= 16)."""
    length = min(_MAX_HASH, _MAX_CHAIN - len(prefix) - len(kind) - 2)
    digest = base64.b32encode(hashlib.sha256(identity.encode()).digest()).decode()
    return f"{prefix}-{kind}-{digest[:length]}"


def _comment(text: str) -> str:
    return '"' + _COMMENT_UNSAFE.sub("_", text)[:250] + '"'


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _require_ipv4(text: str) -> str:
    if not _is_ipv4(text):
        raise Invalid(f"node IP {text!r}: not an IPv4 address")
    return text


def _is_port(number: int) -> bool:
    return 1 <= number <= 65535
