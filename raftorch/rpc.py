"""The one place that builds gRPC channels and servers.

Transport security lives here and nowhere else: callers ask for a channel with the
`Credentials` they hold (the cluster CA to trust, a client certificate or a bearer token) and
for a server with its `ServerTLS`, and get TLS with the project's options. Channels without
credentials are plaintext: they reach only a master started with `--insecure` (benchmarks).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import grpc
import grpc.aio

from raftorch.errors import ResourceExhausted

# Values up to 1 MiB plus headroom: larger requests fail with our own INVALID_ARGUMENT.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Fail fast when a master is down, so the client moves on to the next one.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.enable_retries", 0),
]

_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a caller trusts and presents. `ca_pem` None means plaintext (insecure masters only).

    `cert_pem`/`key_pem` are a client certificate (users, agents, masters); `token` is a bearer
    token sent as `authorization: Bearer TOKEN` (users, or a join token while joining).
    `server_name` replaces the address's host as the name checked in the server's
    certificate. `proof_signer` signs the proof of the client certificate's key (see
    raftorch.auth.proof): in this process, or with the openssl command (the agent, which keeps
    `cryptography` out of its process)."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    server_name: str | None = None
    proof_signer: Literal["cryptography", "openssl"] = "cryptography"

    @property
    def insecure(self) -> bool:
        return self.ca_pem is None

    def with_token(self, token: str | None) -> Credentials:
        return replace(self, token=token)


INSECURE = Credentials()


def _channel_credentials(creds: Credentials) -> grpc.ChannelCredentials:
    # The certificate goes into the TLS handshake for servers that require one (agents), and
    # into each request with a proof of its key for masters (see raftorch.auth.proof).
    chan = grpc.ssl_channel_credentials(root_certificates=creds.ca_pem, private_key=creds.key_pem,
                                        certificate_chain=creds.cert_pem)
    if creds.token:
        return grpc.composite_channel_credentials(chan, grpc.access_token_call_credentials(creds.token))
    if creds.cert_pem and creds.key_pem:
        from raftorch.auth.proof import CertProof

        return grpc.composite_channel_credentials(
            chan, grpc.metadata_call_credentials(CertProof(creds.cert_pem, creds.key_pem, signer=creds.proof_signer),
                                                 name="raftorch-cert"))
    return chan


def _options(creds: Credentials) -> list[tuple[str, object]]:
    if creds.server_name:
        return [*_OPTIONS, ("grpc.ssl_target_name_override", creds.server_name)]
    return list(_OPTIONS)


def channel(address: str, creds: Credentials | None = None, *, own_connection: bool = False) -> grpc.Channel:
    """A blocking channel to a master or agent: TLS unless `creds` is None or insecure. Channels
    of one process to one address share a connection unless `own_connection` is set."""
    extra = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    if creds is None or creds.insecure:
        return grpc.insecure_channel(address, options=[*_OPTIONS, *extra])
    from raftorch.auth.proof import CallMetadata, CertProof

    tls = grpc.ssl_channel_credentials(root_certificates=creds.ca_pem, private_key=creds.key_pem,
                                       certificate_chain=creds.cert_pem)
    chan = grpc.secure_channel(address, tls, options=[*_options(creds), *extra])
    if creds.token:
        bearer = (("authorization", f"Bearer {creds.token}"),)
        return grpc.intercept_channel(chan, CallMetadata(lambda: bearer))
    if creds.cert_pem and creds.key_pem:
        proof = CertProof(creds.cert_pem, creds.key_pem, signer=creds.proof_signer)
        return grpc.intercept_channel(chan, CallMetadata(proof.metadata))
    return chan


def aio_channel(address: str, creds: Credentials | None = None) -> grpc.aio.Channel:
    """An asyncio channel, for servers that call other servers."""
    if creds is None or creds.insecure:
        return grpc.aio.insecure_channel(address, options=_OPTIONS)
    return grpc.aio.secure_channel(address, _channel_credentials(creds), options=_options(creds))


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """A server's certificate chain (its certificate, then the CA's) and key, the CA its
    clients' certificates must chain to, and whether a client certificate is required (agents)
    or optional (masters: users may bring a bearer token instead)."""

    cert_chain_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    require_client_cert: bool = False


def _server_credentials(tls: ServerTLS, reload: Callable[[], ServerTLS | None] | None
                        ) -> grpc.ServerCredentials:
    def config(t: ServerTLS) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(t.key_pem, t.cert_chain_pem)], t.ca_pem)

    if reload is None:
        return grpc.ssl_server_credentials([(tls.key_pem, tls.cert_chain_pem)], root_certificates=tls.ca_pem,
                                           require_client_auth=tls.require_client_cert)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before each handshake: a renewed certificate takes effect at once.
        fresh = reload()
        return None if fresh is None else config(fresh)

    return grpc.dynamic_ssl_server_credentials(config(tls), fetch, tls.require_client_cert)


def aio_server(interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    return grpc.aio.server(options=_SERVER_OPTIONS, interceptors=list(interceptors))


def bind(server: grpc.aio.Server, address: str, tls: ServerTLS | None = None) -> int:
    """Listen on `address` (TLS when `tls` is given); returns the port (useful with port 0)."""
    if tls is None:
        port: int = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, _server_credentials(tls, None))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def server(max_workers: int = 16, maximum_concurrent_rpcs: int | None = None,
           interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """A thread-pool server, for processes built around threads (the agent). With
    `maximum_concurrent_rpcs`, calls beyond it get RESOURCE_EXHAUSTED at once instead of
    queueing for a worker that may never come free."""
    from concurrent.futures import ThreadPoolExecutor

    return grpc.server(ThreadPoolExecutor(max_workers=max_workers), options=_SERVER_OPTIONS,
                       maximum_concurrent_rpcs=maximum_concurrent_rpcs, interceptors=list(interceptors))


class StreamSlots:
    """At most `limit` streams of one kind open at once; one more is refused with
    RESOURCE_EXHAUSTED, so one kind of stream cannot take what the others need."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    @contextmanager
    def take(self) -> Iterator[None]:
        with self._lock:
            if self.open >= self.limit:
                raise ResourceExhausted(f"{self.limit} {self.what} streams are open here already, the most "
                                        "allowed; close one or retry later")
            self.open += 1
        try:
            yield
        finally:
            with self._lock:
                self.open -= 1


def bind_sync(srv: grpc.Server, address: str, tls: ServerTLS | None = None,
              reload: Callable[[], ServerTLS | None] | None = None) -> int:
    """Like `bind`; `reload` returns a renewed ServerTLS (or None: unchanged) before handshakes."""
    if tls is None:
        port: int = srv.add_insecure_port(address)
    else:
        port = srv.add_secure_port(address, _server_credentials(tls, reload))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def is_loopback(addr: str) -> bool:
    """Whether HOST:PORT names a loopback address (localhost included): only this host reaches it."""
    host = addr.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
