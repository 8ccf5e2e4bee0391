"""A whole cluster on this host for trying raftorch out: `raftctl up` / `raftctl down`.

Masters and agents run as background processes with their state under one directory, so
the cluster survives `down` and `up`. A state file records ports and process ids.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raftorch.api.v1.auth_pb2 import CreateTokenResponse
from raftorch.auth.pki import AdminFiles, ensure_admin
from raftorch.client import Client, load_credentials
from raftorch.errors import AlreadyExists, Invalid, RaftorchError, Unavailable
from raftorch.local.masters import free_ports, spawn, write_secret
from raftorch.master.admission import LEVEL_LABEL, PRIVILEGED
from raftorch.master.encryption import new_key_file_text

STATE_FILE = "cluster.json"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "raftorch" / "local"


def docker_reachable() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@dataclass
class ProcessEntry:
    name: str
    kind: str  # master or agent
    client_addr: str = ""
    peer_addr: str = ""
    agent_port: int = 0
    pid: int = 0
    # /metrics and, on masters, the dashboard.
    http_addr: str = ""


@dataclass
class ClusterState:
    runtime: str
    masters: list[ProcessEntry] = field(default_factory=list)
    agents: list[ProcessEntry] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_addr for m in self.masters]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class LocalCluster:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.state_path = data_dir / STATE_FILE
        self.pki_dir = data_dir / "pki"

    def admin_files(self) -> AdminFiles:
        """The cluster CA and the admin's client certificate, for the client config."""
        return ensure_admin(self.pki_dir)

    def load(self) -> ClusterState | None:
        if not self.state_path.exists():
            return None
        try:
            raw = json.loads(self.state_path.read_text())
            return ClusterState(raw["runtime"], [ProcessEntry(**m) for m in raw["masters"]],
                                [ProcessEntry(**a) for a in raw["agents"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"{self.state_path} is damaged ({exc}); remove it or use `raftctl down --purge`") from None

    def save(self, state: ClusterState) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(asdict(state), indent=2))

    def running(self) -> ClusterState | None:
        state = self.load()
        if state and any(_alive(p.pid) for p in state.masters + state.agents):
            return state
        return None

    # -- up -------------------------------------------------------------------------------

    def up(self, masters: int, agents: int, runtime: str, progress: Callable[[str], None],
           timeout: float = 90.0) -> ClusterState:
        if self.running() is not None:
            raise AlreadyExists(f"a local cluster is already running (state in {self.data_dir}); "
                                "`raftctl down` stops it")
        state = self.load()
        if state is None or len(state.masters) != masters or len(state.agents) != agents:
            state = self._plan(masters, agents, runtime)
        else:
            state.runtime = runtime
        secret = self.data_dir / "cluster-secret"
        if not secret.exists():
            write_secret(secret)
        keys = self.data_dir / "encryption-keys.yaml"
        if not keys.exists():
            keys.write_text(new_key_file_text())
            keys.chmod(0o600)
        admin = ensure_admin(self.pki_dir)
        progress(f"starting {masters} masters")
        for m in state.masters:
            m.pid = self._spawn(m.name, self._master_cmd(state, m, secret))
        self.save(state)
        creds = load_credentials(admin.ca_file, admin.cert_file, admin.key_file)
        with Client(state.endpoints, timeout=2.0, retry_for=2.0, credentials=creds) as c:
            self._wait(lambda: self._masters_ready(c, masters), timeout, "masters to elect a leader", progress)
            progress(f"starting {agents} agents ({runtime} runtime)")
            # Agents without a node certificate join with a short-lived bootstrap token.
            join = c.auth.create_token(join=True, ttl=600) if state.agents else None
            for a in state.agents:
                a.pid = self._spawn(a.name, self._agent_cmd(state, a, join))
            self.save(state)
            self._wait(lambda: self._nodes_ready(c, [a.name for a in state.agents]), timeout,
                       "nodes to become Ready", progress)
            if runtime == "process":
                # Pods on the process runtime are host processes, which only privileged
                # namespaces may run (pod security); the walk-through works in `default`.
                progress(f"labelling namespace default {LEVEL_LABEL}={PRIVILEGED}: its pods run as host processes")
                self._wait(lambda: self._label_namespace(c, "default", LEVEL_LABEL, PRIVILEGED), timeout,
                           "namespace default", progress)
        return state

    @staticmethod
    def _label_namespace(c: Client, name: str, key: str, value: str) -> bool:
        ns = c.objects.get("namespaces", name)
        if ns.metadata.labels.get(key) != value:  # type: ignore[attr-defined]
            ns.metadata.labels[key] = value  # type: ignore[attr-defined]
            c.objects.update(ns)
        return True

    def _plan(self, masters: int, agents: int, runtime: str) -> ClusterState:
        ports = free_ports(3 * masters + 2 * agents)
        state = ClusterState(runtime)
        for i in range(masters):
            state.masters.append(ProcessEntry(f"m{i + 1}", "master", f"127.0.0.1:{ports[3 * i]}",
                                              f"127.0.0.1:{ports[3 * i + 1]}",
                                              http_addr=f"127.0.0.1:{ports[3 * i + 2]}"))
        for i in range(agents):
            state.agents.append(ProcessEntry(f"node-{i + 1}", "agent", agent_port=ports[3 * masters + 2 * i],
                                             http_addr=f"127.0.0.1:{ports[3 * masters + 2 * i + 1]}"))
        return state

    def _master_cmd(self, state: ClusterState, m: ProcessEntry, secret: Path) -> list[str]:
        peers = ",".join(f"{o.name}={o.peer_addr}" for o in state.masters if o.name != m.name)
        return [sys.executable, "-m", "raftorch.master", "--name", m.name, "--client-addr", m.client_addr,
                "--peer-addr", m.peer_addr, "--peers", peers, "--data-dir", str(self.data_dir / m.name),
                "--secret-file", str(secret), "--pki-dir", str(self.pki_dir),
                "--http-addr", m.http_addr,
                "--encryption-key-file", str(self.data_dir / "encryption-keys.yaml")]

    def _agent_cmd(self, state: ClusterState, a: ProcessEntry, join: CreateTokenResponse | None) -> list[str]:
        # All nodes share this host's network: one agent serves the NodePorts, on 127.0.0.1,
        # with the userspace proxy (iptables NAT does not apply to loopback addresses).
        mode = "userspace" if a is state.agents[0] else "none"
        return [sys.executable, "-m", "raftorch.agent", "--name", a.name, "--masters", ",".join(state.endpoints),
                "--runtime", state.runtime, "--node-ip", "127.0.0.1", "--agent-port", str(a.agent_port),
                "--data-dir", str(self.data_dir / a.name), "--backoff-base", "2", "--network-mode", mode,
                "--metrics-addr", a.http_addr,
                *(["--join-token", join.token, "--ca-hash", join.ca_hash] if join is not None else [])]

    def _spawn(self, name: str, cmd: list[str]) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return spawn(cmd, self.data_dir / f"{name}.log").pid

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str, progress: Callable[[str], None]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except RaftorchError:
                pass
            time.sleep(0.3)
        raise Unavailable(f"timed out after {timeout:.0f}s waiting for {what}; logs are in {self.data_dir}")

    @staticmethod
    def _masters_ready(c: Client, count: int) -> bool:
        st = c.cluster_status()
        return bool(st.leader) and sum(1 for m in st.members if m.healthy) == count

    @staticmethod
    def _nodes_ready(c: Client, names: list[str]) -> bool:
        nodes, _ = c.objects.list("nodes")
        ready = {n.metadata.name for n in nodes  # type: ignore[attr-defined]
                 if any(cd.type == "Ready" and cd.status == "True" for cd in n.status.conditions)}  # type: ignore[attr-defined]
        return set(names) <= ready

    # -- down ---------------------------------------------------------------------------------

    def down(self, purge: bool, progress: Callable[[str], None]) -> bool:
        state = self.load()
        if state is None:
            if purge and self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            return False
        progress("stopping agents and masters")
        procs = state.agents + state.masters
        for p in procs:
            if _alive(p.pid):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(_alive(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in procs:
            if _alive(p.pid):
                os.kill(p.pid, signal.SIGKILL)
            p.pid = 0
        if state.runtime == "docker":
            removed = remove_containers([a.name for a in state.agents])
            if removed:
                progress(f"removed {removed} pod containers")
        if purge:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        else:
            self.save(state)
        return True


def remove_containers(nodes: list[str]) -> int:
    """Remove the pod containers the agents of these nodes ran (they restart on the next `up`)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        count = 0
        for node in nodes:
            for c in client.containers.list(all=True, filters={"label": [f"raftorch.io/node={node}"]}):
                c.remove(force=True)
                count += 1
        return count
    except Exception:
        return 0
