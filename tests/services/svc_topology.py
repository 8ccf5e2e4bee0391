"""Nodes as network namespaces around the one shared Docker engine, for the services tests and bench.

Docker runs every container in the root network namespace's world: a container's traffic
leaves through a Docker bridge in the root namespace. A raftorch node, though, is where its
agent programs iptables. So each node ("host") here is a network namespace running its
agent (`ip netns exec HOST python -m raftorch.agent --runtime docker --network-mode ...`),
while its pods are Docker containers on the node's pod bridge in the root namespace. The
pieces are tied together so that, seen from the pods and the clients, each host namespace
*is* its node's network stack::

    root namespace
      bridge rts<tag> 10.250.X.1/24 ── veth ── ns rts-<tag>-h1      eth0 10.250.X.11   agent h1
        (masters listen here,      ├── veth ── ns rts-<tag>-h2      eth0 10.250.X.12   agent h2
         on distinct ports)        └── veth ── ns rts-<tag>-client  eth0 10.250.X.100  (clients)
      Docker bridge rt0-<h1> 10.244.Y.1/24    pods of h1   (networks raftorch-<node>, made by
      Docker bridge rt0-<h2> 10.244.Y+1.1/24  pods of h2    the agents on their pod CIDRs)

* Masters: three `LocalMasters` on 10.250.X.1 in the root namespace (the agents cannot reach
  the root's 127.0.0.1). They get a cluster CIDR of their own, a free 10.244.Y.0/20 (so the
  pod networks cannot collide with other clusters' Docker networks on this machine, and
  stay inside the agent's fixed 10.244.0.0/16), and a service CIDR of their own, a free
  10.253.Z.0/20 (so no other cluster's rules in the root namespace match our ClusterIPs).
* Host namespaces: a route for the whole cluster CIDR via 10.250.X.1 (the node's own pod
  bridge is "behind" it; the agent adds more specific routes to the other nodes' pod CIDRs
  via their InternalIPs, so cross-node pod traffic goes through the other node's namespace
  as it would through the other machine); the service CIDR is routed into a sink device (a
  bridge without ports: a connect() needs some route before OUTPUT's DNAT picks the real
  one; anything not DNATed dies there); no default route, so nothing leaves this machine.
* Pod egress: policy routing in the root namespace (`ip rule iif rt0-<node> lookup T`,
  table T: `default via <node's address>`) hands every packet a pod sends off its bridge to
  its node's namespace first: ClusterIPs, NodePorts and other pods are reached through the
  node's own rules and routes, exactly as with a bridge inside the node. Replies to
  NodePort traffic (masqueraded to the node's address) return the same way.
* Same-node hairpin: in a real node the pod bridge is in the node's namespace, and
  br_netfilter makes a pod's reply to another pod of the same bridge pass the node's
  conntrack, which undoes the ClusterIP DNAT. Here that bridge is in the root namespace, so
  each host namespace has one rule of this harness, `POSTROUTING -s <cluster CIDR>
  -d <own pod CIDR> -m conntrack --ctstate DNAT -j MASQUERADE`, sending such replies back
  through the node instead. It is not a RAFTORCH rule, and uninstall must leave it.
* Root namespace rules (Docker's FORWARD policy is DROP): a chain RTSVC-<tag> jumped to from
  DOCKER-USER accepts traffic between our bridge and the pod CIDR and between our
  namespaces, and rejects anything else arriving from our bridge; one nat POSTROUTING rule
  keeps Docker from masquerading pod traffic to our bridge, so pods see each other's
  addresses. Everything (namespaces, veths, bridge, rules, routes, Docker containers and
  networks of our nodes, processes) is undone at teardown, also by a finalizer.

Needs root, `ip netns`, iptables and a Docker engine with the raftorch/busybox image
(scripts/start_docker.sh, scripts/build_images.sh); `require_support` says why not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftorch.api.v1 import objects_pb2
from raftorch.auth.pki import ensure_node_files
from raftorch.client import Client
from raftorch.local.masters import LocalMasters
from raftorch.net import bridge_name

HERE = Path(__file__).resolve().parent
HTTP_SCRIPT = HERE / "svc_http.py"
IMAGE = "raftorch/busybox:latest"
AGENT_PORT = 10250
LABEL_NODE = "raftorch.io/node"
LABEL_POD_UID = "raftorch.io/pod-uid"
# busybox httpd, logging every request (with the client's address) to the container's log.
HTTPD = ["sh", "-c", 'echo "served by $(hostname)" > /www/index.html && exec httpd -f -vv -p 8080 -h /www']


class Unusable(RuntimeError):
    """This machine cannot run the harness; the message says why."""


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def sh(*cmd: str, check: bool = True, input: str | None = None, timeout: float = 60.0
       ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def quiet(*cmd: str) -> None:
    """Run a command, ignoring its failure (for undoing what may already be gone)."""
    sh(*cmd, check=False)


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


def require_support() -> None:
    """Raise Unusable unless root, `ip netns`, iptables, Docker and the image are all there."""
    if os.geteuid() != 0:
        raise Unusable("the services tests need root (network namespaces, iptables)")
    for tool in ("ip", "iptables", "iptables-save", "iptables-restore"):
        if shutil.which(tool) is None:
            raise Unusable(f"the services tests need `{tool}`")
    probe = f"rts-{secrets.token_hex(3)}-probe"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        raise Unusable(f"`ip netns add` does not work here: {made.stderr.strip()}")
    sh("ip", "netns", "del", probe, check=False)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # docker-py leaks the socket of a failed unix connect (a ResourceWarning, an error
        # here): try the socket first, and close it ourselves.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_sock:
            probe_sock.settimeout(5)
            try:
                probe_sock.connect(host.removeprefix("unix://"))
            except OSError as exc:
                raise Unusable(f"no Docker engine at {host} (bash scripts/start_docker.sh): {exc}") from None
    try:
        client = docker_client()
    except Exception as exc:
        raise Unusable(f"no Docker engine (bash scripts/start_docker.sh): {exc}") from None
    try:
        try:
            client.ping()
        except Exception as exc:
            raise Unusable(f"no Docker engine (bash scripts/start_docker.sh): {exc}") from None
        try:
            client.images.get(IMAGE)
        except Exception:
            raise Unusable(f"no {IMAGE} image (bash scripts/build_images.sh)") from None
    finally:
        client.close()


# -- undo log -------------------------------------------------------------------------------------


@dataclass
class _Undo:
    """What to undo, newest first; held apart from the cluster so a finalizer can run it alone."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, what: str, step: Callable[[], None]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        while self.steps:
            _, step = self.steps.pop()
            with contextlib.suppress(Exception):
                step()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(15)


