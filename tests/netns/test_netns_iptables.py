"""IptablesApplier inside host h1 of the namespace cluster: Services work in the kernel."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
from netns_cluster import CLIENT_IP, ECHO_PORT, HOST_IPS, PODS, Topology

from raftorch.net import EndpointView, IptablesApplier, ServiceView, jump_rules, render_nat_rules

pytestmark = pytest.mark.processes

H1 = HOST_IPS["h1"]
BACKENDS = [pytest.param("iptables", id="default"), pytest.param("iptables-legacy", id="legacy")]


def _view(name: str, cluster_ip: str, *pods: str, node_port: int = 0, protocol: str = "TCP",
          port: int = 80) -> ServiceView:
    return ServiceView("shop", name, "http", protocol, port, cluster_ip, node_port,
                       tuple(EndpointView(PODS[p][1], ECHO_PORT, PODS[p][0]) for p in pods))


@pytest.fixture(params=BACKENDS)
def applier(request: pytest.FixtureRequest, topology: Topology) -> Iterator[IptablesApplier]:
    backend: str = request.param
    if shutil.which(backend) is None:
        pytest.skip(f"{backend} is not installed")
    applier = IptablesApplier(iptables=backend, netns=topology.ns("h1"))
    applier.check()
    try:
        yield applier
    finally:
        applier.cleanup()


def _backend(applier: IptablesApplier) -> str:
    return applier.iptables


def test_nodeport_spreads_over_local_and_remote_pods_despite_forward_drop(
        topology: Topology, applier: IptablesApplier) -> None:
    ipt = _backend(applier)
    # Docker leaves FORWARD's policy at DROP; our FORWARD chain must let service traffic through.
    topology.run("h1", ipt, "-w", "5", "-P", "FORWARD", "DROP")
    try:
        applier.apply(render_nat_rules([_view("web", "10.96.0.10", "p1a", "p1b", "p2a", node_port=30080)], [H1]))
        answers = topology.answers("client", H1, 30080, 30)
    finally:
        topology.run("h1", ipt, "-w", "5", "-P", "FORWARD", "ACCEPT")
    assert set(answers) == {"p1a", "p1b", "p2a"}, answers


def test_cluster_ip_from_the_host_and_from_pods(topology: Topology, applier: IptablesApplier) -> None:
    applier.apply(render_nat_rules([_view("web", "10.96.0.10", "p1a", "p1b", "p2a"),
                                    _view("dns", "10.96.0.53", "p2a", protocol="UDP", port=53)], [H1]))
    assert set(topology.answers("h1", "10.96.0.10", 80, 30)) == {"p1a", "p1b", "p2a"}
    # From p1a this includes the hairpin case: p1a reaching itself through the service.
    assert set(topology.answers("p1a", "10.96.0.10", 80, 30)) == {"p1a", "p1b", "p2a"}
    assert topology.answers("h1", "10.96.0.53", 53, 3, proto="udp") == ["p2a"] * 3


def test_service_without_endpoints_is_refused_promptly(topology: Topology, applier: IptablesApplier) -> None:
    # Without rules, nothing answers for a ClusterIP: the connection hangs.
    (before,) = topology.connect("h1", "10.96.0.11", 80, timeout=1.0)
    assert before.get("error") not in (None, "ConnectionRefusedError"), before
    applier.apply(render_nat_rules([_view("empty", "10.96.0.11", node_port=30081),
                                    _view("dns", "10.96.0.53", protocol="UDP", port=53)], [H1]))
    refused = {"ConnectionRefusedError"}
    # A local UDP sender hears of the REJECT in OUTPUT as EPERM from send().
    local_udp = {"ConnectionRefusedError", "PermissionError"}
    for expected, outcomes in [
        (refused, topology.connect("h1", "10.96.0.11", 80, count=3, timeout=3.0)),
        (refused, topology.connect("p1a", "10.96.0.11", 80, count=3, timeout=3.0)),
        (refused, topology.connect("client", H1, 30081, count=3, timeout=3.0)),
        (refused, topology.connect("p1a", "10.96.0.53", 53, count=2, timeout=3.0, proto="udp")),
        (local_udp, topology.connect("h1", "10.96.0.53", 53, count=2, timeout=3.0, proto="udp")),
    ]:
        for outcome in outcomes:
            assert outcome.get("error") in expected, outcomes
            assert outcome["seconds"] < 1.0, outcomes
    counted = [line for line in topology.run("h1", f"{_backend(applier)}-save", "-c", "-t", "filter").stdout
               .splitlines() if "-A RAFTORCH-REJECT" in line and "--dport 30081" in line]
    assert len(counted) == 1 and re.match(r"\[[1-9]\d*:", counted[0]), counted


def test_replacing_the_endpoint_takes_effect(topology: Topology, applier: IptablesApplier) -> None:
    applier.apply(render_nat_rules([_view("web", "10.96.0.10", "p1a", node_port=30080)], [H1]))
    assert set(topology.answers("client", H1, 30080, 5)) == {"p1a"}
    applier.apply(render_nat_rules([_view("web", "10.96.0.10", "p2a", node_port=30080)], [H1]))
    assert set(topology.answers("client", H1, 30080, 10)) == {"p2a"}
    assert PODS["p1a"][1] not in applier.current_rules()
    applier.apply(render_nat_rules([], [H1]))
    (gone,) = topology.connect("client", H1, 30080, timeout=3.0)
    assert gone.get("error") == "ConnectionRefusedError", gone
    assert "SVC-" not in applier.current_rules() and "SEP-" not in applier.current_rules()


def _normalized(save: str) -> list[str]:
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in save.splitlines() if not line.startswith("#")]


def test_cleanup_leaves_foreign_rules_untouched(topology: Topology, applier: IptablesApplier) -> None:
    ipt = _backend(applier)
    foreign = [
        ["-t", "filter", "-N", "OTHER"],
        ["-t", "filter", "-A", "OTHER", "-s", CLIENT_IP, "-p", "tcp", "--dport", "9", "-j", "ACCEPT"],
        ["-t", "filter", "-A", "INPUT", "-j", "OTHER"],
        ["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "RETURN"],
    ]
    for args in foreign:
        topology.run("h1", ipt, "-w", "5", *args)
    try:
        before = _normalized(topology.iptables_save("h1", ipt))
        views = [_view("web", "10.96.0.10", "p1a", "p2a", node_port=30080), _view("empty", "10.96.0.11")]
        applier.apply(render_nat_rules(views, [H1]))
        applier.apply(render_nat_rules(views, [H1]))
        during = topology.iptables_save("h1", ipt)
        for table, chain, args in jump_rules():
            jumps = re.findall(rf"^-A {chain} .*-j {args[-1]}$", during, re.MULTILINE)
            assert len(jumps) == 1, (table, chain, during)
        assert all(line in _normalized(during) for line in before)
        applier.cleanup()
        after = topology.iptables_save("h1", ipt)
        assert "RAFTORCH" not in after
        assert _normalized(after) == before
    finally:
        for args in [["-t", "filter", "-D", "INPUT", "-j", "OTHER"], ["-t", "filter", "-F", "OTHER"],
                     ["-t", "filter", "-X", "OTHER"],
                     ["-t", "nat", "-D", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "RETURN"]]:
            topology.run("h1", ipt, "-w", "5", *args, check=False)
