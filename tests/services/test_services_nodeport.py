"""NodePort services through the agents' iptables rules, with real Docker pods on two nodes.

Each node is a network namespace running its agent with `--network-mode iptables`; its pods
are Docker containers on its pod bridge in the root namespace (see svc_topology for the
wiring). A NodePort request to a node's address is DNATed and masqueraded by *that node's*
rules, so it tests exactly the rules `raftorch.net.render_nat_rules(views, [node_ip])`
produces and `IptablesApplier` loads there. Clients are a separate namespace (10.250.X.100)
and processes inside pod containers (`docker exec`, busybox nc).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from svc_topology import (
    WEB,
    FirstAnswer,
    Recorder,
    RuleWatch,
    ServicesCluster,
    Web,
    container_of,
    endpoint_ips,
    eventually,
    exec_in_pod,
    is_ready,
    nc_get_loop,
    pods_of,
    ready_pods,
    scale,
    wait_serving,
)

from raftorch.api.v1 import objects_pb2

pytestmark = [pytest.mark.docker, pytest.mark.processes]

REFUSED = {"ConnectionRefusedError", "ConnectionResetError"}


def served_by(answers: list[str]) -> Counter[str]:
    return Counter(a.removeprefix("served by ") for a in answers)


def by_node(pods: list[objects_pb2.Pod]) -> dict[str, str]:
    return {p.metadata.name: p.spec.node_name for p in pods}


def test_nodeport_answers_on_every_node_from_pods_of_both_nodes(svc_cluster: ServicesCluster, web: Web) -> None:
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    assert len({p.spec.node_name for p in pods}) == 2, "the 3 replicas should be spread over both nodes"
    where = by_node(pods)
    for node, target in web.targets(svc_cluster).items():
        outcomes = svc_cluster.get(svc_cluster.client_ns, [target], count=30)
        assert all("ok" in o for o in outcomes), (node, outcomes)
        seen = served_by([o["ok"] for o in outcomes])
        print(f"NodePort {target} ({node}): {dict(seen)}")
        assert set(seen) <= set(where), seen
        assert len(seen) >= 2, f"only one pod answered on {node}: {seen}"
        assert {where[p] for p in seen} == set(svc_cluster.hosts), f"pods of both nodes should answer: {seen}"


def test_nodeport_from_inside_pods_on_both_nodes(svc_cluster: ServicesCluster, web: Web) -> None:
    """A pod's traffic leaves through its node's namespace, so NodePorts of its own node and of
    the other node both answer from inside containers."""
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    names = {p.metadata.name for p in pods}
    clients = {p.spec.node_name: p for p in pods}  # one pod per node
    assert len(clients) == 2
    for node, pod in clients.items():
        script = "; ".join(nc_get_loop(t, 6) for t in web.targets(svc_cluster).values())
        answers = [line for line in exec_in_pod(pod, script).splitlines() if line]
        assert len(answers) == 12 and all(a.removeprefix("served by ") in names for a in answers), (node, answers)


def test_pod_to_pod_across_nodes_keeps_pod_addresses(svc_cluster: ServicesCluster, web: Web) -> None:
    """Pod A on one node reaches pod B on the other by its pod IP, and B sees A's pod IP."""
    with svc_cluster.client() as c:
        pods = ready_pods(c, WEB)
    clients = {p.spec.node_name: p for p in pods}
    (a, b) = list(clients.values())
    for src, dst in ((a, b), (b, a)):
        answer = exec_in_pod(src, nc_get_loop(f"{dst.status.pod_ip}:8080", 1)).strip()
        assert answer == f"served by {dst.metadata.name}", answer

        def logged(src: objects_pb2.Pod = src, dst: objects_pb2.Pod = dst) -> bool:
            return f"[::ffff:{src.status.pod_ip}]:" in container_of(dst).logs().decode(errors="replace")

        eventually(logged, 5, f"{dst.metadata.name}'s log showing {src.status.pod_ip} as the client")


def test_scale_to_zero_refuses_promptly_then_serves_again(svc_cluster: ServicesCluster, web: Web) -> None:
    targets = web.targets(svc_cluster)
    h2 = svc_cluster.hosts[sorted(svc_cluster.hosts)[1]]
    with svc_cluster.client() as c:
        scale(c, WEB, 0)
        eventually(lambda: not endpoint_ips(c, WEB), 30, "no endpoints left")
        # Every node's rules reject the NodePort once they follow the empty endpoints.
        eventually(lambda: all(svc_cluster.get(svc_cluster.client_ns, [t], timeout=1.0)[0].get("err") in REFUSED
                               for t in targets.values()), 10, "NodePorts refusing", period=0.05)
        outcomes = svc_cluster.get(svc_cluster.client_ns, list(targets.values()), count=5, timeout=3.0)
        print("scaled to 0:", [(o["target"], o.get("err"), o.get("secs")) for o in outcomes])
        for o in outcomes:
            assert o.get("err") in REFUSED, o
            assert o["secs"] < 0.5, f"refusal took {o['secs']}s: {o}"
        # The ClusterIP too, from a process on a node.
        outcomes = svc_cluster.get(h2.netns, [f"{web.cluster_ip}:80"], count=3, timeout=3.0)
        assert all(o.get("err") in REFUSED and o["secs"] < 0.5 for o in outcomes), outcomes

        scale(c, WEB, 3)
        pods = wait_serving(c, WEB, WEB, 3)
    names = {p.metadata.name for p in pods}

    def answering() -> bool:
        outcomes = svc_cluster.get(svc_cluster.client_ns, list(targets.values()), count=3)
        return all(o.get("ok", "").removeprefix("served by ") in names for o in outcomes)

    eventually(answering, 10, "NodePorts answering after scaling back to 3", period=0.1)


