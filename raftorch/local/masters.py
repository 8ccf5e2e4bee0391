"""Start, stop and kill master processes on 127.0.0.1 (or any local address)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from raftorch.auth.pki import AdminFiles, ensure_admin
from raftorch.client import Client, load_credentials, set_default_credentials
from raftorch.errors import RaftorchError
from raftorch.master.encryption import new_key_file_text
from raftorch.rpc import INSECURE, Credentials


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process in its own session (signals to the test runner don't reach it), output
    appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env if env is not None else dict(os.environ), start_new_session=True)


def signal_and_wait(procs: list[subprocess.Popen[bytes]], sig: int, timeout: float) -> None:
    """Signal every process, then wait for each; one that outlives `timeout` is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)


@dataclass
class MasterProcess:
    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # Where /metrics (and the dashboard) answer; "" for none.
    http_addr: str = ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalMasters:
    """N masters as child processes, each with its own ports and data directory."""

    root: Path
    count: int = 3
    host: str = "127.0.0.1"
    secret_file: Path | None = None
    # The keys that encrypt Secrets at rest (made on first use); None: root/encryption-keys.yaml.
    encryption_key_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    masters: dict[str, MasterProcess] = field(default_factory=dict)
    # The cluster CA and an admin certificate live here (created on first use); None: root/pki.
    pki_dir: Path | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.pki_dir is None:
            self.pki_dir = self.root / "pki"
        self.admin: AdminFiles = ensure_admin(self.pki_dir)
        # Masters started with --insecure (benchmarks) answer plaintext clients only.
        self.credentials: Credentials = INSECURE if "--insecure" in self.extra_args else \
            load_credentials(self.admin.ca_file, self.admin.cert_file, self.admin.key_file)
        # Drills, hollow nodes and benchmarks in this process make their own clients.
        set_default_credentials(self.credentials)
        if self.secret_file is None:
            self.secret_file = self.root / "cluster-secret"
            if not self.secret_file.exists():
                write_secret(self.secret_file)
        if self.encryption_key_file is None:
            self.encryption_key_file = self.root / "encryption-keys.yaml"
            if not self.encryption_key_file.exists():
                self.encryption_key_file.write_text(new_key_file_text())
                self.encryption_key_file.chmod(0o600)
        if not self.masters:
            ports = free_ports(3 * self.count, self.host)
            for i in range(self.count):
                name = f"m{i + 1}"
                self.masters[name] = MasterProcess(
                    name, f"{self.host}:{ports[3 * i]}", f"{self.host}:{ports[3 * i + 1]}",
                    self.root / name, self.root / f"{name}.log", http_addr=f"{self.host}:{ports[3 * i + 2]}")

    @property
    def endpoints(self) -> list[str]:
        return [m.client_addr for m in self.masters.values()]

    def command(self, name: str) -> list[str]:
        m = self.masters[name]
        peers = ",".join(f"{o.name}={o.peer_addr}" for o in self.masters.values() if o.name != name)
        return [sys.executable, "-m", "raftorch.master", "--name", name, "--client-addr", m.client_addr,
                "--peer-addr", m.peer_addr, "--peers", peers, "--data-dir", str(m.data_dir),
                "--secret-file", str(self.secret_file), "--pki-dir", str(self.pki_dir), "--http-addr", m.http_addr,
                "--encryption-key-file", str(self.encryption_key_file), *self.extra_args]

    def start(self, name: str | None = None, secret_file: Path | None = None,
              encryption_key_file: Path | None = None) -> None:
        for m in self.masters.values() if name is None else [self.masters[name]]:
            if m.alive:
                continue
            cmd = self.command(m.name)
            if secret_file is not None:
                cmd[cmd.index("--secret-file") + 1] = str(secret_file)
            if encryption_key_file is not None:
                cmd[cmd.index("--encryption-key-file") + 1] = str(encryption_key_file)
            m.proc = spawn(cmd, m.log_path, {**os.environ, **self.extra_env})

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        targets = [m for m in self.masters.values() if (name is None or m.name == name) and m.proc is not None]
        signal_and_wait([m.proc for m in targets if m.proc is not None], sig, timeout)
        for m in targets:
            m.proc = None

    def kill(self, name: str | None = None) -> None:
        self.stop(name, signal.SIGKILL)

    def client(self, names: list[str] | None = None, timeout: float = 5.0, retry_for: float = 15.0) -> Client:
        """A client of all masters, or pinned to the named ones (in that order)."""
        if names:
            return Client([self.masters[n].client_addr for n in names], timeout, retry_for, pin=True,
                          credentials=self.credentials)
        return Client(self.endpoints, timeout, retry_for, credentials=self.credentials)

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until every running master knows the same leader and answers; returns its name."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            running = [m for m in self.masters.values() if m.alive]
            with self.client([m.name for m in running], timeout=1.0, retry_for=1.0) as c:
                try:
                    statuses = [c.member_status(m.client_addr) for m in running]
                    leaders = {s.leader for s in statuses}
                    roles = {s.name: s.role for s in statuses}
                    if (len(leaders) == 1 and roles.get(next(iter(leaders))) == "leader"
                            and all(s.healthy for s in statuses) and self._registered(running)):
                        return leaders.pop()
                    last = f"leaders seen: {sorted(leaders)}"
                except RaftorchError as err:
                    last = str(err)
                except Exception as err:
                    last = repr(err)
            for m in self.masters.values():
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"master {m.name} exited with {m.proc.returncode}; see {m.log_path}")
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready after {timeout}s: {last}")

    def _registered(self, running: list[MasterProcess]) -> bool:
        """Every running master sees every running master's client address."""
        names = {m.name for m in running}
        for m in running:
            with Client([m.client_addr], timeout=1.0, retry_for=1.0, pin=True, credentials=self.credentials) as c:
                seen = {s.name for s in c.cluster_status().members if s.healthy}
            if not names <= seen:
                return False
        return True

    def leader(self) -> str:
        return self.wait_ready()
