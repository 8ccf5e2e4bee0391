"""The node's certificate: joining with a bootstrap token, keeping it, renewing it.

Joining (kubeadm's discovery, done with a pinned CA): fetch the certificate chain a master
presents, keep the CA whose public-key hash is the `--ca-hash` pin (refuse otherwise), then,
over TLS verified against that CA, send a CSR for ``system:node:NAME`` with the join token.
The certificate, its key and the CA are kept in ``pki-dir``; at two thirds of its lifetime
the agent asks for a new one with the current one, and switches its client and its endpoint
to it without touching any pod.

This process never loads `cryptography`: keys, CSRs and reading certificates run in a short-lived
helper process (`raftorch.agent.enroll`), and the proofs of the node key that go with every call
to the masters are signed with the openssl command (`rpc.Credentials.proof_signer`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import grpc
import structlog

from raftorch import rpc
from raftorch.api.v1 import auth_pb2, auth_pb2_grpc
from raftorch.auth.files import write_private, write_public
from raftorch.auth.identity import NODE_PREFIX
from raftorch.auth.proof import openssl_signer
from raftorch.errors import Internal, Invalid, RaftorchError, Unavailable, from_grpc_code

log = structlog.get_logger("raftorch.agent")

RENEW_AT = 2 / 3


@dataclass(frozen=True, slots=True)
class NodeCert:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def credentials(self) -> rpc.Credentials:
        return rpc.Credentials(self.ca_pem, self.cert_pem, self.key_pem, proof_signer="openssl")

    def server_tls(self) -> rpc.ServerTLS:
        # Only masters call the agent endpoint: a client certificate is required.
        return rpc.ServerTLS(self.cert_pem + self.ca_pem, self.key_pem, self.ca_pem, require_client_cert=True)

    def info(self) -> CertInfo:
        return cert_info(self.cert_pem)

    def renew_at(self) -> dt.datetime:
        info = self.info()
        return info.issued + (info.not_after - info.issued) * RENEW_AT


@dataclass(frozen=True, slots=True)
class CertInfo:
    common_name: str | None
    subject: str
    issued: dt.datetime
    not_after: dt.datetime


def _enroll(request: dict[str, Any]) -> dict[str, Any]:
    """One request to the helper process (see raftorch.agent.enroll)."""
    try:
        done = subprocess.run([sys.executable, "-m", "raftorch.agent.enroll"], input=json.dumps(request).encode(),
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Internal(f"certificate helper: {exc}") from None
    why = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode == 2:
        raise Invalid(why[-1] if why else "certificate helper: bad input")
    if done.returncode != 0:
        raise Internal(f"certificate helper failed ({done.returncode}): {why[-1] if why else 'no message'}")
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise Internal(f"certificate helper: not a JSON answer: {done.stdout[:200]!r}") from None
    return answer


@lru_cache(maxsize=8)
def cert_info(cert_pem: bytes) -> CertInfo:
    """The certificate's subject and lifetime (read by the helper process, once per certificate)."""
    out = _enroll({"op": "inspect", "cert_pem": cert_pem.decode(errors="replace")})
    return CertInfo(out["common_name"], out["subject"], dt.datetime.fromisoformat(out["issued"]),
                    dt.datetime.fromisoformat(out["not_after"]))


def check_signer(cert: NodeCert) -> None:
    """Sign once with the node key as every call to the masters will: a host without a working
    openssl command fails at start, with one clear message."""
    openssl_signer(cert.key_pem)(b"raftorch agent start")


def paths(pki_dir: Path) -> tuple[Path, Path, Path]:
    return pki_dir / "ca.crt", pki_dir / "node.crt", pki_dir / "node.key"


def load(pki_dir: Path, node: str, now: dt.datetime | None = None) -> NodeCert | None:
    """The kept certificate, if it is this node's and still valid."""
    ca, crt, key = paths(pki_dir)
    if not (ca.exists() and crt.exists() and key.exists()):
        return None
    cert = NodeCert(ca.read_bytes(), crt.read_bytes(), key.read_bytes())
    try:
        info = cert.info()
    except Invalid as err:
        raise Invalid(f"node certificate {crt}: {err}") from None
    now = now or dt.datetime.now(dt.UTC)
    if info.common_name != NODE_PREFIX + node:
        log.warning("node_certificate_for_other_node", path=str(crt), subject=info.subject)
        return None
    if info.not_after <= now:
        log.warning("node_certificate_expired", path=str(crt), not_after=str(info.not_after))
        return None
    return cert


def save(pki_dir: Path, cert: NodeCert) -> None:
    ca, crt, key = paths(pki_dir)
    write_public(ca, cert.ca_pem)
    write_private(key, cert.key_pem)
    write_public(crt, cert.cert_pem)