def _remove_node_docker_objects(nodes: list[str]) -> None:
    """Removes every container and the pod network of these nodes, retrying: the daemon is
    shared, and other users' containers come and go meanwhile. Lists by label without
    inspecting (a plain `containers.list()` inspects every container of the daemon and fails
    when any of them disappears in between). Says on stderr what could not be removed."""
    client = docker_client()
    left: list[str] = []
    try:
        for attempt in range(5):
            left = []
            for node in nodes:
                try:
                    for container in client.containers.list(all=True, sparse=True,
                                                            filters={"label": f"{LABEL_NODE}={node}"}):
                        try:
                            container.remove(force=True)
                        except Exception as exc:
                            if "No such container" not in str(exc) and "404" not in str(exc):
                                left.append(f"container {container.id[:12]}: {exc}")
                    for net in client.networks.list(names=[f"raftorch-{node}"]):
                        if net.name == f"raftorch-{node}":
                            net.remove()
                except Exception as exc:
                    left.append(f"{node}: {exc}")
            if not left:
                return
            time.sleep(0.5 * (attempt + 1))
    finally:
        client.close()
    print(f"svc_topology: could not remove Docker objects of {nodes}: {left}", file=sys.stderr)


# -- choosing free address ranges -------------------------------------------------------------------


def _used_networks() -> list[ipaddress.IPv4Network]:
    text = sh("ip", "-4", "route", "show", "table", "all", check=False).stdout
    text += sh("ip", "-4", "-o", "addr", "show", check=False).stdout
    nets: list[ipaddress.IPv4Network] = []
    for token in text.split():
        with contextlib.suppress(ValueError):
            if "/" in token or token.count(".") == 3:
                nets.append(ipaddress.IPv4Network(token, strict=False))
    client = docker_client()
    try:
        for net in client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    nets.append(ipaddress.IPv4Network(cfg.get("Subnet"), strict=False))
    finally:
        client.close()
    return nets


