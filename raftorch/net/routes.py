"""Routes to the other nodes' pod CIDRs: a pure plan and an executor using `ip route`.

The executor tags its routes with its own routing protocol number (`proto`), so it only
ever deletes routes it created, and only within the cluster CIDR; routes other software
added (the local bridge's own link route, a VPN's routes) are never touched.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal, Invalid
from raftorch.net._exec import Runner

__all__ = ["ROUTE_PROTO", "Route", "RouteApplier", "plan_routes"]

# An unregistered routing protocol number (see /etc/iproute2/rt_protos) marking our routes.
ROUTE_PROTO = 211


@dataclass(frozen=True, slots=True)
class Route:
    """Send traffic for `cidr` (a node's pods) to `via` (that node's InternalIP)."""

    cidr: str
    via: str


def plan_routes(nodes: Sequence[objects_pb2.Node], self_name: str) -> list[Route]:
    """A route for each other node that has a pod CIDR and an InternalIP, sorted by CIDR.

    Nodes with an unparsable CIDR or address are skipped. When several nodes claim the same
    CIDR, or a CIDR overlaps this node's own, the route is left out: a wrong route would
    take traffic away from pods that do exist."""
    own = next((_network(n.spec.pod_cidr) for n in nodes if n.metadata.name == self_name), None)
    claims: dict[ipaddress.IPv4Network, list[str]] = {}
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        if node.metadata.name == self_name:
            continue
        cidr = _network(node.spec.pod_cidr)
        via = next((a.address for a in node.status.addresses if a.type == "InternalIP" and _is_ipv4(a.address)),
                   None)
        if cidr is None or via is None or (own is not None and cidr.overlaps(own)):
            continue
        claims.setdefault(cidr, []).append(via)
    routes = [Route(str(cidr), vias[0]) for cidr, vias in claims.items() if len(vias) == 1]
    overlapping = {r for r in routes for o in routes
                   if r is not o and ipaddress.IPv4Network(r.cidr).overlaps(ipaddress.IPv4Network(o.cidr))}
    return sorted((r for r in routes if r not in overlapping), key=lambda r: ipaddress.IPv4Network(r.cidr))


class RouteApplier:
    """Makes the routes tagged `proto` within `cluster_cidr` exactly the given ones."""

    def __init__(self, cluster_cidr: str, *, netns: str | None = None, proto: int = ROUTE_PROTO,
                 timeout: float = 30.0) -> None:
        network = _network(cluster_cidr)
        if network is None:
            raise Invalid(f"cluster CIDR {cluster_cidr!r}: not an IPv4 network")
        self.cluster_cidr = str(network)
        self._network = network
        self._proto = str(proto)
        self._runner = Runner(netns=netns, timeout=timeout)

    def apply(self, routes: Sequence[Route]) -> None:
        """Replaces or adds every route, then deletes our routes that are no longer wanted.

        Routes outside the cluster CIDR raise Invalid; a route the kernel refuses (say, an
        unreachable gateway) does not stop the others, and is reported as Internal after."""
        wanted: dict[str, Route] = {}
        for route in routes:
            cidr = _network(route.cidr)
            if cidr is None or not _is_ipv4(route.via) or not cidr.subnet_of(self._network):
                raise Invalid(f"route {route.cidr} via {route.via}: not a pod CIDR within {self.cluster_cidr}")
            wanted[str(cidr)] = route
        errors: list[str] = []
        for dst, route in sorted(wanted.items()):
            self._try(errors, ["ip", "route", "replace", dst, "via", route.via, "proto", self._proto])
        for dst in self.current():
            if dst not in wanted:
                self._try(errors, ["ip", "route", "del", dst, "proto", self._proto])
        if errors:
            raise Internal("; ".join(errors))

    def current(self) -> list[str]:
        """The destinations of our routes now in the main table."""
        out = self._runner.run(["ip", "-j", "route", "show", "proto", self._proto, "root", self.cluster_cidr])
        entries = json.loads(out.stdout or "[]")
        return sorted(str(ipaddress.IPv4Network(e["dst"])) for e in entries if isinstance(e, dict) and "dst" in e)

    def cleanup(self) -> None:
        """Deletes all our routes."""
        self.apply([])

    def _try(self, errors: list[str], cmd: list[str]) -> None:
        try:
            self._runner.run(cmd)
        except Internal as e:
            errors.append(str(e))


def _network(text: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(text, strict=False) if text else None
    except ValueError:
        return None


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
