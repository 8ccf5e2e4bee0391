"""The master's HTTP side: /metrics for Prometheus, /healthz, and the web dashboard.

It runs on the master's event loop (aiohttp). Nothing here writes: the dashboard's writes go
through the gRPC API like any other client's.
"""

from __future__ import annotations

import errno

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from raftorch.master.metrics import MasterMetrics

log = structlog.get_logger("raftorch.master")


class HttpServer:
    """Serves the master's HTTP routes on `addr` ("" serves nothing)."""

    def __init__(self, addr: str, metrics: MasterMetrics) -> None:
        self.addr = addr
        self.metrics = metrics
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen; a taken port is logged and skipped: metrics never keep a master from serving."""
        if not self.addr:
            return
        host, _, port_text = self.addr.rpartition(":")
        port = int(port_text)  # validated with the configuration; 0 picks a free port
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
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
        return f"http://{self.addr.rsplit(':', 1)[0]}:{self.port}"

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
