"""NodePortProxy inside host h1, without any iptables rule: the NodePort still works."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from netns_cluster import ECHO_PORT, HERE, HOST_IPS, PODS, Topology

from raftorch.net import EndpointView, ServiceView

pytestmark = pytest.mark.processes

H1 = HOST_IPS["h1"]


class ProxyProcess:
    def __init__(self, topology: Topology) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", topology.ns("h1"), sys.executable, str(HERE / "_proxy_runner.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def update(self, views: list[ServiceView], node_ips: list[str]) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"views": [dataclasses.asdict(v) for v in views],
                                          "node_ips": node_ips}) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        assert self.proc.returncode == 0, err


@pytest.fixture
def proxy(topology: Topology) -> Iterator[ProxyProcess]:
    process = ProxyProcess(topology)
    try:
        yield process
    finally:
        process.stop()


def _view(name: str, node_port: int, *pods: str) -> ServiceView:
    return ServiceView("shop", name, "http", "TCP", 80, "10.96.0.10", node_port,
                       tuple(EndpointView(PODS[p][1], ECHO_PORT, PODS[p][0]) for p in pods))


def test_userspace_nodeport(topology: Topology, proxy: ProxyProcess) -> None:
    proxy.update([_view("web", 30090, "p1a", "p1b", "p2a"), _view("empty", 30091)], [H1])
    assert "RAFTORCH" not in topology.iptables_save("h1")
    assert set(topology.answers("client", H1, 30090, 30)) == {"p1a", "p1b", "p2a"}
    for outcome in topology.connect("client", H1, 30091, count=3, timeout=3.0):
        assert outcome.get("error") == "ConnectionResetError", outcome
        assert outcome["seconds"] < 1.0, outcome
    proxy.update([_view("web", 30090, "p2a")], [H1])
    assert set(topology.answers("client", H1, 30090, 5)) == {"p2a"}
    (gone,) = topology.connect("client", H1, 30091, timeout=3.0)
    assert gone.get("error") == "ConnectionRefusedError", gone