def _free(candidates: Iterable[ipaddress.IPv4Network], used: list[ipaddress.IPv4Network]
          ) -> ipaddress.IPv4Network:
    pool = list(candidates)
    for _ in range(len(pool) * 2):
        net = pool[secrets.randbelow(len(pool))]
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise Unusable("no free address range for the services topology")


# -- the cluster ------------------------------------------------------------------------------------


@dataclass
class Host:
    """One node: a network namespace with its agent."""

    index: int
    node: str  # the node's name in the cluster
    netns: str
    ip: str
    veth: str
    home: Path
    table: int  # the root namespace's routing table for its pods' egress
    mode: str = "iptables"
    pod_cidr: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pod_bridge(self) -> str:
        name: str = bridge_name(f"raftorch-{self.node}")
        return name

    @property
    def log_path(self) -> Path:
        return self.home / "agent.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ServicesCluster:
    """Three masters in the root namespace and `hosts` agent nodes in namespaces (see module doc)."""

    def __init__(self, root: Path, hosts: int = 2, mode: str = "iptables") -> None:
        self.root = root
        self.tag = secrets.token_hex(3)
        self.mode = mode
        self._undo = _Undo()
        self._finalizer = weakref.finalize(self, self._undo.run)
        self.bridge = f"rts{self.tag}"
        self.chain = f"RTSVC-{self.tag}".upper()
        self.subnet = ipaddress.IPv4Network("0.0.0.0/32")
        self.cluster_cidr = ""
        self.service_cidr = ""
        self.gateway = ""
        self.client_ns = f"rts-{self.tag}-client"
        self.client_ip = ""
        self.hosts: dict[str, Host] = {}
        self.masters: LocalMasters | None = None
        self._host_count = hosts
        self._nat_exception: list[str] = []

    # -- building ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        try:
            self._network()
            self._start_masters(timeout)
            for host in self.hosts.values():
                self.start_agent(host.node, self.mode)
            self.wait_nodes(timeout)
        except BaseException:
            self.teardown()
            raise

    def _network(self) -> None:
        used = _used_networks()
        self.subnet = _free((ipaddress.IPv4Network(f"10.250.{i}.0/24") for i in range(256)), used)
        self.cluster_cidr = str(_free((ipaddress.IPv4Network(f"10.244.{i}.0/20") for i in range(64, 256, 16)),
                                      used))
        self.service_cidr = str(_free((ipaddress.IPv4Network(f"10.253.{i}.0/20") for i in range(0, 256, 16)),
                                      used))
        base = str(self.subnet.network_address).rsplit(".", 1)[0]
        self.gateway = f"{base}.1"
        self.client_ip = f"{base}.100"
        br = self.bridge
        sh("ip", "link", "add", br, "type", "bridge")
        self._undo.add("bridge", lambda: quiet("ip", "link", "del", br))
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", br)
        sh("ip", "link", "set", br, "up")
        self._root_filter_rules()
        tables = self._free_tables(self._host_count)
        for i in range(1, self._host_count + 1):
            node = f"svc{self.tag}-h{i}"
            host = Host(i, node, f"rts-{self.tag}-h{i}", f"{base}.{10 + i}", f"{br}h{i}", self.root / f"h{i}",
                        tables[i - 1], self.mode)
            host.home.mkdir(parents=True, exist_ok=True)
            self.hosts[node] = host
            self._namespace(host.netns, host.veth, host.ip)
            ns = host.netns
            self.ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.default.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")
            sh("ip", "-n", ns, "route", "add", self.cluster_cidr, "via", self.gateway)
            # A bridge without ports: a sink (this kernel has no dummy devices).
            sh("ip", "-n", ns, "link", "add", "svc0", "type", "bridge")
            sh("ip", "-n", ns, "link", "set", "svc0", "up")
            sh("ip", "-n", ns, "route", "add", self.service_cidr, "dev", "svc0")
        self._namespace(self.client_ns, f"{br}cl", self.client_ip)
        sh("ip", "-n", self.client_ns, "route", "add", self.cluster_cidr, "via", self.gateway)
        # Undone after the agents and masters are gone (the undo log runs newest first).
        nodes = list(self.hosts)
        self._undo.add("docker objects", lambda: _remove_node_docker_objects(nodes))

    def _namespace(self, ns: str, veth: str, ip: str) -> None:
        sh("ip", "netns", "add", ns)
        self._undo.add(f"netns {ns}", lambda: quiet("ip", "netns", "del", ns))
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._undo.add(f"veth {veth}", lambda: quiet("ip", "link", "del", veth))
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def _root_filter_rules(self) -> None:
        br, cc, chain = self.bridge, self.cluster_cidr, self.chain
        # DOCKER-USER is where Docker wants its users' FORWARD rules; FORWARD if Docker made none.
        parent = "DOCKER-USER" if sh("iptables", "-w", "5", "-S", "DOCKER-USER", check=False).returncode == 0 \
            else "FORWARD"
        sh("iptables", "-w", "5", "-N", chain)

        def drop_chain() -> None:
            sh("iptables", "-w", "5", "-D", parent, "-j", chain, check=False)
            sh("iptables", "-w", "5", "-F", chain, check=False)
            sh("iptables", "-w", "5", "-X", chain, check=False)

        self._undo.add("root filter chain", drop_chain)
        for rule in (["-i", br, "-o", br], ["-i", br, "-d", cc], ["-s", cc, "-o", br], ["-s", cc, "-d", cc]):
            sh("iptables", "-w", "5", "-A", chain, *rule, "-j", "ACCEPT")
        # Nothing from our namespaces goes anywhere else (such as out of this machine).
        sh("iptables", "-w", "5", "-A", chain, "-i", br, "-j", "REJECT")
        sh("iptables", "-w", "5", "-I", parent, "1", "-j", chain)
        self._nat_exception = ["POSTROUTING", "-s", cc, "-o", br, "-m", "comment", "--comment",
                               f"rtsvc-{self.tag} pods keep their addresses", "-j", "RETURN"]
        rule = self._nat_exception
        self._undo.add("root nat rule", lambda: ServicesCluster._delete_all("nat", rule))

    @staticmethod
    def _delete_all(table: str, rule: list[str]) -> None:
        for _ in range(10):
            if sh("iptables", "-w", "5", "-t", table, "-D", *rule, check=False).returncode != 0:
                return

    def ensure_nat_exception(self) -> None:
        """Our nat rule first in POSTROUTING, above the MASQUERADE rules Docker inserts for
        every new network; called whenever a node may have (re)made its pod network."""
        self._delete_all("nat", self._nat_exception)
        sh("iptables", "-w", "5", "-t", "nat", "-I", self._nat_exception[0], "1", *self._nat_exception[1:])

    @staticmethod
    def _free_tables(count: int) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < count:
            table = 20000 + secrets.randbelow(9000)
            if table not in chosen and not sh("ip", "route", "show", "table", str(table), check=False).stdout.strip():
                chosen.append(table)
        return chosen

    def _pod_egress(self, host: Host) -> None:
        """Root namespace policy routing: what the node's pods send off their bridge goes to the node."""
        table, bridge = str(host.table), host.pod_bridge
        if sh("ip", "rule", "show", "iif", bridge, "lookup", table, check=False).stdout.strip():
            return
        sh("ip", "route", "replace", "default", "via", host.ip, "dev", self.bridge, "table", table)
        self._undo.add(f"table {table}", lambda: quiet("ip", "route", "flush", "table", table))
        sh("ip", "rule", "add", "iif", bridge, "lookup", table, "priority", "32000")
        self._undo.add(f"rule {bridge}", lambda: quiet("ip", "rule", "del", "iif", bridge, "lookup", table,
                                                    "priority", "32000"))

    def _hairpin_rule(self, host: Host) -> list[str]:
        return ["POSTROUTING", "-s", self.cluster_cidr, "-d", host.pod_cidr, "-m", "conntrack", "--ctstate",
                "DNAT", "-m", "comment", "--comment", "harness: same-node pod hairpin", "-j", "MASQUERADE"]

    def _node_setup(self, host: Host) -> None:
        self._pod_egress(host)
        rule = self._hairpin_rule(host)
        if self.ns(host.netns, "iptables", "-w", "5", "-t", "nat", "-C", *rule, check=False).returncode != 0:
            self.ns(host.netns, "iptables", "-w", "5", "-t", "nat", "-A", *rule)

    def _start_masters(self, timeout: float) -> None:
        self.masters = LocalMasters(self.root / "masters", host=self.gateway, extra_args=[
            "--cluster-cidr", self.cluster_cidr, "--service-cidr", self.service_cidr])
        masters = self.masters
        self._undo.add("masters", lambda: masters.kill())
        masters.start()
        masters.wait_ready(timeout)

    # -- agents ---------------------------------------------------------------------------------

    def agent_command(self, host: Host, *extra: str) -> list[str]:
        assert self.masters is not None
        return ["ip", "netns", "exec", host.netns, sys.executable, "-m", "raftorch.agent", "--name", host.node,
                "--masters", ",".join(self.masters.endpoints), "--runtime", "docker", "--node-ip", host.ip,
                "--agent-port", str(AGENT_PORT), "--data-dir", str(host.home / "data"), *extra]

    def start_agent(self, node: str, mode: str | None = None) -> None:
        host = self.hosts[node]
        if host.alive:
            return
        if mode is not None:
            host.mode = mode
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTORCH_AGENT_")}
        assert self.masters is not None and self.masters.pki_dir is not None
        ensure_node_files(self.masters.pki_dir, host.home / "data" / "pki", host.node, host.ip)
        cmd = self.agent_command(host, "--heartbeat-period", "0.5", "--backoff-base", "1",
                                 "--network-mode", host.mode)
        with host.log_path.open("ab") as log:
            log.write(f"--- starting agent ({host.mode}) ---\n".encode())
            log.flush()
            host.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        proc = host.proc
        self._undo.add(f"agent {node}", lambda: _kill(proc))

    def stop_agent(self, node: str, timeout: float = 15.0) -> None:
        host = self.hosts[node]
        proc = host.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        host.proc = None

    def uninstall(self, node: str) -> subprocess.CompletedProcess[str]:
        """`raftorch-agent --uninstall` inside the node's namespace (its agent should be stopped)."""
        host = self.hosts[node]
        return sh(*self.agent_command(host, "--uninstall"), check=False)

    def wait_nodes(self, timeout: float = 60.0) -> None:
        """Every node Ready with its pod CIDR and pod network, rules loaded (iptables mode),
        then the root namespace's routing for its pods set up."""
        docker = docker_client()
        try:
            with self.client(timeout=2.0, retry_for=2.0) as c:
                def ready() -> bool:
                    self._check_agents()
                    nodes = {n.metadata.name: n for n in c.objects.list("nodes")[0]
                             if isinstance(n, objects_pb2.Node)}
                    for host in self.hosts.values():
                        node = nodes.get(host.node)
                        if node is None or not node.spec.pod_cidr or not any(
                                cd.type == "Ready" and cd.status == "True" for cd in node.status.conditions):
                            return False
                        host.pod_cidr = node.spec.pod_cidr
                        if not docker.networks.list(names=[f"raftorch-{host.node}"]):
                            return False
                        if host.mode == "iptables" and ":RAFTORCH-SERVICES" not in self.iptables_save(host.node):
                            return False
                    return True

                eventually(ready, timeout, "nodes Ready with pod networks and rules")
        finally:
            docker.close()
        for host in self.hosts.values():
            self._node_setup(host)
        self.ensure_nat_exception()

    def _check_agents(self) -> None:
        for host in self.hosts.values():
            if host.proc is not None and host.proc.poll() is not None:
                tail = host.log_path.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"agent {host.node} exited with {host.proc.returncode}:\n" + "\n".join(tail))

    # -- teardown -------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Stop everything and undo every change; idempotent."""
        for node, host in self.hosts.items():
            if host.alive:
                with contextlib.suppress(Exception):
                    self.stop_agent(node, timeout=5)
        self._undo.run()

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for host in self.hosts.values():
            if host.log_path.exists():
                out += [f"--- agent {host.node} log tail ---",
                        *host.log_path.read_text(errors="replace").splitlines()[-lines:]]
        if self.masters is not None:
            for m in self.masters.masters.values():
                if m.log_path.exists():
                    out += [f"--- master {m.name} log tail ---",
                            *m.log_path.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(out)

    # -- using it -------------------------------------------------------------------------------

    def client(self, timeout: float = 5.0, retry_for: float = 15.0) -> Client:
        assert self.masters is not None
        return self.masters.client(timeout=timeout, retry_for=retry_for)

    @property
    def node_ips(self) -> dict[str, str]:
        return {h.node: h.ip for h in self.hosts.values()}

    @staticmethod
    def ns(netns: str, *cmd: str, check: bool = True, timeout: float = 60.0, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", netns, *cmd, check=check, timeout=timeout, input=input)

    def iptables_save(self, node: str, table: str | None = None) -> str:
        args = ["iptables-save"] + (["-t", table] if table else [])
        return self.ns(self.hosts[node].netns, *args).stdout

    def http(self, netns: str, mode: str, **args: Any) -> Any:
        """svc_http.py run inside `netns`; its JSON result."""
        limit = float(args.get("seconds", 0)) + float(args.get("deadline", 0)) + 60 + \
            len(args.get("targets", [])) * int(args.get("count", 1)) * (float(args.get("timeout", 2)) + 0.5)
        out = self.ns(netns, sys.executable, str(HTTP_SCRIPT), json.dumps({"mode": mode, **args}), timeout=limit)
        return json.loads(out.stdout)

    def get(self, netns: str, targets: list[str], count: int = 1, timeout: float = 2.0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.http(netns, "get", targets=targets, count=count, timeout=timeout)
        return result


# -- objects --------------------------------------------------------------------------------------

WEB = "web"


@dataclass(frozen=True)
class Web:
    """The tests' shared NodePort service (and deployment) `web`."""

    name: str
    node_port: int
    cluster_ip: str

    def targets(self, cluster: ServicesCluster) -> dict[str, str]:
        """The NodePort on each node's address, by node."""
        return {node: f"{ip}:{self.node_port}" for node, ip in cluster.node_ips.items()}



def eventually(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition", period: float = 0.1
               ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(period)


def deployment(name: str, replicas: int, command: list[str] | None = None, image: str = IMAGE,
               grace: int = 1) -> objects_pb2.Deployment:
    labels = {"app": name}
    container = objects_pb2.Container(name="main", image=image, command=command or HTTPD,
                                      ports=[objects_pb2.ContainerPort(name="http", container_port=8080)])
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=grace))))


