"""The cluster PKI: a CA, certificates for masters, nodes and users, and CSRs (all `cryptography`).

Keys are ECDSA P-256 (small, fast handshakes). The CA lives in two files, ``ca.crt`` and
``ca.key``, in a master's ``pki-dir``; every master of a cluster holds the same pair, as it
holds the same cluster secret. Subjects carry identities as described in
:mod:`raftorch.auth.identity`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Re-exported: the file helpers live where modules without X.509 (the agent) can use them.
from raftorch.auth.files import write_private as write_private
from raftorch.auth.files import write_public as write_public
from raftorch.auth.identity import MASTER_PREFIX, NODE_PREFIX, USER_ROLES, Identity
from raftorch.errors import Invalid, Unauthenticated

CA_LIFETIME = dt.timedelta(days=3650)
CERT_LIFETIME = dt.timedelta(days=365)
# Node certificates are short-lived: agents renew them (see raftorch.agent.certs).
NODE_CERT_LIFETIME = dt.timedelta(days=30)
ROLE_PREFIX = "raftorch:"
# Clocks of hosts differ a little: certificates start a few minutes in the past.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CertKey:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise Invalid("private key: expected an EC key")
        return key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_ca(common_name: str = "raftorch-ca", now: dt.datetime | None = None) -> CertKey:
    now = now or _now()
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return CertKey(cert_pem(cert), key_pem(key))


def subject_for(ident: Identity) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, ident.common_name)]
    if ident.kind == "user":
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, ROLE_PREFIX + ident.role))
        if ident.namespace:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ident.namespace))
    return x509.Name(attrs)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def issue(ca: CertKey, public_key: ec.EllipticCurvePublicKey, subject: x509.Name, *,
          sans: Sequence[str] = (), lifetime: dt.timedelta = CERT_LIFETIME,
          server: bool = False, client: bool = True, now: dt.datetime | None = None) -> bytes:
    """A certificate for `public_key`, signed by the CA; PEM."""
    now = now or _now()
    ca_cert = ca.cert
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
        ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))  # type: ignore[arg-type]
    if sans:
        builder = builder.add_extension(_san(list(sans)), critical=False)
    return cert_pem(builder.sign(ca.private_key(), hashes.SHA256()))


def issue_pair(ca: CertKey, ident: Identity, *, sans: Sequence[str] = (),
               lifetime: dt.timedelta = CERT_LIFETIME, server: bool = False,
               now: dt.datetime | None = None) -> CertKey:
    """A new key and its certificate for `ident`."""
    key = new_key()
    pem = issue(ca, key.public_key(), subject_for(ident), sans=list(sans), lifetime=lifetime,
                server=server, client=True, now=now)
    return CertKey(pem, key_pem(key))


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str, sans: Sequence[str]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if sans:
        builder = builder.add_extension(_san(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def sign_node_csr(ca: CertKey, csr_pem: bytes, node: str, lifetime: dt.timedelta = NODE_CERT_LIFETIME,
                  now: dt.datetime | None = None) -> bytes:
    """Sign a node's CSR: it must be for ``system:node:<node>`` exactly. The certificate serves
    the agent endpoint (SANs: the node's name and the IP addresses the CSR asks for) and
    authenticates the agent to the masters."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise Invalid("csr: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise Invalid("csr: its signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Invalid("csr: expected an EC (P-256) key")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    wanted = NODE_PREFIX + node
    if len(cns) != 1 or cns[0].value != wanted:
        got = cns[0].value if cns else "(none)"
        raise Invalid(f"csr: subject CN is {got!r}; a node may only ask for {wanted!r}")
    ips: list[str] = []
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        ips = [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted)])
    return issue(ca, public_key, subject, sans=[node, *ips], lifetime=lifetime, server=True, client=True,
                 now=now)


def spki_hash(cert: x509.Certificate) -> str:
    """`sha256:HEX` of the certificate's public key (SubjectPublicKeyInfo), as kubeadm pins CAs."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def ca_hash(ca_pem: bytes) -> str:
    return spki_hash(x509.load_pem_x509_certificate(ca_pem))


def identity_of_subject(subject: x509.Name) -> Identity:
    """The identity a certificate subject carries (see raftorch.auth.identity)."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not isinstance(cns[0].value, str) or not cns[0].value:
        raise Unauthenticated("client certificate: no common name")
    cn = cns[0].value
    if cn.startswith(NODE_PREFIX):
        return Identity("node", cn[len(NODE_PREFIX):], "node")
    if cn.startswith(MASTER_PREFIX):
        return Identity("master", cn[len(MASTER_PREFIX):], "admin")
    orgs = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    roles = [o[len(ROLE_PREFIX):] for o in orgs if o.startswith(ROLE_PREFIX)]
    if len(roles) != 1 or roles[0] not in USER_ROLES:
        raise Unauthenticated(f"client certificate {cn!r}: no role (O={ROLE_PREFIX}admin|edit|view)")
    units = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    return Identity("user", cn, roles[0], units[0] if units else None)