def ep_has(name: str, ip: str) -> Callable[[str, Any], bool]:
    def check(kind: str, ep: Any) -> bool:
        return (kind != "DELETED" and ep.metadata.name == name
                and any(a.ip == ip for sub in ep.subsets for a in sub.addresses))
    return check


def test_replaced_pod_is_followed_by_every_node(svc_cluster: ServicesCluster, web: Web) -> None:
    """Delete a pod: from the endpoint change to every node's rules, and to each node's
    NodePort answering from the new pod (timings printed; only generous bounds asserted).

    Times come from watches (pods, endpoints) in this process, `iptables-save` polled back to
    back in every node's namespace, and a client in the client namespace asking each NodePort
    every 5 ms until the new pod answers; all on the one wall clock of this machine."""
    targets = web.targets(svc_cluster)
    with svc_cluster.client() as c:
        before = ready_pods(c, WEB)
        victim = sorted(before, key=lambda p: p.metadata.name)[0]
        old = {p.metadata.name for p in pods_of(c, WEB)}
        pods = Recorder(c, "pods", label_selector=f"app={WEB}")
        endpoints = Recorder(c, "endpoints")
        answers: dict[str, FirstAnswer] = {}
        try:
            t_delete = time.time()
            c.objects.delete("pods", victim.metadata.name, "default")
            new: list[objects_pb2.Pod] = []

            def replacement(kind: str, pod: Any) -> bool:
                if kind != "DELETED" and pod.metadata.name not in old:
                    new.append(pod)
                    return True
                return False

            pods.wait_for(replacement, 30, "a replacement pod")
            name = new[0].metadata.name
            answers = {node: FirstAnswer(svc_cluster.client_ns, t, f"served by {name}") for node, t in targets.items()}
            addressed: list[objects_pb2.Pod] = []

            def has_ip(kind: str, pod: Any) -> bool:
                if pod.metadata.name == name and pod.status.pod_ip:
                    addressed.append(pod)
                    return True
                return False

            pods.wait_for(has_ip, 30, f"{name} to get an address")
            ip, node_of_pod = addressed[0].status.pod_ip, addressed[0].spec.node_name
            rules = RuleWatch(svc_cluster, svc_cluster.hosts, f"--to-destination {ip}:8080", timeout=30)
            t_ready = pods.wait_for(lambda k, p: p.metadata.name == name and is_ready(p), 30, f"{name} Ready")
            t_endpoints = endpoints.wait_for(ep_has(WEB, ip), 30, f"{ip} in the endpoints of {WEB}")
            applied = rules.wait()
            first = {node: a.result() for node, a in answers.items()}
        finally:
            pods.close()
            endpoints.close()
            for a in answers.values():
                if a.proc.poll() is None:
                    a.proc.kill()
                    a.proc.communicate()
    line = [f"replaced {victim.metadata.name} by {name} ({ip} on {node_of_pod}): Ready "
            f"+{t_ready - t_delete:.2f}s after the delete, in the endpoints +{t_endpoints - t_delete:.2f}s;"]
    for node in sorted(targets):
        if node in applied:
            low, high = rules.bounds[node]
            rule_s = f"in its rules by {high - t_endpoints:+.3f}s (after {low - t_endpoints:+.3f}s)"
        else:
            rule_s = "never in its rules"
        seen = first[node]["seen_at"]
        answer_s = f"{seen - t_endpoints:+.3f}s" if seen else "never"
        line.append(f"{node}: {rule_s}, its NodePort answered by the new pod {answer_s};")
    print(" ".join(line) + " (all relative to the endpoint change)")
    assert set(applied) == set(svc_cluster.hosts), f"rules did not follow on every node: {applied}"
    for node in targets:
        assert applied[node] - t_endpoints < 5.0, line
        assert first[node]["seen_at"] is not None, f"{node}'s NodePort never answered from {name}"
        assert first[node]["seen_at"] - t_endpoints < 10.0, line
    # And the NodePort keeps working, with the current pods only.
    with svc_cluster.client() as c:
        current = {p.metadata.name for p in wait_serving(c, WEB, WEB, 3)}
    outcomes = svc_cluster.get(svc_cluster.client_ns, list(targets.values()), count=10)
    assert all(o.get("ok", "").removeprefix("served by ") in current for o in outcomes), outcomes
    assert victim.metadata.name not in current
