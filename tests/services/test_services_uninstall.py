"""`raftorch-agent --uninstall` in a node namespace, and the userspace NodePort mode.

Runs last in this directory (file order): it stops and restarts agents, and leaves them in
userspace mode.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from svc_topology import (
    WEB,
    ServicesCluster,
    Web,
    endpoint_ips,
    eventually,
    ready_pods,
    scale,
    sh,
    wait_serving,
)

pytestmark = [pytest.mark.docker, pytest.mark.processes]

FOREIGN_RULES = """*filter
:OTHER - [0:0]
-A OTHER -s 192.0.2.99/32 -p tcp -m tcp --dport 9 -j DROP
-A INPUT -j OTHER
COMMIT
*nat
:OTHER-NAT - [0:0]
-A OTHER-NAT -d 192.0.2.98/32 -j RETURN
-A PREROUTING -j OTHER-NAT
COMMIT
"""


def _foreign_lines(saved: str) -> list[str]:
    """iptables-save output without our rules, comments and packet counters."""
    return [re.sub(r"\[\d+:\d+\]", "", line) for line in saved.splitlines()
            if line and not line.startswith("#") and "RAFTORCH" not in line]


def _route_lines(cluster: ServicesCluster, node: str) -> str:
    return sh("ip", "-n", cluster.hosts[node].netns, "route", "show", "proto", "211").stdout.strip()


def test_uninstall_removes_only_raftorch_rules_and_routes(svc_cluster: ServicesCluster, web: Web) -> None:
    node = sorted(svc_cluster.hosts)[0]
    host = svc_cluster.hosts[node]
    svc_cluster.ns(host.netns, "iptables-restore", "--noflush", input=FOREIGN_RULES)
    svc_cluster.stop_agent(node)
    before = svc_cluster.iptables_save(node)
    assert "-A RAFTORCH-SERVICES" in before and "-j RAFTORCH-SERVICES" in before, "rules outlive the agent"
    assert _route_lines(svc_cluster, node), "the agent routed to the other node's pod CIDR"

    result = svc_cluster.uninstall(node)
    print(f"uninstall exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()}")
    after = svc_cluster.iptables_save(node)
    assert "RAFTORCH" not in after, after
    assert _foreign_lines(after) == _foreign_lines(before)
    for line in ("-A OTHER -s 192.0.2.99/32 -p tcp -m tcp --dport 9 -j DROP", "-A INPUT -j OTHER",
                 "-A OTHER-NAT -d 192.0.2.98/32 -j RETURN", "-A PREROUTING -j OTHER-NAT",
                 "harness: same-node pod hairpin"):
        assert line in after, f"{line!r} should be untouched:\n{after}"
    assert not _route_lines(svc_cluster, node)
    # The node's pods still run (a stopped agent leaves them), so Docker keeps their network:
    # uninstall says so and still succeeds.
    assert result.returncode == 0, result.stderr
    assert "pod network" in result.stderr

    svc_cluster.start_agent(node, "iptables")
    svc_cluster.wait_nodes()
    with svc_cluster.client() as c:
        names = {p.metadata.name for p in ready_pods(c, WEB)}
    target = web.targets(svc_cluster)[node]
    eventually(lambda: svc_cluster.get(svc_cluster.client_ns, [target])[0].get("ok", "")
               .removeprefix("served by ") in names, 15, f"{node} serving again after the agent restarted")


def test_userspace_mode_serves_nodeports_without_iptables_rules(svc_cluster: ServicesCluster, web: Web) -> None:
    for node in svc_cluster.hosts:
        svc_cluster.stop_agent(node)
        svc_cluster.uninstall(node)
        svc_cluster.start_agent(node, "userspace")
    svc_cluster.wait_nodes()
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    node_of = {p.metadata.name: p.spec.node_name for p in pods}
    targets = web.targets(svc_cluster)
    eventually(lambda: all(svc_cluster.get(svc_cluster.client_ns, [t])[0].get("ok", "")
                           .removeprefix("served by ") in node_of for t in targets.values()),
               20, "the userspace proxies serving")
    for node, target in targets.items():
        outcomes = svc_cluster.get(svc_cluster.client_ns, [target], count=30)
        assert all("ok" in o for o in outcomes), (node, outcomes)
        seen = Counter(o["ok"].removeprefix("served by ") for o in outcomes)
        print(f"userspace NodePort {target} ({node}): {dict(seen)}")
        assert set(seen) <= set(node_of) and len(seen) >= 2, seen
        assert {node_of[p] for p in seen} == set(svc_cluster.hosts), seen
    for node in svc_cluster.hosts:
        saved = svc_cluster.iptables_save(node)
        assert "RAFTORCH" not in saved, f"userspace mode should program no iptables rules on {node}:\n{saved}"

    # Without endpoints the proxy resets connections at once.
    with svc_cluster.client() as c:
        scale(c, WEB, 0)
        eventually(lambda: not endpoint_ips(c, WEB), 30, "no endpoints left")
        eventually(lambda: all(svc_cluster.get(svc_cluster.client_ns, [t], timeout=1.0)[0].get("err")
                               in ("ConnectionResetError", "ConnectionRefusedError") for t in targets.values()),
                   10, "the proxies refusing", period=0.05)
        outcomes = svc_cluster.get(svc_cluster.client_ns, list(targets.values()), count=3, timeout=3.0)
        print("userspace, scaled to 0:", [(o["target"], o.get("err"), o.get("secs")) for o in outcomes])
        assert all(o.get("err") in ("ConnectionResetError", "ConnectionRefusedError") and o["secs"] < 0.5
                   for o in outcomes), outcomes
        scale(c, WEB, 3)
        wait_serving(c, WEB, WEB, 3)
