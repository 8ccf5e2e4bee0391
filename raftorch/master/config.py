"""The master's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raftorch.errors import Invalid
from raftorch.store import quota


@dataclass(frozen=True, slots=True)
class MasterConfig:
    name: str
    client_addr: str = "127.0.0.1:2379"
    peer_addr: str = "127.0.0.1:2380"
    # HOST:PORT for /metrics (Prometheus) and the web dashboard; "" serves neither.
    http_addr: str = "127.0.0.1:2381"
    # The other masters' Raft addresses, by name.
    peers: dict[str, str] = field(default_factory=dict)
    data_dir: Path = Path("/var/lib/raftorch/master")
    secret_file: Path = Path("/etc/raftorch/cluster-secret")
    log_level: str = "info"
    # Seconds a write may wait for its commit before the client is told the outcome is unknown.
    write_timeout: float = 5.0
    # A node not heard from for this many seconds is NotReady ...
    node_grace: float = 10.0
    # ... and after this many more NotReady seconds its pods are replaced elsewhere.
    eviction_timeout: float = 30.0
    # Raft log entries kept before a snapshot replaces them.
    compaction_entries: int = 20_000
    # A follower that hears nothing from the leader for a random time in this range (seconds)
    # starts an election: short means fast failover, too short means elections under load.
    election_min: float = 0.15
    election_max: float = 0.4
    # The store's byte quota (etcd's --quota-backend-bytes). Replicated: the leader commits
    # its own value, so give every master the same one.
    quota_bytes: int = quota.DEFAULT_QUOTA_BYTES
    # Acknowledge writes without syncing the Raft journal to disk: faster, and a power loss on a
    # majority of masters can lose acknowledged writes. For throwaway clusters only.
    unsafe_no_fsync: bool = False
    service_cidr: str = "10.96.0.0/16"
    cluster_cidr: str = "10.244.0.0/16"
    # Open streams one client may hold on one master: watches, and heartbeat/log/port-forward streams.
    max_watches_per_client: int = 256
    max_streams_per_client: int = 64
    # Whether the controllers and agents record events (off only to measure what they cost).
    record_events: bool = True
    # Events last seen longer ago than this many seconds are deleted.
    event_ttl: float = 3600.0
    # The cluster CA (ca.crt, ca.key; the same on every master: created by the first master
    # when missing). This master's own certificate is made at each start, in data-dir/tls.
    pki_dir: Path = Path("/etc/raftorch/pki")
    # Extra names and addresses the master's certificate covers (besides client-addr's host,
    # localhost and this host's name).
    tls_sans: list[str] = field(default_factory=list)
    # Lifetime of the node certificates this master signs, seconds; agents renew at 2/3 of it.
    node_cert_ttl: float = 30 * 24 * 3600.0
    # Join tokens (one per line) registered when this master leads, for scripted installs.
    bootstrap_token_file: Path | None = None
    # Lifetime of those tokens from their registration, seconds.
    bootstrap_token_ttl: float = 24 * 3600.0
    # One JSON line per mutating request; default: audit.log in data-dir.
    audit_log: Path | None = None
    # The audit log is rotated past this size (MiB), keeping this many old files (as
    # kube-apiserver's --audit-log-maxsize and --audit-log-maxbackup).
    audit_log_max_size_mb: int = 100
    audit_log_max_backups: int = 5
    # gRPC server reflection (for grpcurl and similar tools); off by default.
    reflection: bool = False
    # Keys that encrypt Secrets at rest (YAML, the same file on every master; see
    # raftorch/master/encryption.py). Without it the masters refuse to store secrets.
    encryption_key_file: Path | None = None
    # Plaintext, no authentication: for benchmarks comparing with TLS only, never a cluster.
    insecure: bool = False
    # Where the scheduler and the controllers run: "process" (a child process on a local socket,
    # decision 21) or "thread" (in the master, beside Raft).
    controllers: str = "process"

    def validate(self) -> None:
        if not self.name:
            raise Invalid("name: required")
        for what, addr in [("client-addr", self.client_addr), ("peer-addr", self.peer_addr),
                           *((f"peers.{n}", a) for n, a in self.peers.items())]:
            check_addr(addr, what)
        if self.http_addr and not self.http_addr.endswith(":0"):
            check_addr(self.http_addr, "http-addr")
        if not 0.05 <= self.election_min < self.election_max:
            raise Invalid(f"election-min/max: need 0.05 <= min < max, got {self.election_min}, {self.election_max}")
        if self.event_ttl <= 0:
            raise Invalid(f"event-ttl: must be a positive number of seconds, got {self.event_ttl}")
        if self.max_watches_per_client < 1 or self.max_streams_per_client < 1:
            raise Invalid("max-watches-per-client, max-streams-per-client: must be at least 1")
        if not quota.MIN_QUOTA_BYTES <= self.quota_bytes <= quota.MAX_QUOTA_BYTES:
            raise Invalid(f"quota-bytes: need {quota.MIN_QUOTA_BYTES} to {quota.MAX_QUOTA_BYTES}, "
                          f"got {self.quota_bytes}")
        if self.name in self.peers:
            raise Invalid(f"peers: lists this master ({self.name}) itself; list only the other masters")
        if self.node_cert_ttl < 10:
            raise Invalid(f"node-cert-ttl: at least 10 seconds, got {self.node_cert_ttl}")
        if self.controllers not in ("thread", "process"):
            raise Invalid(f"controllers: expected thread or process, got {self.controllers!r}")
        if self.peer_addr in self.peers.values():
            raise Invalid(f"peers: {self.peer_addr} is this master's own peer address")

    def read_secret(self) -> str:
        try:
            secret = self.secret_file.read_text().strip()
        except OSError as exc:
            raise Invalid(f"secret-file: cannot read {self.secret_file}: {exc.strerror}") from None
        if len(secret) < 16:
            raise Invalid(f"secret-file: {self.secret_file} holds fewer than 16 characters; "
                          "use a long random secret, the same on every master")
        return secret


def check_addr(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"{what}: expected HOST:PORT, got {addr!r}")
    return host, int(port)
