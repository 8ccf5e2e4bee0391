"""A master's TLS material: the cluster CA, its own certificate, its server and client credentials."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass

import structlog

from raftorch import rpc
from raftorch.auth import pki
from raftorch.auth.identity import master_identity
from raftorch.master.config import MasterConfig

log = structlog.get_logger("raftorch.master")


@dataclass(frozen=True, slots=True)
class MasterTLS:
    ca: pki.CertKey
    own: pki.CertKey
    server: rpc.ServerTLS
    # What this master presents when it calls other masters and the agents.
    client: rpc.Credentials


def master_sans(cfg: MasterConfig) -> list[str]:
    """What the master's certificate covers: its client address's host (every address of this
    host when it listens on all of them), localhost, this host's name, and `tls-sans`."""
    host = cfg.client_addr.rpartition(":")[0].strip("[]")
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        with contextlib.suppress(OSError):
            names += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    else:
        names.append(host)
    names += cfg.tls_sans
    return list(dict.fromkeys(n for n in names if n))


def load(cfg: MasterConfig) -> MasterTLS:
    """The CA from pki-dir (created when this is the first master), and a fresh certificate for
    this master (kept in data-dir/tls for operators to inspect)."""
    ca, created = pki.ensure_ca(cfg.pki_dir)
    if created:
        log.warning("cluster_ca_created", pki_dir=str(cfg.pki_dir), ca_hash=pki.ca_hash(ca.cert_pem),
                    note="copy ca.crt and ca.key to every other master's pki-dir")
    own = pki.issue_pair(ca, master_identity(cfg.name), sans=master_sans(cfg), server=True)
    # In data-dir: the unit file makes /etc read-only for the master (ProtectSystem=full).
    pki.save_pair(own, cfg.data_dir / "tls" / "master.crt", cfg.data_dir / "tls" / "master.key")
    server = rpc.ServerTLS(own.cert_pem + ca.cert_pem, own.key_pem, ca.cert_pem, require_client_cert=False)
    return MasterTLS(ca, own, server, rpc.Credentials(ca.cert_pem, own.cert_pem, own.key_pem))