def service(name: str, app: str, kind: str = "NodePort", port: int = 80, target: str = "8080"
            ) -> objects_pb2.Service:
    return objects_pb2.Service(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.ServiceSpec(type=kind, selector={"app": app},
                                     ports=[objects_pb2.ServicePort(name="http", protocol="TCP", port=port,
                                                                    target_port=target)]))


def pods_of(c: Client, app: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", "default", label_selector=f"app={app}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


def is_ready(pod: objects_pb2.Pod) -> bool:
    return (pod.status.phase == "Running" and bool(pod.status.pod_ip) and not pod.metadata.deletion_timestamp
            and any(cd.type == "Ready" and cd.status == "True" for cd in pod.status.conditions))


def ready_pods(c: Client, app: str) -> list[objects_pb2.Pod]:
    return [p for p in pods_of(c, app) if is_ready(p)]


def endpoint_ips(c: Client, name: str) -> set[str]:
    ep = c.objects.get("endpoints", name, "default")
    assert isinstance(ep, objects_pb2.Endpoints)
    return {a.ip for s in ep.subsets for a in s.addresses}


def scale(c: Client, name: str, replicas: int) -> None:
    for _ in range(10):
        deploy = c.objects.get("deployments", name, "default")
        assert isinstance(deploy, objects_pb2.Deployment)
        deploy.spec.replicas = replicas
        try:
            c.objects.update(deploy)
            return
        except Exception as exc:  # a Conflict with the controllers' status writes: re-read
            if "Conflict" not in type(exc).__name__:
                raise
    raise AssertionError(f"could not scale {name}")


def wait_serving(c: Client, app: str, service_name: str, replicas: int, timeout: float = 60.0) -> list[objects_pb2.Pod]:
    """Exactly `replicas` pods, all Ready and all in the service's endpoints (and no others)."""
    found: list[objects_pb2.Pod] = []

    def check() -> bool:
        nonlocal found
        pods = pods_of(c, app)
        found = [p for p in pods if is_ready(p)]
        return (len(pods) == replicas and len(found) == replicas
                and endpoint_ips(c, service_name) == {p.status.pod_ip for p in found})

    eventually(check, timeout, f"{replicas} pods of {app} Ready and in the endpoints of {service_name}")
    return found


def container_of(pod: objects_pb2.Pod) -> Any:
    client = docker_client()
    try:
        found = client.containers.list(filters={"label": f"{LABEL_POD_UID}={pod.metadata.uid}"})
        assert found, f"no running container for pod {pod.metadata.name}"
        return found[0]
    finally:
        client.close()


def exec_in_pod(pod: objects_pb2.Pod, script: str) -> str:
    """Output of `sh -c script` in the pod's container (busybox: use nc, its wget crashes)."""
    container = container_of(pod)
    code, out = container.exec_run(["sh", "-c", script])
    text: str = out.decode(errors="replace")
    assert code == 0, f"exec in {pod.metadata.name} failed ({code}): {text}"
    return text


def nc_get_loop(target: str, count: int, timeout: int = 2) -> str:
    """A shell loop doing `count` HTTP GETs with busybox nc, one line per answer (or ERR)."""
    host, _, port = target.rpartition(":")
    return (f"i=0; while [ $i -lt {count} ]; do i=$((i+1)); "
            f"out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {timeout} {host} {port} | tail -n 1); "
            f"[ -n \"$out\" ] && echo \"$out\" || echo ERR; done")


# -- timing ---------------------------------------------------------------------------------------


class RuleWatch:
    """Polls `iptables-save -t nat` in each node's namespace (in threads, back to back) for the
    first time a text appears (`present=True`) or is gone (`present=False`).

    `seen[node]` is the wall-clock time the finding poll returned: the change happened before
    it, and after `bounds[node][0]`, the start of the last poll that did not find it."""

    def __init__(self, cluster: ServicesCluster, nodes: Iterable[str], needle: str, present: bool = True,
                 timeout: float = 60.0) -> None:
        self.seen: dict[str, float] = {}
        self.bounds: dict[str, tuple[float, float]] = {}
        self.polls: dict[str, int] = {}
        self._needle, self._present, self._cluster = needle, present, cluster
        self._deadline = time.monotonic() + timeout
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(n,), daemon=True) for n in nodes]
        for t in self._threads:
            t.start()

    def _poll(self, node: str) -> None:
        netns = self._cluster.hosts[node].netns
        last_miss = time.time()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            began = time.time()
            text = sh("ip", "netns", "exec", netns, "iptables-save", "-t", "nat", check=False).stdout
            self.polls[node] = self.polls.get(node, 0) + 1
            if (self._needle in text) == self._present:
                self.seen[node] = time.time()
                self.bounds[node] = (last_miss, self.seen[node])
                return
            last_miss = began

    def wait(self) -> dict[str, float]:
        for t in self._threads:
            t.join(max(0.0, self._deadline - time.monotonic()) + 5)
        return self.seen

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


