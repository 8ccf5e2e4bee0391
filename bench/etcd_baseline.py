"""etcd as the baseline of kv_bench: a 3-member cluster on 127.0.0.1 and a Python gRPC client.

The cluster is started from the `etcd` binary when one is installed (Debian: `apt-get install
etcd-server etcd-client`), in a temporary directory, with etcd's defaults (it syncs its WAL).
With `tls=True` its client and peer ports speak TLS and require a client certificate (its own
CA, made here), as raftorch's masters do, so the two pay for the same encryption.
The client is what a Python program would use: one gRPC channel per client thread to the
leader (so neither side pays for forwarding), each call a unary `etcdserverpb.KV` RPC. Its
requests are encoded by hand (two or three protobuf fields), so no etcd package is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from raftorch.local.masters import free_ports, signal_and_wait, spawn

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
READY_TIMEOUT = 60.0


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    tag = (number << 3) | 2
    size = len(data)
    varint = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        varint.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([tag]) + bytes(varint) + data


def _raw(b: bytes) -> bytes:
    return b


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """A CA and one certificate (server and client, SAN 127.0.0.1) for members and clients; PEM."""

    ca: bytes
    cert: bytes
    key: bytes

    @staticmethod
    def make() -> EtcdTls:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        from raftorch.auth import pki
        ca = pki.create_ca("kv-bench-etcd-ca")
        key = pki.new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kv-bench-etcd")])
        cert = pki.issue(ca, key.public_key(), name, sans=["127.0.0.1", "localhost"], server=True, client=True)
        return EtcdTls(ca.cert_pem, cert, pki.key_pem(key))

    def write(self, root: Path) -> dict[str, Path]:
        files = {"ca": root / "ca.pem", "cert": root / "member.pem", "key": root / "member-key.pem"}
        for what, path in files.items():
            path.write_bytes(getattr(self, what))
        os.chmod(files["key"], 0o600)
        return files


class EtcdClient:
    """The two calls kv_bench makes, with the signature of raftorch's Client."""

    def __init__(self, endpoint: str, tls: EtcdTls | None = None) -> None:
        self._channel = (grpc.insecure_channel(endpoint) if tls is None else grpc.secure_channel(
            endpoint, grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)))
        self._put = self._channel.unary_unary("/etcdserverpb.KV/Put", request_serializer=_raw,
                                              response_deserializer=_raw)
        self._range = self._channel.unary_unary("/etcdserverpb.KV/Range", request_serializer=_raw,
                                                response_deserializer=_raw)

    def put(self, key: str, value: bytes) -> None:
        self._put(_field(1, key.encode()) + _field(2, value), timeout=10)

    def get(self, key: str) -> None:
        self._range(_field(1, key.encode()), timeout=10)  # linearizable: etcd's default

    def close(self) -> None:
        self._channel.close()


class EtcdCluster:
    """Three etcd members on 127.0.0.1, each with its own ports and data directory."""

    def __init__(self, root: Path, tls: bool = False) -> None:
        if ETCD is None:
            raise RuntimeError("no etcd binary on PATH")
        self.root = root
        self.tls = EtcdTls.make() if tls else None
        self._scheme = "https" if tls else "http"
        self._files: dict[str, Path] = {}
        ports = free_ports(6)
        self.names = ["e1", "e2", "e3"]
        self.client_ports = dict(zip(self.names, ports[:3], strict=True))
        self.peer_ports = dict(zip(self.names, ports[3:], strict=True))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{self.client_ports[n]}" for n in self.names]

    def start(self) -> None:
        assert ETCD is not None
        self.root.mkdir(parents=True, exist_ok=True)
        tls: list[str] = []
        if self.tls is not None:
            f = self._files = self.tls.write(self.root)
            tls = ["--cert-file", str(f["cert"]), "--key-file", str(f["key"]), "--client-cert-auth",
                   "--trusted-ca-file", str(f["ca"]), "--peer-cert-file", str(f["cert"]),
                   "--peer-key-file", str(f["key"]), "--peer-client-cert-auth",
                   "--peer-trusted-ca-file", str(f["ca"])]
        scheme = self._scheme
        initial = ",".join(f"{n}={scheme}://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        for n in self.names:
            client = f"{scheme}://127.0.0.1:{self.client_ports[n]}"
            peer = f"{scheme}://127.0.0.1:{self.peer_ports[n]}"
            self.procs[n] = spawn([
                ETCD, "--name", n, "--data-dir", str(self.root / n),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "kv-bench", "--log-level", "error", "--logger", "zap", *tls,
            ], self.root / f"{n}.log")

    def wait_ready(self) -> str:
        """Waits until a put succeeds; returns the leader's client endpoint."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            for n, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"etcd member {n} exited with {proc.returncode}; see {self.root / n}.log")
            client = EtcdClient(self.endpoints[0], self.tls)
            try:
                client.put("bench/ready", b"1")
                return self.leader_endpoint()
            except grpc.RpcError as err:
                last = str(err)
            finally:
                client.close()
            time.sleep(0.1)
        raise TimeoutError(f"etcd cluster not ready: {last}")

    def leader_endpoint(self) -> str:
        """The leader's client endpoint, from `etcdctl endpoint status` (the first one without it)."""
        if ETCDCTL is None:
            return self.endpoints[0]
        tls = [] if not self._files else [f"--cacert={self._files['ca']}", f"--cert={self._files['cert']}",
                                          f"--key={self._files['key']}"]
        endpoints = ",".join(f"{self._scheme}://{e}" for e in self.endpoints)
        out = subprocess.run([ETCDCTL, *tls, "--endpoints", endpoints, "endpoint", "status", "-w", "json"],
                             capture_output=True, text=True, env={"ETCDCTL_API": "3"}, timeout=30, check=False)
        try:
            for member in json.loads(out.stdout):
                status = member["Status"]
                if status["leader"] == status["header"]["member_id"]:
                    return str(member["Endpoint"]).removeprefix(f"{self._scheme}://")
        except (ValueError, KeyError, TypeError):
            pass
        return self.endpoints[0]

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def stop(self) -> None:
        signal_and_wait(list(self.procs.values()), signal.SIGTERM, 10.0)
        self.procs.clear()
