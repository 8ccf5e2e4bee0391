"""A client certificate presented in request metadata, with proof of its private key.

gRPC's Python server can require a TLS client certificate or not ask for one at all; it
cannot ask for an optional one. Masters must serve callers with tokens, with certificates,
and health probes with neither on one port, so their TLS only authenticates the server, and a
caller holding a certificate sends it with each request (`x-raftorch-cert`) together with a
fresh ECDSA signature by its key over a timestamp (`x-raftorch-proof`). Both travel inside
the TLS channel, so nobody but the master sees them; the signature is renewed every minute
and accepted for five, and verified results are cached, so a request costs a dictionary
lookup. The agents' endpoint, which only masters call, requires a TLS client certificate.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import grpc

from raftorch.auth.identity import Identity
from raftorch.errors import Internal, Unauthenticated

if TYPE_CHECKING:
    from raftorch.auth.pki import CertVerifier

# `cryptography` is imported only where it is used: the agent signs its proofs with the openssl
# command and never loads it (its library and modules are ~10 MB of a long-lived process).

CERT_HEADER = "x-raftorch-cert"
PROOF_HEADER = "x-raftorch-proof"
CONTEXT = b"raftorch client certificate proof v1|"
RENEW_AFTER = 60.0
VALID_FOR = 300.0

# A signature over a message: DER-encoded ECDSA with SHA-256, by the certificate's key.
Sign = Callable[[bytes], bytes]
SignerKind = Literal["cryptography", "openssl"]


def _message(stamp: int) -> bytes:
    return CONTEXT + str(stamp).encode()


def cryptography_signer(key_pem: bytes) -> Sign:
    """Signs in this process (masters and raftctl have `cryptography` loaded anyway)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("client key: expected an EC key")

    def sign(message: bytes) -> bytes:
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    return sign


def openssl_signer(key_pem: bytes, openssl: str = "openssl") -> Sign:
    """Signs with `openssl dgst -sha256 -sign` (once a minute per channel): the same DER ECDSA
    signature, without `cryptography` in this process. The key goes to openssl through a pipe,
    never through a file."""
    if len(key_pem) > 16_384:  # keys are a few hundred bytes; the pipe must take it whole
        raise ValueError("client key: too large")

    def sign(message: bytes) -> bytes:
        read, write = os.pipe()
        try:
            os.write(write, key_pem)
            os.close(write)
            write = -1
            done = subprocess.run([openssl, "dgst", "-sha256", "-sign", f"/dev/fd/{read}"], input=message,
                                  capture_output=True, pass_fds=(read,), timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Internal(f"cannot sign the client certificate proof with {openssl}: {exc}") from None
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        if done.returncode != 0 or not done.stdout:
            why = done.stderr.decode(errors="replace").strip().splitlines()
            raise Internal(f"cannot sign the client certificate proof with {openssl}: "
                           f"{why[0] if why else f'exit status {done.returncode}'}")
        return done.stdout

    return sign


def first_cert_der(pem: bytes) -> bytes:
    """The DER bytes of the first certificate in a PEM file (a PEM block is its base64)."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("client certificate: not a PEM certificate")
    return base64.b64decode(b"".join(pem[start + len(begin):stop].split()), validate=True)


class CertProof(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """Call credentials: the certificate and a signature made at most a minute ago."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, clock: Callable[[], float] = time.time, *,
                 signer: SignerKind = "cryptography") -> None:
        self._cert = base64.b64encode(first_cert_der(cert_pem)).decode()
        self._sign = openssl_signer(key_pem) if signer == "openssl" else cryptography_signer(key_pem)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = 0.0
        self._proof = ""

    def metadata(self) -> tuple[tuple[str, str], tuple[str, str]]:
        now = self._clock()
        with self._lock:
            if now - self._stamp >= RENEW_AFTER:
                stamp = int(now)
                sig = self._sign(_message(stamp))
                self._proof = f"{stamp}.{base64.b64encode(sig).decode()}"
                self._stamp = now
            return (CERT_HEADER, self._cert), (PROOF_HEADER, self._proof)

    def __call__(self, context: Any, callback: Any) -> None:
        callback(self.metadata(), None)


class ProofVerifier:
    """The server's side: the certificate against the CA, the signature against the certificate."""

    def __init__(self, verifier: CertVerifier, clock: Callable[[], float] = time.time) -> None:
        self._verifier = verifier
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def identity(self, cert_b64: str, proof: str) -> Identity:
        now = self._clock()
        key = (cert_b64, proof)
        stamp = self._seen.get(key)
        if stamp is None:
            stamp = self._verify(cert_b64, proof, now)
            with self._lock:
                if len(self._seen) > 10_000:
                    self._seen = {k: s for k, s in self._seen.items() if now - s < VALID_FOR}
                self._seen[key] = stamp
        if abs(now - stamp) > VALID_FOR:
            raise Unauthenticated("client certificate proof: too old (is this host's clock right?)")
        pem = b"-----BEGIN CERTIFICATE-----\n" + cert_b64.encode() + b"\n-----END CERTIFICATE-----\n"
        return self._verifier.identity(pem)

    def _verify(self, cert_b64: str, proof: str, now: float) -> float:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            der = base64.b64decode(cert_b64, validate=True)
            cert = x509.load_der_x509_certificate(der)
            stamp_text, _, sig_b64 = proof.partition(".")
            stamp = int(stamp_text)
            sig = base64.b64decode(sig_b64, validate=True)
        except (ValueError, TypeError):
            raise Unauthenticated("client certificate proof: malformed") from None
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self._verifier.identity(pem)  # issued by the CA, and valid now
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise Unauthenticated("client certificate: expected an EC key")
        try:
            public.verify(sig, _message(stamp), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Unauthenticated("client certificate proof: the signature does not match the certificate") \
                from None
        return float(stamp)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = getattr(base, "compression", None)


class CallMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds credentials (a bearer token, or the certificate and its proof) to each call in the
    calling thread: cheaper than gRPC's call credentials, which run a Python plugin on another
    thread for every call (measured: bench/kv_tls_cost.py)."""

    def __init__(self, metadata: Callable[[], tuple[tuple[str, str], ...]]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> _Details:
        return _Details(details, [*(details.metadata or ()), *self._metadata()])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)