class Recorder:
    """Every event of a watch with the wall-clock time it arrived, gathered by a thread."""

    def __init__(self, client: Client, kind: str, namespace: str = "default", label_selector: str = "") -> None:
        self.events: list[tuple[float, str, Any]] = []
        self._watch = client.objects.watch(kind, namespace, label_selector=label_selector)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._watch.synced.wait(15):
            raise AssertionError(f"watch of {kind} did not deliver the current state")

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            for ev in self._watch:
                self.events.append((time.time(), ev.type, ev.object))

    def first(self, check: Callable[[str, Any], bool], after: float = 0.0) -> float | None:
        return next((t for t, kind, obj in list(self.events) if t >= after and check(kind, obj)), None)

    def wait_for(self, check: Callable[[str, Any], bool], timeout: float, what: str, after: float = 0.0) -> float:
        found: list[float] = []

        def seen() -> bool:
            t = self.first(check, after)
            if t is not None:
                found.append(t)
            return t is not None

        eventually(seen, timeout, what, period=0.01)
        return found[0]

    def close(self) -> None:
        self._watch.close()
        self._thread.join(10)


class FirstAnswer:
    """`svc_http.py until` in the background: when a target first answers with `want`."""

    def __init__(self, netns: str, target: str, want: str, deadline: float = 30.0) -> None:
        args = {"mode": "until", "target": target, "want": want, "deadline": deadline, "timeout": 1.0,
                "pause": 0.005}
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(HTTP_SCRIPT),
                                      json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._limit = deadline + 30

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=self._limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise AssertionError(f"svc_http until failed: {err.strip()}")
        result: dict[str, Any] = json.loads(out)
        return result
