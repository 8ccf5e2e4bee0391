"""The master's HTTP side: /metrics for Prometheus, /healthz, and the web dashboard.

It runs on the master's event loop (aiohttp). Nothing here writes: the dashboard's writes go
through the gRPC API like any other client's.

Nothing answers a stranger (README, "Metrics"): bound to a loopback address (the default,
127.0.0.1:2381, etcd's metrics address) it is plain HTTP and /metrics is open, as only this
host reaches it. Bound to any other address it is HTTPS with the master's certificate (the
cluster CA's), and /metrics wants a bearer token whose role may read `metrics` (view, edit,
admin): Prometheus's `authorization` and `tls_config`. /healthz stays open; the dashboard has
its own token login.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from raftorch.auth import rbac
from raftorch.auth.identity import Identity
from raftorch.errors import RaftorchError
from raftorch.master.metrics import MasterMetrics
from raftorch.rpc import is_loopback

log = structlog.get_logger("raftorch.master")


# A bearer token to its identity (raises Unauthenticated), or None: no authentication (--insecure).
Identify = Callable[[str], Identity]


class HttpServer:
    """Serves the master's HTTP routes on `addr` ("" serves nothing)."""

    def __init__(self, addr: str, metrics: MasterMetrics) -> None:
        self.addr = addr
        self.metrics = metrics
        self.identify: Identify | None = None
        self._tls: ssl.SSLContext | None = None
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def secure(self) -> bool:
        return self._tls is not None

    def protect(self, identify: Identify, cert_file: Path, key_file: Path) -> None:
        """Authenticate off-loopback callers of /metrics with `identify`, over HTTPS with the
        master's certificate. (Without a call to this, --insecure: as open as the gRPC port.)"""
        if is_loopback(self.addr):
            return
        self.identify = identify
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.load_cert_chain(cert_file, key_file)

    async def start(self) -> None:
        """Listen; a taken port is logged and skipped: metrics never keep a master from serving."""
        if not self.addr:
            return
        host, _, port_text = self.addr.rpartition(":")
        port = int(port_text)  # validated with the configuration; 0 picks a free port
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=self._tls)
        try:
            await site.start()
        except OSError as exc:
            level = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            log.warning("http_unavailable", http_addr=self.addr, error=level)
            await self._runner.cleanup()
            self._runner = None
            return
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("http_serving", http_addr=f"{host}:{self.port}")

    @property
    def url(self) -> str:
        if not self.port:
            return ""
        return f"{'https' if self.secure else 'http'}://{self.addr.rsplit(':', 1)[0]}:{self.port}"

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.identify is not None:
            denied = self._authorize(request)
            if denied is not None:
                return denied
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _authorize(self, request: web.Request) -> web.Response | None:
        assert self.identify is not None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return web.Response(status=401, text="401: /metrics wants a bearer token (raftctl token create "
                                                 "prometheus --role view)\n", headers={"WWW-Authenticate": "Bearer"})
        try:
            rbac.check(self.identify(token.strip()), rbac.Request("get", "metrics"))
        except RaftorchError as err:
            status = 403 if type(err).__name__ == "PermissionDenied" else 401
            return web.Response(status=status, text=f"{status}: {err.message}\n")
        return None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
