"""The agent's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raftorch.errors import Invalid

RUNTIMES = ("docker", "process", "fake")
NETWORK_MODES = ("iptables", "userspace", "none")
MAX_SANDBOX_POOL = 110  # a node's pod capacity
MAX_START_CONCURRENCY = 64


@dataclass(frozen=True, slots=True)
class AgentConfig:
    # The node's name, unique in the cluster.
    name: str
    masters: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    runtime: str = "docker"
    # The address other nodes and the masters reach this node at.
    node_ip: str = "127.0.0.1"
    data_dir: Path = Path("/var/lib/raftorch/agent")
    # Port of this agent's own endpoint (logs, port-forward), on node_ip.
    agent_port: int = 10250
    heartbeat_period: float = 1.0
    # Seconds between samples of CPU and memory use, reported to the leader for `raftctl top`.
    usage_period: float = 15.0
    # HOST:PORT where the agent serves /metrics for Prometheus; "" for none.
    metrics_addr: str = "127.0.0.1:10255"
    labels: dict[str, str] = field(default_factory=dict)
    # How services are made reachable on this node.
    network_mode: str = "iptables"
    # The masters' cluster CIDR: pod addresses of every node.
    cluster_cidr: str = "10.244.0.0/16"
    # First restart delay of a crashing container; doubles up to five minutes.
    backoff_base: float = 10.0
    docker_url: str = ""
    # The image of each pod's sandbox container (the docker runtime's; built by scripts/build_images.sh).
    sandbox_image: str = "raftorch/pause:latest"
    # Sandboxes kept started ahead for new pods (docker runtime; raftorch/agent/runtime/docker_pool.py).
    # Off by default: a pod in a pooled sandbox does not get its own name as hostname.
    sandbox_pool: int = 0
    # Pod starts under way at once. More than the daemon takes slows every start down and the first
    # pod with them (bench/README.md, agent_bench.py).
    start_concurrency: int = 4
    log_level: str = "info"
    # The node's certificate, its key and the cluster CA; default: pki in data-dir.
    pki_dir: Path | None = None
    # First start: a bootstrap token (`raftctl token create --join`) and the hash of the
    # cluster CA's public key it must come from (sha256:HEX), to obtain the node certificate.
    join_token: str = ""
    ca_hash: str = ""
    # Plaintext to masters started with --insecure (benchmarks only).
    insecure: bool = False

    def validate(self) -> None:
        if not self.name:
            raise Invalid("name: required")
        if self.runtime not in RUNTIMES:
            raise Invalid(f"runtime: expected one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.network_mode not in NETWORK_MODES:
            raise Invalid(f"network-mode: expected one of {', '.join(NETWORK_MODES)}, got {self.network_mode!r}")
        if not self.masters:
            raise Invalid("masters: at least one HOST:PORT")
        if not 0 <= self.agent_port < 65536:
            raise Invalid(f"agent-port: {self.agent_port} is not a port")
        if self.metrics_addr:
            host, sep, port = self.metrics_addr.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise Invalid(f"metrics-addr: expected HOST:PORT, got {self.metrics_addr!r}")
        if self.usage_period <= 0:
            raise Invalid("usage-period: must be positive")
        if self.heartbeat_period <= 0:
            raise Invalid("heartbeat-period: must be positive")
        if not 0 <= self.sandbox_pool <= MAX_SANDBOX_POOL:
            raise Invalid(f"sandbox-pool: expected 0 to {MAX_SANDBOX_POOL}, got {self.sandbox_pool}")
        if not 1 <= self.start_concurrency <= MAX_START_CONCURRENCY:
            raise Invalid(f"start-concurrency: expected 1 to {MAX_START_CONCURRENCY}, got {self.start_concurrency}")
