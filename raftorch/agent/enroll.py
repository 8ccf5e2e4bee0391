"""The agent's key, CSR and certificate work, run in a short-lived process of its own.

The agent runs for months on every node and must stay small; `cryptography` maps an 8 MB
library and ~2 MB of modules, for work done at join and renewal only. So `raftorch.agent.certs`
runs ``python -m raftorch.agent.enroll``, writes one JSON request to its stdin and reads one
JSON answer from its stdout:

    {"op": "csr", "node": N, "node_ip": IP}       -> {"csr_pem", "key_pem"}  (a new P-256 key)
    {"op": "inspect", "cert_pem": PEM}            -> {"common_name", "subject", "issued", "not_after"}
    {"op": "pick_ca", "chain": [B64 DER], "pin"}  -> {"ca_pem": PEM or null, "seen": [sha256:HEX]}

Bad input exits with status 2 and one line on stderr. The functions are importable as well
(tests, and any process that has `cryptography` loaded anyway).
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from cryptography import x509

from raftorch.auth import pki
from raftorch.auth.identity import NODE_PREFIX


def csr(node: str, node_ip: str) -> dict[str, str]:
    """A new key and a CSR for ``system:node:NODE`` (with the node's IP as a SAN)."""
    key = pki.new_key()
    pem = pki.make_csr(key, NODE_PREFIX + node, [node_ip] if node_ip else [])
    return {"csr_pem": pem.decode(), "key_pem": pki.key_pem(key).decode()}


def inspect(cert_pem: str) -> dict[str, Any]:
    """What the agent reads from its certificate: whose it is, and when it was issued and
    expires (issued: certificates start `BACKDATE` before they are issued, for clock skew)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {"common_name": str(cns[0].value) if cns else None, "subject": cert.subject.rfc4514_string(),
            "issued": (cert.not_valid_before_utc + pki.BACKDATE).isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat()}


def pick_ca(chain: list[str], pin: str) -> dict[str, Any]:
    """The CA certificate of `chain` (base64 DER, as a server presented it, unverified) whose
    public-key hash is `pin`; None when there is none (`seen`: the hashes there were)."""
    seen: list[str] = []
    for item in chain:
        cert = x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
        digest = pki.spki_hash(cert)
        seen.append(digest)
        if digest == pin:
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if is_ca:
                return {"ca_pem": pki.cert_pem(cert).decode(), "seen": seen}
            break
    return {"ca_pem": None, "seen": seen}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "csr":
        return csr(str(request["node"]), str(request.get("node_ip") or ""))
    if op == "inspect":
        return inspect(str(request["cert_pem"]))
    if op == "pick_ca":
        return pick_ca([str(c) for c in request["chain"]], str(request["pin"]))
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    try:
        request = json.load(sys.stdin)
        if not isinstance(request, dict):
            raise ValueError("expected a JSON object")
        out = answer(request)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"raftorch.agent.enroll: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
