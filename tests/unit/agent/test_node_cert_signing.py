"""The agent's certificate work without `cryptography` in its process: proofs signed with the
openssl command, keys, CSRs and certificate reading in the helper process (raftorch.agent.enroll)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509

from raftorch.agent import certs, enroll
from raftorch.auth import node_identity, pki
from raftorch.auth.proof import CertProof, ProofVerifier, first_cert_der, openssl_signer
from raftorch.errors import Internal, Invalid, Unauthenticated


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.create_ca()


@pytest.fixture(scope="module")
def node_pair(ca: pki.CertKey) -> pki.CertKey:
    return pki.issue_node(ca, "node-1", "10.0.0.11")


def test_a_proof_signed_with_openssl_is_accepted_by_the_masters_verifier(
        ca: pki.CertKey, node_pair: pki.CertKey) -> None:
    now = [pki.not_before(node_pair.cert_pem).timestamp() + 600]
    proof = CertProof(node_pair.cert_pem, node_pair.key_pem, clock=lambda: now[0], signer="openssl")
    verifier = ProofVerifier(pki.CertVerifier(ca.cert_pem), clock=lambda: now[0])
    (_, cert), (_, signed) = proof.metadata()
    assert verifier.identity(cert, signed) == node_identity("node-1")
    # The signature covers the timestamp: another stamp with it is refused.
    stamp, _, sig = signed.partition(".")
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier.identity(cert, f"{int(stamp) + 1}.{sig}")
    # Renewed after a minute, with a fresh signature the verifier accepts too.
    now[0] += 61
    (_, _), (_, renewed) = proof.metadata()
    assert renewed != signed and verifier.identity(cert, renewed) == node_identity("node-1")


def test_a_proof_signed_with_another_key_is_refused(ca: pki.CertKey, node_pair: pki.CertKey) -> None:
    other = pki.issue_node(ca, "node-2", "")
    now = pki.not_before(node_pair.cert_pem).timestamp() + 600
    proof = CertProof(node_pair.cert_pem, other.key_pem, clock=lambda: now, signer="openssl")
    verifier = ProofVerifier(pki.CertVerifier(ca.cert_pem), clock=lambda: now)
    (_, cert), (_, signed) = proof.metadata()
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier.identity(cert, signed)


def test_openssl_signing_failures_are_one_clear_error(node_pair: pki.CertKey) -> None:
    with pytest.raises(Internal, match="with no-such-openssl"):
        openssl_signer(node_pair.key_pem, openssl="no-such-openssl")(b"x")
    with pytest.raises(Internal, match="cannot sign the client certificate proof with openssl"):
        openssl_signer(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")(b"x")


def test_the_certificate_sent_is_the_first_of_a_chain(ca: pki.CertKey, node_pair: pki.CertKey) -> None:
    der = first_cert_der(node_pair.cert_pem + ca.cert_pem)
    assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(node_pair.cert_pem)
    with pytest.raises(ValueError):
        first_cert_der(b"nothing")


def test_the_helpers_csr_is_signed_by_the_masters_for_that_node(ca: pki.CertKey) -> None:
    csr, key_pem = certs._csr("node-7", "10.0.0.7")  # through the helper process
    cert_pem = pki.sign_node_csr(ca, csr, "node-7")
    assert pki.CertVerifier(ca.cert_pem).identity(cert_pem) == node_identity("node-7")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.public_key() == pki.CertKey(cert_pem, key_pem).private_key().public_key()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]


def test_the_helper_reads_subject_and_lifetime(node_pair: pki.CertKey) -> None:
    info = certs.cert_info(node_pair.cert_pem)
    cert = x509.load_pem_x509_certificate(node_pair.cert_pem)
    assert info.common_name == "system:node:node-1"
    assert info.not_after == cert.not_valid_after_utc
    assert info.issued == cert.not_valid_before_utc + pki.BACKDATE
    assert certs.NodeCert(b"", node_pair.cert_pem, node_pair.key_pem).renew_at() == \
        info.issued + (info.not_after - info.issued) * certs.RENEW_AT


def test_a_kept_certificate_is_loaded_only_for_its_node_and_while_valid(
        ca: pki.CertKey, node_pair: pki.CertKey, tmp_path: Path) -> None:
    certs.save(tmp_path, certs.NodeCert(ca.cert_pem, node_pair.cert_pem, node_pair.key_pem))
    loaded = certs.load(tmp_path, "node-1")
    assert loaded is not None and loaded.cert_pem == node_pair.cert_pem
    assert (tmp_path / "node.key").stat().st_mode & 0o077 == 0
    assert certs.load(tmp_path, "node-2") is None
    later = x509.load_pem_x509_certificate(node_pair.cert_pem).not_valid_after_utc + dt.timedelta(seconds=1)
    assert certs.load(tmp_path, "node-1", now=later) is None
    (tmp_path / "node.crt").write_bytes(b"garbage")
    with pytest.raises(Invalid, match=r"node certificate .*node\.crt"):
        certs.load(tmp_path, "node-1")


def test_the_helper_picks_the_pinned_ca_only(ca: pki.CertKey, node_pair: pki.CertKey) -> None:
    chain = [first_cert_der(node_pair.cert_pem), first_cert_der(ca.cert_pem)]
    pin = pki.ca_hash(ca.cert_pem)
    assert certs._enroll({"op": "pick_ca", "chain": [_b64(d) for d in chain], "pin": pin})["ca_pem"] \
        .encode() == ca.cert_pem
    # The leaf's own key hash does not make the leaf a CA.
    leaf_pin = pki.ca_hash(node_pair.cert_pem)
    out = enroll.pick_ca([_b64(d) for d in chain], leaf_pin)
    assert out == {"ca_pem": None, "seen": [leaf_pin]}


def test_bad_requests_to_the_helper_exit_2_with_one_line() -> None:
    with pytest.raises(Invalid, match="unknown op 'nope'"):
        certs._enroll({"op": "nope"})
    done = subprocess.run([sys.executable, "-m", "raftorch.agent.enroll"], input=b"[1", capture_output=True,
                          check=False)
    assert done.returncode == 2 and len(done.stderr.decode().strip().splitlines()) == 1


def test_the_running_agent_does_not_load_cryptography(ca: pki.CertKey, node_pair: pki.CertKey,
                                                      tmp_path: Path) -> None:
    certs.save(tmp_path, certs.NodeCert(ca.cert_pem, node_pair.cert_pem, node_pair.key_pem))
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        import raftorch.agent.main, raftorch.agent.agent, raftorch.agent.runtime.docker
        from raftorch import rpc
        from raftorch.agent import certs
        from raftorch.auth.proof import CertProof
        cert = certs.load(Path({str(tmp_path)!r}), "node-1")
        certs.check_signer(cert)
        creds = cert.credentials()
        proof = CertProof(creds.cert_pem, creds.key_pem, signer=creds.proof_signer)
        with rpc.channel("127.0.0.1:9", creds):
            pass
        print(json.dumps({{"renew_at": str(cert.renew_at()), "metadata": proof.metadata(),
                          "cryptography": sorted(m for m in sys.modules if m.startswith("cryptography"))}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    out = json.loads(done.stdout)
    assert out["cryptography"] == []
    (_, cert), (_, signed) = out["metadata"]
    now = float(signed.partition(".")[0])
    assert ProofVerifier(pki.CertVerifier(ca.cert_pem), clock=lambda: now).identity(cert, signed) == \
        node_identity("node-1")
