"""A small fake cluster in network namespaces, for tests against the real kernel.

    client 10.123.0.100 ─┐
    h1     10.123.0.11  ─┼─ br0 (in namespace "sw")
    h2     10.123.0.12  ─┘
    h1: cbr0 10.124.1.1/24 ── p1a 10.124.1.2, p1b 10.124.1.3
    h2: cbr0 10.124.2.1/24 ── p2a 10.124.2.2

Every namespace is named `rt-<6 hex>-<role>`; all links are created inside them, so nothing
is added to the host's own namespace and the host's iptables (and Docker's FORWARD DROP
policy) never see this traffic. Each pod runs `_echo_server.py` on port 8080 (TCP and UDP),
answering `<pod>:<what it got>`. The hosts route to each other's pod CIDR through
`RouteApplier`, as an agent would.

Needs root and a working `ip netns`: skipped otherwise, failed when CI is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.net import RouteApplier, plan_routes

HERE = Path(__file__).resolve().parent
CLUSTER_CIDR = "10.124.0.0/16"
CLIENT_IP = "10.123.0.100"
HOST_IPS = {"h1": "10.123.0.11", "h2": "10.123.0.12"}
POD_CIDRS = {"h1": "10.124.1.0/24", "h2": "10.124.2.0/24"}
PODS = {"p1a": ("h1", "10.124.1.2"), "p1b": ("h1", "10.124.1.3"), "p2a": ("h2", "10.124.2.2")}
ECHO_PORT = 8080


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unusable(reason: str) -> None:
    if ci():
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


def probe() -> None:
    if os.geteuid() != 0:
        unusable("network namespace tests need root")
    if shutil.which("ip") is None:
        unusable("network namespace tests need iproute2's `ip`")
    probe = f"rt-{secrets.token_hex(3)}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        unusable(f"`ip netns add` does not work here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


@dataclass
class Topology:
    suffix: str
    names: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return self.names[role]

    def run(self, role: str, *cmd: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{role}: {' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ip(self, role: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "-n", self.ns(role), *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{role}: ip {' '.join(args)} -> {proc.stderr.strip()}")
        return proc

    def connect(self, role: str, host: str, port: int, *, count: int = 1, timeout: float = 2.0,
                proto: str = "tcp", payload: str = "ping") -> list[dict[str, Any]]:
        """Outcomes of `count` connections made from inside `role` (see _client.py)."""
        args = json.dumps({"host": host, "port": port, "count": count, "timeout": timeout, "proto": proto,
                           "payload": payload})
        out = self.run(role, sys.executable, str(HERE / "_client.py"), args, timeout=count * (timeout + 1) + 30)
        result: list[dict[str, Any]] = json.loads(out.stdout)
        return result

    def answers(self, role: str, host: str, port: int, count: int, **kw: Any) -> list[str]:
        """Which pods answered `count` connections; fails on any error."""
        outcomes = self.connect(role, host, port, count=count, **kw)
        assert all("ok" in o for o in outcomes), outcomes
        return [str(o["ok"]).split(":")[0] for o in outcomes]

    def iptables_save(self, role: str, iptables: str = "iptables") -> str:
        return self.run(role, f"{iptables}-save").stdout


def _nodes() -> list[objects_pb2.Node]:
    return [objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=host),
                             spec=objects_pb2.NodeSpec(pod_cidr=POD_CIDRS[host]),
                             status=objects_pb2.NodeStatus(addresses=[
                                 objects_pb2.NodeAddress(type="InternalIP", address=HOST_IPS[host])]))
            for host in HOST_IPS]


def apply_pod_routes(topo: Topology) -> None:
    for host in HOST_IPS:
        RouteApplier(CLUSTER_CIDR, netns=topo.ns(host)).apply(plan_routes(_nodes(), host))


def build(topo: Topology) -> None:
    for role in ["sw", "client", *HOST_IPS, *PODS]:
        name = f"rt-{topo.suffix}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        topo.names[role] = name
        topo.ip(role, "link", "set", "lo", "up")
    topo.ip("sw", "link", "add", "br0", "type", "bridge")
    topo.ip("sw", "link", "set", "br0", "up")
    for role, address in [("client", CLIENT_IP), *HOST_IPS.items()]:
        topo.ip(role, "link", "add", "eth0", "type", "veth", "peer", "name", role, "netns", topo.ns("sw"))
        topo.ip("sw", "link", "set", role, "master", "br0", "up")
        topo.ip(role, "addr", "add", f"{address}/24", "dev", "eth0")
        topo.ip(role, "link", "set", "eth0", "up")
    for host, cidr in POD_CIDRS.items():
        gateway = cidr.replace(".0/24", ".1")
        topo.ip(host, "link", "add", "cbr0", "type", "bridge")
        topo.ip(host, "addr", "add", f"{gateway}/24", "dev", "cbr0")
        topo.ip(host, "link", "set", "cbr0", "up")
        # Service IPs need some route for the first lookup, before DNAT picks the real one.
        topo.ip(host, "route", "add", "default", "dev", "eth0")
        topo.run(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for pod, (host, address) in PODS.items():
        topo.ip(host, "link", "add", pod, "type", "veth", "peer", "name", "eth0", "netns", topo.ns(pod))
        topo.ip(host, "link", "set", pod, "master", "cbr0", "up")
        # br_netfilter DNATs bridged frames at layer 2, so a pod reaching itself through a
        # service leaves by the port it came in on: the port needs hairpin mode (as kubelet
        # sets for its bridge ports, and Docker does without its userland proxy).
        topo.ip(host, "link", "set", pod, "type", "bridge_slave", "hairpin", "on")
        topo.ip(pod, "addr", "add", f"{address}/24", "dev", "eth0")
        topo.ip(pod, "link", "set", "eth0", "up")
        topo.ip(pod, "route", "add", "default", "via", POD_CIDRS[host].replace(".0/24", ".1"))
    apply_pod_routes(topo)
    for pod in PODS:
        server = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns(pod), sys.executable, str(HERE / "_echo_server.py"), pod,
             str(ECHO_PORT)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        topo.servers.append(server)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", f"echo server in {pod} did not start"


def destroy(topo: Topology) -> None:
    for server in topo.servers:
        server.kill()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
    for name in topo.names.values():
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
