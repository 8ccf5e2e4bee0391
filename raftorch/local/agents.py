"""Agent processes on this host, for tests and benchmarks (each its own node)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from raftorch.auth.pki import ensure_node_files
from raftorch.local.masters import free_ports, signal_and_wait, spawn


@dataclass
class AgentProcess:
    name: str
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalAgents:
    root: Path
    masters: list[str]
    names: list[str]
    runtime: str = "docker"
    node_ip: str = "127.0.0.1"
    # Agents sharing one network namespace must not all own its service rules.
    network_mode: str = "none"
    extra_args: list[str] = field(default_factory=list)
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    # The masters' CA directory (LocalMasters.pki_dir): each agent gets a node certificate
    # made with it before it starts. None: agents join or are --insecure (extra_args).
    ca_dir: Path | None = None

    def __post_init__(self) -> None:
        ports = free_ports(len(self.names))
        for name, port in zip(self.names, ports, strict=True):
            self.agents[name] = AgentProcess(name, port, self.root / name, self.root / f"{name}.log")

    def command(self, name: str) -> list[str]:
        a = self.agents[name]
        return [sys.executable, "-m", "raftorch.agent", "--name", name, "--masters", ",".join(self.masters),
                "--runtime", self.runtime, "--node-ip", self.node_ip, "--agent-port", str(a.port),
                "--data-dir", str(a.data_dir), "--heartbeat-period", "0.5",
                "--network-mode", self.network_mode, *self.extra_args]

    def start(self, name: str | None = None) -> None:
        for a in self.agents.values() if name is None else [self.agents[name]]:
            if a.alive:
                continue
            a.data_dir.mkdir(parents=True, exist_ok=True)
            if self.ca_dir is not None:
                ensure_node_files(self.ca_dir, a.data_dir / "pki", a.name, self.node_ip)
            a.proc = spawn(self.command(a.name), a.log_path)

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM) -> None:
        targets = [a for a in self.agents.values() if (name is None or a.name == name) and a.proc is not None]
        signal_and_wait([a.proc for a in targets if a.proc is not None], sig, 15.0)
        for a in targets:
            a.proc = None

    def kill(self, name: str | None = None) -> None:
        self.stop(name, signal.SIGKILL)