def fetch_ca(endpoint: str, pin: str, timeout: float = 5.0) -> bytes:
    """The CA certificate in the chain `endpoint` presents whose public-key hash is `pin`.

    The chain is read without verification (nothing is trusted yet); the pin is what makes the
    answer trustworthy, and everything after this is verified against it."""
    host, _, port = endpoint.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw, \
                ctx.wrap_socket(raw) as tls:
            chain = _unverified_chain(tls)
    except (OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach master {endpoint} to fetch the cluster CA: {exc}") from None
    out = _enroll({"op": "pick_ca", "chain": [base64.b64encode(der).decode() for der in chain], "pin": pin})
    if out["ca_pem"]:
        return str(out["ca_pem"]).encode()
    raise Invalid(f"CA pin mismatch: master {endpoint} presents a CA whose hash is not {pin} "
                  f"(seen: {', '.join(out['seen']) or 'none'}); check --ca-hash (`raftctl token create --join` "
                  "prints the right one)")


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    # Python 3.13 has SSLSocket.get_unverified_chain(); 3.11 and 3.12 have it on the _ssl object.
    getter: Callable[[], list[object]] | None = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = tls._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    out: list[bytes] = []
    for item in getter() or []:
        if isinstance(item, bytes):
            out.append(item)
        else:
            out.append(item.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined,union-attr]
    return out


def _csr(node: str, node_ip: str) -> tuple[bytes, bytes]:
    """A CSR for this node's name and a new key for it (made by the helper process)."""
    out = _enroll({"op": "csr", "node": node, "node_ip": node_ip})
    return str(out["csr_pem"]).encode(), str(out["key_pem"]).encode()


def _call(endpoints: list[str], creds: rpc.Credentials, fn: Callable[[auth_pb2_grpc.AuthStub], object],
          timeout: float) -> object:
    last: RaftorchError | None = None
    for endpoint in endpoints:
        with rpc.channel(endpoint, creds) as chan:
            try:
                return fn(auth_pb2_grpc.AuthStub(chan))
            except grpc.RpcError as exc:
                err = from_grpc_code(exc.code(), f"{endpoint}: {exc.details() or exc.code().name}")
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise err from None
                last = err
    raise last or Unavailable("no master endpoints")


def join(endpoints: list[str], node: str, node_ip: str, token: str, ca_hash: str, timeout: float = 10.0
         ) -> NodeCert:
    """A node certificate for `node`, obtained with a join token from masters whose CA is `ca_hash`."""
    if not ca_hash.startswith("sha256:"):
        raise Invalid(f"ca-hash: expected sha256:HEX (as printed by `raftctl token create --join`), got {ca_hash!r}")
    ca_pem: bytes | None = None
    errors: list[str] = []
    for endpoint in endpoints:
        try:
            ca_pem = fetch_ca(endpoint, ca_hash.lower(), timeout)
            break
        except Unavailable as err:
            errors.append(str(err))
    if ca_pem is None:
        raise Unavailable("; ".join(errors))
    csr, key_pem = _csr(node, node_ip)
    req = auth_pb2.JoinRequest(node=node, csr=csr)
    resp = _call(endpoints, rpc.Credentials(ca_pem, token=token),
                 lambda stub: stub.Join(req, timeout=timeout), timeout)
    assert isinstance(resp, auth_pb2.CertificateResponse)
    log.info("node_joined", node=node, not_after=str(cert_info(resp.certificate).not_after))
    return NodeCert(ca_pem, resp.certificate, key_pem)


def renew(endpoints: list[str], current: NodeCert, node: str, node_ip: str, timeout: float = 10.0) -> NodeCert:
    csr, key_pem = _csr(node, node_ip)
    resp = _call(endpoints, current.credentials(),
                 lambda stub: stub.Renew(auth_pb2.RenewRequest(csr=csr), timeout=timeout), timeout)
    assert isinstance(resp, auth_pb2.CertificateResponse)
    return NodeCert(current.ca_pem, resp.certificate, key_pem)


class Renewer:
    """Renews the node certificate at two thirds of its life; `on_renew` gets the new one."""

    def __init__(self, endpoints: list[str], pki_dir: Path, node: str, node_ip: str, cert: NodeCert,
                 on_renew: Callable[[NodeCert], None]) -> None:
        self._endpoints = endpoints
        self._pki_dir = pki_dir
        self._node = node
        self._node_ip = node_ip
        self.cert = cert
        self._on_renew = on_renew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-cert-renewer", daemon=True)
        self.renewals = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = (self.cert.renew_at() - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                fresh = renew(self._endpoints, self.cert, self._node, self._node_ip)
            except RaftorchError as err:
                log.warning("node_certificate_renewal_failed", error=str(err))
                self._stop.wait(min(30.0, max(1.0, (self.cert.info().not_after
                                                     - dt.datetime.now(dt.UTC)).total_seconds() / 10)))
                continue
            save(self._pki_dir, fresh)
            self.cert = fresh
            self.renewals += 1
            log.info("node_certificate_renewed", not_after=str(fresh.info().not_after))
            self._on_renew(fresh)
