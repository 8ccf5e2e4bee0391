"""ClusterIPs, and what "reachable from inside a pod on the other node" means in this topology.

A ClusterIP exists only as DNAT rules in a node's network stack (nat PREROUTING for what the
node forwards, nat OUTPUT for what its own processes send). In this harness a node's stack
is its namespace `rts-<tag>-hN`, where its agent loads RAFTORCH-* rules; its pods, though,
are Docker containers whose packets enter the *root* namespace through their Docker
bridge. The root namespace has no rules of this cluster (and must not: it is shared with
other clusters' agents and Docker, and one agent per namespace owns the RAFTORCH-* chains),
so a container on its own would send a ClusterIP packet to the root namespace's default
route, never to a rule that knows it.

The choice made here: the root namespace hands everything a node's pods send off their
bridge to that node's namespace (policy routing: `ip rule iif rt0-<node> lookup T`, table T
`default via <node address>`). That makes the node namespace the pods' first hop, exactly
what the node's own network stack is for pods on a real machine, so the node's agent-made
rules apply to its pods' traffic unchanged. The one thing the split cannot reproduce by
itself is br_netfilter on a node-local bridge (a pod answering another pod of the same
bridge, whose connection went through a ClusterIP, replies over layer 2 past the DNAT); the
harness adds one MASQUERADE rule per node namespace for exactly that case (see
svc_topology). Running an agent, or one node's rules, in the root namespace instead was
rejected: its RAFTORCH-* chains would fight with other agents on this machine over the same
chain names (the agent has no flag for another prefix), and the root namespace is not any
one node's.

So "ClusterIP answers from inside a pod on the other node" is tested two ways:

* from a process in node h2's namespace (`ip netns exec rts-<tag>-h2 ...`: a host-network
  pod, or the node itself), through h2's nat OUTPUT rules;
* from inside the pods' containers on h2 and on h1 (`docker exec`, busybox nc), through
  their node's nat PREROUTING rules via the policy routing above;

and both must reach pods on both nodes. A last test shows the root namespace indeed has
no rule for our ClusterIP, i.e. that containers do reach it through their node.
"""

from __future__ import annotations

from collections import Counter

import pytest
from svc_topology import WEB, ServicesCluster, Web, exec_in_pod, nc_get_loop, ready_pods, sh

from raftorch.api.v1 import objects_pb2

pytestmark = [pytest.mark.docker, pytest.mark.processes]


def _check_spread(seen: Counter[str], pods: list[objects_pb2.Pod], where: str) -> None:
    node_of = {p.metadata.name: p.spec.node_name for p in pods}
    assert set(seen) <= set(node_of), f"{where}: answers from unknown pods {seen}"
    assert len(seen) >= 2, f"{where}: only one pod answered: {seen}"
    assert {node_of[p] for p in seen} == set(node_of.values()), f"{where}: pods of both nodes should answer: {seen}"


def test_clusterip_from_processes_in_each_node_namespace(svc_cluster: ServicesCluster, web: Web) -> None:
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    for node, host in svc_cluster.hosts.items():
        outcomes = svc_cluster.get(host.netns, [f"{web.cluster_ip}:80"], count=30)
        assert all("ok" in o for o in outcomes), (node, outcomes)
        seen = Counter(o["ok"].removeprefix("served by ") for o in outcomes)
        print(f"ClusterIP {web.cluster_ip}:80 from node {node}'s namespace: {dict(seen)}")
        _check_spread(seen, pods, f"from {node}")


def test_clusterip_from_inside_pod_containers_on_both_nodes(svc_cluster: ServicesCluster, web: Web) -> None:
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    clients = {p.spec.node_name: p for p in pods}  # one pod of each node
    assert len(clients) == 2
    for node, pod in sorted(clients.items()):
        lines = [line for line in exec_in_pod(pod, nc_get_loop(f"{web.cluster_ip}:80", 24)).splitlines() if line]
        assert len(lines) == 24 and all(line.startswith("served by ") for line in lines), (node, lines)
        seen = Counter(line.removeprefix("served by ") for line in lines)
        print(f"ClusterIP {web.cluster_ip}:80 from pod {pod.metadata.name} on {node}: {dict(seen)}")
        _check_spread(seen, pods, f"from pod {pod.metadata.name} on {node}")


def test_root_namespace_has_no_rule_for_the_clusterip(svc_cluster: ServicesCluster, web: Web) -> None:
    """Containers reach the ClusterIP only through their node's namespace (see module doc)."""
    assert web.cluster_ip not in sh("iptables-save").stdout
    for node in svc_cluster.hosts:
        assert f"-d {web.cluster_ip}/32" in svc_cluster.iptables_save(node, "nat")
