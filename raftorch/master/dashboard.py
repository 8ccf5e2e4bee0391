"""The web dashboard: a page, its script, and a small JSON API, served by every master.

Nothing answers a stranger: the page and its API need a bearer token, the same tokens the gRPC
API takes (`raftctl token create`). The login form (or `raftctl dashboard`, which hands the page
a token in the URL's fragment) stores it in an HttpOnly, SameSite=Strict cookie. Every read and
write then goes through the master's gRPC API with the project's client library *as that
token*, so the dashboard passes the same authentication, RBAC and admission as `raftctl`: a
view token gets a read-only page, an edit or admin token may scale. Live updates: the page holds
a server-sent event stream that carries each change of the objects the watch API reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from raftorch.client import Client
from raftorch.errors import Invalid, PermissionDenied, RaftorchError, Unauthenticated
from raftorch.objects.manifest import to_manifest
from raftorch.rpc import INSECURE, Credentials

log = structlog.get_logger("raftorch.master")

KINDS = ("nodes", "deployments", "pods", "services", "events")
STATUS = {"NotFound": 404, "Invalid": 400, "PermissionDenied": 403, "Unauthenticated": 401, "Conflict": 409,
          "AlreadyExists": 409}
NOT_FOUND_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Not found - raftorch</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main class="notfound"><h1>404: no such page</h1>
<p>The dashboard has no page at <code>{path}</code>.</p><p><a href="/">Back to the dashboard</a></p></main>
</body></html>"""
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in - raftorch</title>
<link rel="stylesheet" href="/static/app.css"></head><body>
<header><h1>raftorch</h1></header>
<main class="login"><h2>Log in</h2>
<p>Paste a bearer token (<code>raftctl token create NAME --role view</code>), or open the address
<code>raftctl dashboard</code> prints.</p>
{message}
<form id="login" method="post" action="/login">
<input id="token" name="token" type="password" autocomplete="off" size="60" placeholder="TOKEN">
<button type="submit">Log in</button></form></main>
<script src="/static/login.js"></script></body></html>"""
LOG_BYTES = 64 * 1024
# Set on a deployment's pod template to roll its pods, as `kubectl rollout restart` does.
RESTARTED_AT = "raftorch.io/restartedAt"
COOKIE = "raftorch_token"
# Clients kept open, one per token in use (each holds a channel to this master).
MAX_CLIENTS = 32
MAX_TOKEN_BYTES = 1024


def _static(name: str) -> bytes:
    return (resources.files("raftorch.master") / "static" / name).read_bytes()


def _error(err: RaftorchError) -> web.Response:
    status = STATUS.get(type(err).__name__, 503)
    return web.json_response({"error": err.message, "code": type(err).__name__}, status=status)


def _login_page(message: str = "", status: int = 200) -> web.Response:
    shown = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return web.Response(text=LOGIN_PAGE.format(message=shown), content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store"})



def _on_own_thread(fn: Any, *args: Any) -> asyncio.Future[None]:
    """Run a call that lasts as long as a page's stream (a watch, a log) on a thread of its
    own. In the event loop's default executor (6 threads on 2 cores) one page's five watches
    and a log stream took every thread, and the page's next reads waited for ever."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            fn(*args)
        finally:
            loop.call_soon_threadsafe(finish)

    threading.Thread(target=run, name="dashboard-stream", daemon=True).start()
    return done


