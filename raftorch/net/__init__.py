"""Node networking: what kube-proxy does for Kubernetes, plus the pod network's routes.

* `rules` (pure): Services and Endpoints -> `ServiceView`s -> `iptables-restore` input.
* `iptables`: loads that input atomically, owning only the chains named `<prefix>-...`.
* `proxy`: userspace NodePorts for hosts where iptables may not be used.
* `routes`: routes to the other nodes' pod CIDRs (pure plan, `ip route` executor).
* `bridge`: the node's Docker bridge network on its pod CIDR.
"""

from __future__ import annotations

from raftorch.net.bridge import bridge_name, ensure_docker_network, remove_docker_network
from raftorch.net.iptables import IptablesApplier
from raftorch.net.proxy import NodePortProxy
from raftorch.net.routes import Route, RouteApplier, plan_routes
from raftorch.net.rules import (
    DEFAULT_PREFIX,
    EndpointView,
    ServiceView,
    jump_rules,
    render_nat_rules,
    views_from,
)

__all__ = [
    "DEFAULT_PREFIX",
    "EndpointView",
    "IptablesApplier",
    "NodePortProxy",
    "Route",
    "RouteApplier",
    "ServiceView",
    "bridge_name",
    "ensure_docker_network",
    "jump_rules",
    "plan_routes",
    "remove_docker_network",
    "render_nat_rules",
    "views_from",
]
