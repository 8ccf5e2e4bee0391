"""A whole cluster in network namespaces on this host: one namespace per "host", real processes.

    root namespace: bridge rtd<hex> 10.231.X.1/24
      ├── veth ── ns rtd-<hex>-m1  eth0 10.231.X.11   raftorch-master (client :2379, Raft :2380)
      ├── veth ── ns rtd-<hex>-m2  eth0 10.231.X.12
      ├── veth ── ns rtd-<hex>-m3  eth0 10.231.X.13
      ├── veth ── ns rtd-<hex>-w1  eth0 10.231.X.21   raftorch-agent
      └── veth ── ns rtd-<hex>-w2  eth0 10.231.X.22

Every host is set up by deploy/provision (install.sh, master.sh, agent.sh in --no-systemd
mode): they write the config files from deploy/config and render the systemd units, and the
harness runs each unit's ExecStart (with its Environment=) inside the host's namespace, as
systemd would on a VM. The root namespace reaches every host through the bridge, so clients
and drills run here. Needs root and iproute2; teardown removes everything it made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shlex
import signal
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from raftorch.auth import pki, tokens
from raftorch.auth.pki import ensure_admin
from raftorch.client import Client, load_credentials, set_default_credentials
from raftorch.drill import pods, probe
from raftorch.local.masters import write_secret

CLIENT_PORT = 2379
PEER_PORT = 2380
AGENT_PORT = 10250
ISOLATE_CHAIN = "RTD-ISOLATE"


class NetnsUnavailable(RuntimeError):
    """This machine cannot run the harness (not root, no `ip netns`)."""


def deploy_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "deploy"


def _run(*cmd: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def probe_support() -> None:
    """Raise NetnsUnavailable with the reason when namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    try:
        name = f"rtd-{secrets.token_hex(3)}-probe"
        made = _run("ip", "netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NetnsUnavailable(f"cannot run `ip`: {exc}") from None
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` does not work here: {made.stderr.strip()}")
    _run("ip", "netns", "del", name, check=False)


@dataclass
class Host:
    name: str
    role: str  # master or worker
    ip: str
    netns: str
    veth: str
    home: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def data(self) -> Path:
        return self.home / "var"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.role}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class _Made:
    """Everything to undo; kept apart from the cluster so a finalizer can hold it alone."""

    bridge: str = ""
    namespaces: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    forward_rule: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def undo(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
            with contextlib.suppress(subprocess.SubprocessError):
                proc.wait(10)
        self.procs.clear()
        for ns in self.namespaces:
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        for veth in self.veths:
            _run("ip", "link", "del", veth, check=False)
        self.veths.clear()
        if self.bridge:
            _run("ip", "link", "del", self.bridge, check=False)
            self.bridge = ""
        if self.forward_rule:
            _run("iptables", "-D", *self.forward_rule, check=False)
            self.forward_rule = []


def _free_subnet() -> ipaddress.IPv4Network:
    used = _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
    used += _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    for _ in range(64):
        net = ipaddress.IPv4Network(f"10.231.{secrets.randbelow(256)}.0/24")
        if f"{net.network_address}".rsplit(".", 1)[0] + "." not in used:
            return net
    raise NetnsUnavailable("no free 10.231.X.0/24 subnet")


class NetnsCluster:
    """`masters` masters and `workers` agent hosts, each in its own network namespace."""

    def __init__(self, root: Path, masters: int = 3, workers: int = 2, runtime: str = "fake", *,
                 node_grace: float | None = None, eviction_timeout: float | None = None,
                 heartbeat_period: float = 0.5, network_mode: str = "iptables", prefix: Path | None = None,
                 deploy: Path | None = None) -> None:
        self.root = root
        self.runtime = runtime
        self.prefix = prefix or Path(sys.prefix)
        self.deploy = deploy or deploy_dir()
        self.settings = {"RAFTORCH_RUNTIME": runtime, "RAFTORCH_NETWORK_MODE": network_mode,
                         "RAFTORCH_HEARTBEAT_PERIOD": str(heartbeat_period),
                         "RAFTORCH_CLIENT_PORT": str(CLIENT_PORT), "RAFTORCH_PEER_PORT": str(PEER_PORT),
                         "RAFTORCH_AGENT_PORT": str(AGENT_PORT)}
        if node_grace is not None:
            self.settings["RAFTORCH_NODE_GRACE"] = str(node_grace)
        if eviction_timeout is not None:
            self.settings["RAFTORCH_EVICTION_TIMEOUT"] = str(eviction_timeout)
        self.tag = secrets.token_hex(3)
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self._names = [f"m{i + 1}" for i in range(masters)] + [f"w{i + 1}" for i in range(workers)]
        self._made = _Made()
        self._finalizer = weakref.finalize(self, self._made.undo)
        # The cluster CA, made here once as an installer would, and an admin's certificate.
        self.pki_dir = root / "pki"
        admin = ensure_admin(self.pki_dir)
        self.credentials = load_credentials(admin.ca_file, admin.cert_file, admin.key_file)
        self.ca_hash = pki.ca_hash(self.credentials.ca_pem or b"")
        self.join_token = tokens.generate()
        set_default_credentials(self.credentials)

    # -- topology ---------------------------------------------------------------------------

    @property
    def masters(self) -> dict[str, Host]:
        return {n: h for n, h in self.hosts.items() if h.role == "master"}

    @property
    def workers(self) -> dict[str, Host]:
        return {n: h for n, h in self.hosts.items() if h.role == "worker"}

    @property
    def master_endpoints(self) -> dict[str, str]:
        return {n: f"{h.ip}:{CLIENT_PORT}" for n, h in self.masters.items()}

    @property
    def endpoints(self) -> list[str]:
        return list(self.master_endpoints.values())

    def client(self, timeout: float = 5.0, retry_for: float = 15.0) -> Client:
        return Client(self.endpoints, timeout, retry_for, credentials=self.credentials)

    def _network(self) -> None:
        probe_support()
        if not (self.deploy / "provision" / "master.sh").exists():
            raise NetnsUnavailable(f"{self.deploy} has no provisioning scripts (not a source checkout?)")
        self.subnet = net = _free_subnet()
        base = str(net.network_address).rsplit(".", 1)[0]
        bridge = f"rtd{self.tag}"
        _run("ip", "link", "add", bridge, "type", "bridge")
        self._made.bridge = bridge
        _run("ip", "addr", "add", f"{base}.1/24", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        # Docker's FORWARD policy is DROP, and with br_netfilter bridged frames pass FORWARD.
        rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
        if _run("iptables", "-I", rule[0], "1", *rule[1:], check=False).returncode == 0:
            self._made.forward_rule = rule
        numbers = {"master": 11, "worker": 21}
        for index, name in enumerate(self._names):
            role = "master" if name.startswith("m") else "worker"
            ip = f"{base}.{numbers[role]}"
            numbers[role] += 1
            host = Host(name, role, ip, f"rtd-{self.tag}-{name}", f"rtd{self.tag}{index}", self.root / name)
            self.hosts[name] = host
            _run("ip", "netns", "add", host.netns)
            self._made.namespaces.append(host.netns)
            _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            self._made.veths.append(host.veth)
            _run("ip", "link", "set", host.veth, "master", bridge, "up")
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", host.netns, "link", "set", "eth0", "up")

    # -- provisioning: the deploy/ scripts, as a VM runs them ----------------------------------

    def _script(self, host: Host, script: str, *args: str, **extra: str) -> str:
        env = {**os.environ, **self.settings, "RAFTORCH_PREFIX": str(self.prefix), "RAFTORCH_ETC": str(host.etc),
               "RAFTORCH_DATA": str(host.data), "RAFTORCH_NO_SYSTEMD": "1", **extra}
        return _run("bash", str(self.deploy / "provision" / script), *args, env=env).stdout.strip()

    def _provision(self) -> None:
        secret = self.root / "cluster-secret"
        write_secret(secret)
        masters = self.masters
        for host in self.hosts.values():
            host.home.mkdir(parents=True, exist_ok=True)
            if host.role == "master":
                self._script(host, "install.sh", "--no-packages", "--no-venv", "--secret-file", str(secret),
                             "--ca-dir", str(self.pki_dir))
                peers = [f"{o.name}={o.ip}" for o in masters.values() if o.name != host.name]
                line = self._script(host, "master.sh", host.name, host.ip, *peers,
                                    RAFTORCH_JOIN_TOKEN=self.join_token)
                unit = "raftorch-master.service"
            else:
                # Workers hold neither the secret nor the CA key: they join with the token.
                self._script(host, "install.sh", "--no-packages", "--no-venv", "--worker")
                line = self._script(host, "agent.sh", host.name, host.ip, ",".join(h.ip for h in masters.values()),
                                    RAFTORCH_JOIN_TOKEN=self.join_token, RAFTORCH_CA_HASH=self.ca_hash)
                unit = "raftorch-agent.service"
            host.command = shlex.split(line.splitlines()[-1])
            host.env = _unit_environment(host.etc / "units" / unit)

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, host: Host) -> None:
        if host.alive:
            return
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAFTORCH_MASTER_", "RAFTORCH_AGENT_"))}
        with host.log_path.open("ab") as log:
            host.proc = subprocess.Popen(["ip", "netns", "exec", host.netns, *host.command], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**env, **host.env}, start_new_session=True)
        self._made.procs.append(host.proc)

    def _signal(self, host: Host, sig: int, timeout: float = 15.0) -> None:
        proc = host.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        host.proc = None
        with contextlib.suppress(ValueError):
            self._made.procs.remove(proc)

    def start(self, timeout: float = 60.0) -> None:
        """Build the network, provision every host, start masters then agents; wait until ready."""
        try:
            if not self.hosts:
                self._network()
                self._provision()
            for host in self.masters.values():
                self._spawn(host)
            self.wait_ready(timeout)
            for host in self.workers.values():
                self._spawn(host)
            self.wait_nodes_ready(list(self.workers), timeout)
        except BaseException:
            self.teardown()
            raise

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait until every running master is healthy under one leader; returns its name."""
        running = [n for n, h in self.masters.items() if h.alive]
        probe.wait_for(lambda: self._check_alive() and probe.healthy(self.master_endpoints, running),
                       timeout, "every running master healthy", period=0.1)
        return self.leader()

    def _check_alive(self) -> bool:
        for host in self.masters.values():
            if host.proc is not None and host.proc.poll() is not None:
                raise RuntimeError(f"master {host.name} exited with {host.proc.returncode}; see {host.log_path}")
        return True

    def wait_nodes_ready(self, names: list[str], timeout: float = 60.0) -> None:
        with self.client(timeout=2.0, retry_for=2.0) as c:
            probe.wait_for(lambda: set(names) <= set(pods.ready_nodes(c)), timeout,
                           f"nodes {', '.join(names)} Ready", period=0.2)

    def leader(self, timeout: float = 30.0) -> str:
        return probe.wait_leader(self.master_endpoints, timeout=timeout)[0]

    def stop(self) -> None:
        """SIGTERM every process (agents first), as `systemctl stop` would."""
        for host in [*self.workers.values(), *self.masters.values()]:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
        for host in [*self.workers.values(), *self.masters.values()]:
            self._signal(host, signal.SIGTERM)

    def teardown(self) -> None:
        """Kill every process and remove every namespace, link and rule made; idempotent."""
        for host in self.hosts.values():
            host.proc = None
        self._made.undo()

    def __enter__(self) -> NetnsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- faults (the drills' operator interface) ------------------------------------------------

    def kill_master(self, name: str) -> None:
        self._signal(self.masters[name], signal.SIGKILL)

    def stop_master(self, name: str) -> None:
        self._signal(self.masters[name], signal.SIGTERM)

    def start_master(self, name: str) -> None:
        self._spawn(self.masters[name])

    def isolate(self, name: str) -> None:
        """Drop Raft traffic between this master and the others, both ways; clients still reach it."""
        host = self.masters[name]
        rules = ["*filter", f":{ISOLATE_CHAIN} - [0:0]"]
        if _run("ip", "netns", "exec", host.netns, "iptables", "-S", ISOLATE_CHAIN, check=False).returncode != 0:
            rules += [f"-I INPUT -j {ISOLATE_CHAIN}", f"-I OUTPUT -j {ISOLATE_CHAIN}"]
        for other in self.masters.values():
            if other.name != name:
                rules += [f"-A {ISOLATE_CHAIN} {way} {other.ip} -p tcp {port} {PEER_PORT} -j DROP"
                          for way in ("-s", "-d") for port in ("--dport", "--sport")]
        # One transaction: the cut is made all at once.
        subprocess.run(["ip", "netns", "exec", host.netns, "iptables-restore", "--noflush"], check=True,
                       input="\n".join([*rules, "COMMIT", ""]), text=True, capture_output=True, timeout=60)

    def heal(self, name: str) -> None:
        host = self.masters[name]
        _run("ip", "netns", "exec", host.netns, "iptables", "-F", ISOLATE_CHAIN, check=False)

    def lose_worker(self, name: str) -> None:
        """The host dies: its agent is killed and its network is gone."""
        host = self.workers[name]
        self._signal(host, signal.SIGKILL)
        _run("ip", "-n", host.netns, "link", "set", "eth0", "down")

    def restore_worker(self, name: str) -> None:
        host = self.workers[name]
        _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        self._spawn(host)


def _unit_environment(unit: Path) -> dict[str, str]:
    """The Environment= assignments of a unit file."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                key, _, value = item.partition("=")
                env[key] = value
    return env