class Dashboard:
    def __init__(self, client_addr: str, ca_pem: bytes | None, secure: bool = False) -> None:
        """`ca_pem`: the cluster CA the master's gRPC certificate chains to; None for an
        --insecure master (benchmarks: plaintext, no login). `secure`: the page is served over
        HTTPS (the cookie is then marked Secure)."""
        host, _, port = client_addr.rpartition(":")
        # Its own master, by an address its certificate covers.
        self.client_addr = f"127.0.0.1:{port}" if host in ("0.0.0.0", "", "[::]", "::") else client_addr
        self.ca_pem = ca_pem
        self.secure = secure
        self._clients: OrderedDict[str, Client] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        """No login: an --insecure master answers everyone anyway."""
        return self.ca_pem is None

    def client(self, token: str) -> Client:
        """A client that acts as `token` (one per token, the least recently used closed first)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            creds = INSECURE if self.ca_pem is None else Credentials(self.ca_pem, token=token)
            client = self._clients[key] = Client([self.client_addr], timeout=5.0, retry_for=5.0, pin=True,
                                                 credentials=creds)
            evicted = self._clients.popitem(last=False)[1] if len(self._clients) > MAX_CLIENTS else None
        if evicted is not None:
            evicted.close()
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()

    @staticmethod
    def _token(request: web.Request) -> str:
        """The caller's token: the login cookie, or an `Authorization: Bearer` header (scripts)."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
        if not token:
            raise Unauthenticated("log in with a bearer token first")
        if len(token) > MAX_TOKEN_BYTES or not token.isprintable():
            raise Unauthenticated("that is not a token")
        return token

    def _caller(self, request: web.Request) -> Client:
        return self.client("" if self.open else self._token(request))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/api/overview", self._overview)
        app.router.add_get("/api/changes", self._changes)
        app.router.add_get("/api/logs/{namespace}/{name}", self._logs)
        app.router.add_post("/api/scale/{namespace}/{name}", self._scale)
        app.router.add_post("/api/restart/{namespace}/{name}", self._restart)
        app.middlewares.append(self._not_found)

    @web.middleware
    async def _not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and not self._same_origin(request):
            return web.json_response({"error": "cross-site request refused", "code": "PermissionDenied"},
                                     status=403)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            if request.path.startswith("/api/"):
                return web.json_response({"error": f"no such API: {request.path}", "code": "NotFound"}, status=404)
            return web.Response(text=NOT_FOUND_PAGE.format(path=request.path.replace("<", "&lt;")),
                                content_type="text/html", status=404)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """Writes from this page only (besides the SameSite cookie): a browser sends Origin with POST."""
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    async def _index(self, request: web.Request) -> web.Response:
        if not self.open:
            try:
                token = self._token(request)
                await asyncio.to_thread(self.client(token).auth.whoami)
            except RaftorchError as err:
                # Unauthenticated requests get the login page, never data.
                return _login_page("" if COOKIE not in request.cookies else f"Please log in again: {err.message}")
        return web.Response(body=_static("index.html"), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _login(self, request: web.Request) -> web.Response:
        """Check the token with the API (who am I) and keep it in a cookie for this page."""
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if not token or len(token) > MAX_TOKEN_BYTES or not token.isprintable():
            return _login_page("Paste a token: raftctl token create NAME --role view prints one.", 401)
        try:
            who = await asyncio.to_thread(self.client(token).auth.whoami)
        except RaftorchError as err:
            return _login_page(f"That token was refused: {err.message}", 401)
        log.info("dashboard_login", user=who.name, role=who.role)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=self.secure, path="/")
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"app.js": "application/javascript", "login.js": "application/javascript", "app.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=types[name])

    def _read_overview(self, client: Client) -> dict[str, Any]:
        """Everything the page shows, read as the caller: what the token may not read is an error."""
        namespace = ""
        writes = True
        if not self.open:
            who = client.auth.whoami()
            namespace = who.namespace
            writes = client.auth.can_i("update", "deployments", namespace).allowed
        status = client.cluster_status()
        out: dict[str, Any] = {
            "writes": writes,
            "masters": [{"name": m.name, "role": m.role, "term": m.term, "commitIndex": m.commit_index,
                         "appliedIndex": m.applied_index, "healthy": m.healthy, "error": m.error}
                        for m in status.members],
        }
        for kind in KINDS:
            items, _ = client.objects.list(kind, "" if kind == "nodes" else namespace)
            out[kind] = [to_manifest(item) for item in items]
        try:
            usage = {u.node: u for u in client.usage()}
        except PermissionDenied:
            usage = {}  # a token limited to one namespace sees no node's usage
        for node in out["nodes"]:
            u = usage.get(node["metadata"]["name"])
            if u is not None:
                node["usage"] = {"cpu": f"{u.cpu_millicores}m", "memory": f"{u.memory_bytes // (1 << 20)}Mi"}
        return out

    async def _overview(self, request: web.Request) -> web.Response:
        try:
            client = self._caller(request)
            data = await asyncio.to_thread(self._read_overview, client)
        except RaftorchError as err:
            return _error(err)
        return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))

    async def _changes(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one `change` per batch of object changes from the watch API."""
        try:
            client = self._caller(request)
            namespace = "" if self.open else (await asyncio.to_thread(client.auth.whoami)).namespace
        except RaftorchError as err:
            return _error(err)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        watches = []
        closed = threading.Event()

        def follow(kind: str) -> None:
            try:
                watch = client.objects.watch(kind, "" if kind == "nodes" else namespace)
                watches.append(watch)
                if closed.is_set():  # the page went while this watch was being opened
                    watch.close()
                for _event in watch:
                    loop.call_soon_threadsafe(changed.set)
            except RaftorchError:
                return

        for kind in KINDS:
            _on_own_thread(follow, kind)
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
            closed.set()
            for watch in list(watches):
                watch.close()
        return response

    @staticmethod
    def _read_logs(client: Client, namespace: str, name: str) -> str:
        chunks = client.objects.logs(name, namespace, tail_lines=200)
        data = b"".join(chunks)
        return data[-LOG_BYTES:].decode(errors="replace")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("follow") == "1":
            return await self._follow_logs(request)
        try:
            text = await asyncio.to_thread(self._read_logs, self._caller(request), request.match_info["namespace"],
                                           request.match_info["name"])
        except RaftorchError as err:
            return _error(err)
        return web.json_response({"logs": text})

    @staticmethod
    def _write_scale(client: Client, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        deploy = client.objects.get("deployments", name, namespace)
        deploy.spec.replicas = replicas  # type: ignore[attr-defined]
        return to_manifest(client.objects.update(deploy))

    async def _scale(self, request: web.Request) -> web.Response:
        try:
            client = self._caller(request)  # the API decides whether this token may scale
            try:
                body = await request.json()
                replicas = int(body["replicas"])
            except (ValueError, KeyError, TypeError):
                raise Invalid('expected a JSON body like {"replicas": 3}') from None
            if not 0 <= replicas <= 10_000:
                raise Invalid(f"replicas: must be between 0 and 10000, got {replicas}")
            data = await asyncio.to_thread(self._write_scale, client, request.match_info["namespace"],
                                           request.match_info["name"], replicas)
        except RaftorchError as err:
            return _error(err)
        return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))

    @staticmethod
    def _write_restart(client: Client, namespace: str, name: str) -> dict[str, Any]:
        deploy = client.objects.get("deployments", name, namespace)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        deploy.spec.template.metadata.annotations[RESTARTED_AT] = now  # type: ignore[attr-defined]
        return to_manifest(client.objects.update(deploy))

    async def _restart(self, request: web.Request) -> web.Response:
        """A rolling restart: a new pod template (its annotation), so the deployment rolls."""
        try:
            client = self._caller(request)  # the API decides whether this token may update it
            data = await asyncio.to_thread(self._write_restart, client, request.match_info["namespace"],
                                           request.match_info["name"])
        except RaftorchError as err:
            return _error(err)
        return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))

    async def _follow_logs(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the last lines, then each chunk of the log as the container writes it
        (`log` events, JSON strings), until the container stops (`end`) or the page goes."""
        try:
            client = self._caller(request)
            stream = await asyncio.to_thread(client.objects.follow_logs, request.match_info["name"],
                                             request.match_info["namespace"], "", 200)
        except RaftorchError as err:
            return _error(err)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        def pump() -> None:
            try:
                for chunk in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, ("log", chunk.decode(errors="replace")))
                end = ("end", "")
            except RaftorchError as err:
                end = ("end", err.message)
            loop.call_soon_threadsafe(queue.put_nowait, end)

        task = _on_own_thread(pump)
        try:
            while True:
                try:
                    kind, text = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")  # finds a page that went away
                    continue
                await response.write(f"event: {kind}\ndata: {json.dumps(text)}\n\n".encode())
                if kind == "end":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.close()  # ends the relay from the agent, and so the pump
            await asyncio.gather(task, return_exceptions=True)
        return response
