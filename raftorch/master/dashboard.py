"""The web dashboard: a page, its script, and a small JSON API, served by every master.

Every read and write goes through the master's gRPC API with the project's client library,
so the dashboard passes the same checks as `raftctl`. Writes (scaling) are off unless the
master's `dashboard-writes` setting is on. Live updates: the page holds a server-sent event
stream that carries each change of the objects the watch API reports, and re-reads then.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from raftorch.client import Client
from raftorch.errors import Invalid, PermissionDenied, RaftorchError
from raftorch.objects.manifest import to_manifest

log = structlog.get_logger("raftorch.master")

KINDS = ("nodes", "deployments", "pods", "services", "events")
STATUS = {"NotFound": 404, "Invalid": 400, "PermissionDenied": 403, "Unauthenticated": 401, "Conflict": 409,
          "AlreadyExists": 409}
NOT_FOUND_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Not found - raftorch</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main class="notfound"><h1>404: no such page</h1>
<p>The dashboard has no page at <code>{path}</code>.</p><p><a href="/">Back to the dashboard</a></p></main>
</body></html>"""
LOG_BYTES = 64 * 1024


def _static(name: str) -> bytes:
    return (resources.files("raftorch.master") / "static" / name).read_bytes()


def _error(err: RaftorchError) -> web.Response:
    status = STATUS.get(type(err).__name__, 503)
    return web.json_response({"error": err.message, "code": type(err).__name__}, status=status)


class Dashboard:
    def __init__(self, client_addr: str, writes: bool = False) -> None:
        self.client_addr = client_addr
        self.writes = writes
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client([self.client_addr], timeout=5.0, retry_for=5.0)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/api/overview", self._overview)
        app.router.add_get("/api/changes", self._changes)
        app.router.add_get("/api/logs/{namespace}/{name}", self._logs)
        app.router.add_post("/api/scale/{namespace}/{name}", self._scale)
        app.middlewares.append(self._not_found)

    @web.middleware
    async def _not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            if request.path.startswith("/api/"):
                return web.json_response({"error": f"no such API: {request.path}", "code": "NotFound"}, status=404)
            return web.Response(text=NOT_FOUND_PAGE.format(path=request.path.replace("<", "&lt;")),
                                content_type="text/html", status=404)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"app.js": "application/javascript", "app.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=types[name])

    def _read_overview(self) -> dict[str, Any]:
        client = self.client()
        status = client.cluster_status()
        out: dict[str, Any] = {
            "writes": self.writes,
            "masters": [{"name": m.name, "role": m.role, "term": m.term, "commitIndex": m.commit_index,
                         "appliedIndex": m.applied_index, "healthy": m.healthy, "error": m.error}
                        for m in status.members],
        }
        for kind in KINDS:
            items, _ = client.objects.list(kind, "")
            out[kind] = [to_manifest(item) for item in items]
        usage = {u.node: u for u in client.usage()}
        for node in out["nodes"]:
            u = usage.get(node["metadata"]["name"])
            if u is not None:
                node["usage"] = {"cpu": f"{u.cpu_millicores}m", "memory": f"{u.memory_bytes // (1 << 20)}Mi"}
        return out

    async def _overview(self, request: web.Request) -> web.Response:
        try:
            data = await asyncio.to_thread(self._read_overview)
        except RaftorchError as err:
            return _error(err)
        return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))

    async def _changes(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one `change` per batch of object changes from the watch API."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        watches = []

        def follow(kind: str) -> None:
            try:
                watch = self.client().objects.watch(kind, "")
                watches.append(watch)
                for _event in watch:
                    loop.call_soon_threadsafe(changed.set)
            except RaftorchError:
                return

        tasks = [asyncio.create_task(asyncio.to_thread(follow, kind)) for kind in KINDS]
        try:
            await response.write(b"event: ready\ndata: {}\n\n")
            while True:
                try:
                    await asyncio.wait_for(changed.wait(), 15.0)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                changed.clear()
                await response.write(b"event: change\ndata: {}\n\n")
                await asyncio.sleep(0.2)  # one refresh for a burst of changes
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for watch in watches:
                watch.close()
            for task in tasks:
                task.cancel()
        return response

    def _read_logs(self, namespace: str, name: str) -> str:
        chunks = self.client().objects.logs(name, namespace, tail_lines=200)
        data = b"".join(chunks)
        return data[-LOG_BYTES:].decode(errors="replace")

    async def _logs(self, request: web.Request) -> web.Response:
        try:
            text = await asyncio.to_thread(self._read_logs, request.match_info["namespace"],
                                           request.match_info["name"])
        except RaftorchError as err:
            return _error(err)
        return web.json_response({"logs": text})

    def _write_scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        client = self.client()
        deploy = client.objects.get("deployments", name, namespace)
        deploy.spec.replicas = replicas  # type: ignore[attr-defined]
        return to_manifest(client.objects.update(deploy))

    async def _scale(self, request: web.Request) -> web.Response:
        try:
            if not self.writes:
                raise PermissionDenied("this dashboard is read-only; start the master with "
                                       "--dashboard-writes to scale from it")
            try:
                body = await request.json()
                replicas = int(body["replicas"])
            except (ValueError, KeyError, TypeError):
                raise Invalid('expected a JSON body like {"replicas": 3}') from None
            if not 0 <= replicas <= 10_000:
                raise Invalid(f"replicas: must be between 0 and 10000, got {replicas}")
            data = await asyncio.to_thread(self._write_scale, request.match_info["namespace"],
                                           request.match_info["name"], replicas)
        except RaftorchError as err:
            return _error(err)
        return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))