class CertVerifier:
    """Checks a peer certificate against the CA (signature, validity) and reads its identity.

    gRPC has checked the chain already when the certificate was presented; this repeats the
    check the interceptor relies on, cached by the certificate's bytes."""

    def __init__(self, ca_pem: bytes) -> None:
        self._ca = x509.load_pem_x509_certificate(ca_pem)
        self._lookup = lru_cache(maxsize=4096)(self._verify)

    def identity(self, pem: bytes, now: dt.datetime | None = None) -> Identity:
        ident, not_before, not_after = self._lookup(pem)
        now = now or _now()
        if not not_before <= now <= not_after:
            raise Unauthenticated(f"client certificate of {ident.describe()} has expired "
                                  f"(valid until {not_after:%Y-%m-%dT%H:%M:%SZ})")
        return ident

    def _verify(self, pem: bytes) -> tuple[Identity, dt.datetime, dt.datetime]:
        try:
            cert = x509.load_pem_x509_certificate(pem)
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            raise Unauthenticated("client certificate: not issued by this cluster's CA") from None
        return identity_of_subject(cert.subject), cert.not_valid_before_utc, cert.not_valid_after_utc


def not_after(pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def not_before(pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_before_utc


# -- files ---------------------------------------------------------------------------------

def save_pair(pair: CertKey, cert_path: Path, key_path: Path) -> None:
    write_private(key_path, pair.key_pem)
    write_public(cert_path, pair.cert_pem)


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Invalid(f"{what}: cannot read {path}: {exc.strerror}") from None


def load_pair(cert_path: Path, key_path: Path, what: str) -> CertKey:
    return CertKey(read_file(cert_path, f"{what} certificate"), read_file(key_path, f"{what} key"))


def ensure_ca(pki_dir: Path) -> tuple[CertKey, bool]:
    """The CA in `pki_dir` (ca.crt, ca.key), created when neither file exists; (ca, created)."""
    crt, key = pki_dir / "ca.crt", pki_dir / "ca.key"
    if crt.exists() or key.exists():
        ca = load_pair(crt, key, "CA")
        try:
            ca.cert, ca.private_key()  # parse both now, to fail with a clear message
        except ValueError as exc:
            raise Invalid(f"CA in {pki_dir}: cannot parse ca.crt/ca.key: {exc}") from None
        return ca, False
    ca = create_ca()
    save_pair(ca, crt, key)
    return ca, True


@dataclass(frozen=True, slots=True)
class AdminFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def ensure_admin(pki_dir: Path, name: str = "admin") -> AdminFiles:
    """The CA in `pki_dir` (created if missing) and an admin client certificate next to it
    (`<name>.crt`, `<name>.key`), issued once and kept: what `raftctl up` and local test
    clusters hand their clients."""
    ca, _ = ensure_ca(pki_dir)
    files = AdminFiles(pki_dir / "ca.crt", pki_dir / f"{name}.crt", pki_dir / f"{name}.key")
    if not (files.cert_file.exists() and files.key_file.exists()):
        save_pair(issue_pair(ca, Identity("user", name, "admin")), files.cert_file, files.key_file)
    return files


def issue_node(ca: CertKey, node: str, node_ip: str, lifetime: dt.timedelta = NODE_CERT_LIFETIME) -> CertKey:
    """A node certificate made directly with the CA (local clusters, tests), as signing the
    node's CSR would make it."""
    key = new_key()
    csr = make_csr(key, NODE_PREFIX + node, [node_ip] if node_ip else [])
    return CertKey(sign_node_csr(ca, csr, node, lifetime), key_pem(key))


def ensure_node_files(ca_dir: Path, node_pki_dir: Path, node: str, node_ip: str) -> None:
    """Put a node certificate, its key and the CA in an agent's pki-dir unless one is there."""
    if (node_pki_dir / "node.crt").exists():
        return
    ca, _ = ensure_ca(ca_dir)
    pair = issue_node(ca, node, node_ip)
    write_public(node_pki_dir / "ca.crt", ca.cert_pem)
    save_pair(pair, node_pki_dir / "node.crt", node_pki_dir / "node.key")
