"""The node's network rules, kept in step with services, endpoints and nodes (kube-proxy's job).

A watch per kind keeps a local copy; any change re-renders the whole rule set (pure, in
raftorch.net.rules) and loads it atomically, or updates the userspace proxy. Routes to the
other nodes' pod CIDRs follow the node list.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.client.objects import ObjectWatch
from raftorch.errors import RaftorchError
from raftorch.net import IptablesApplier, NodePortProxy, RouteApplier, plan_routes, render_nat_rules, views_from

log = structlog.get_logger("raftorch.agent.network")

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEBOUNCE = 0.05
FULL_RELOAD = 60.0


class NodeNetwork:
    def __init__(self, client: Client, node: str, node_ip: str, mode: str,
                 cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
                 on_sync: Callable[[float], None] | None = None) -> None:
        self.client = client
        self._on_sync = on_sync
        self.node = node
        self.node_ip = node_ip
        self.mode = mode
        self.cluster_cidr = cluster_cidr
        self._objects: dict[str, dict[str, Any]] = {"services": {}, "endpoints": {}, "nodes": {}}
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._watches: list[ObjectWatch] = []
        self._threads: list[threading.Thread] = []
        self.iptables: IptablesApplier | None = None
        self.proxy: NodePortProxy | None = None
        self.routes = RouteApplier(cluster_cidr)
        self._last_rules = ""
        self._last_full = 0.0
        self.applied = 0
        self.last_applied_at = 0.0

    def start(self) -> None:
        if self.mode == "none":
            return
        if self.mode == "iptables":
            self.iptables = IptablesApplier()
            self.iptables.check()
        else:
            self.proxy = NodePortProxy()
            self.proxy.start_in_thread()
        for kind in self._objects:
            t = threading.Thread(target=self._watch_loop, args=(kind,), name=f"net-watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._apply_loop, name="net-apply", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("node_network_started", mode=self.mode, node_ip=self.node_ip)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        for w in self._watches:
            w.close()
        for t in self._threads:
            t.join(timeout=5)
        if self.proxy is not None:
            self.proxy.stop()

    def uninstall(self) -> None:
        """Remove every rule and route this agent wrote; other rules stay untouched."""
        with contextlib.suppress(RaftorchError):
            IptablesApplier().cleanup()
        with contextlib.suppress(RaftorchError):
            self.routes.cleanup()

    def _watch_loop(self, kind: str) -> None:
        while not self._stop.is_set():
            watch = self.client.objects.watch(kind)
            self._watches.append(watch)
            try:
                for event in watch:
                    meta = event.object.metadata  # type: ignore[attr-defined]
                    key = f"{meta.namespace}/{meta.name}"
                    with self._lock:
                        if event.type == "DELETED":
                            self._objects[kind].pop(key, None)
                        else:
                            self._objects[kind][key] = event.object
                    self._dirty.set()
            except RaftorchError as err:
                if not self._stop.is_set():
                    log.warning("network_watch_failed", kind=kind, error=str(err))
                    self._stop.wait(1.0)

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(5.0)
            if self._stop.is_set():
                return
            time.sleep(DEBOUNCE)  # gather a burst of changes into one load
            self._dirty.clear()
            started = time.perf_counter()
            try:
                self.sync()
                if self._on_sync is not None:
                    self._on_sync(time.perf_counter() - started)
            except RaftorchError as err:
                log.warning("network_sync_failed", error=str(err))
                self._dirty.set()
                self._stop.wait(1.0)

    def sync(self) -> None:
        with self._lock:
            services = [s for s in self._objects["services"].values() if isinstance(s, objects_pb2.Service)]
            endpoints = [e for e in self._objects["endpoints"].values() if isinstance(e, objects_pb2.Endpoints)]
            nodes = [n for n in self._objects["nodes"].values() if isinstance(n, objects_pb2.Node)]
        views = views_from(services, endpoints)
        if self.iptables is not None:
            text = render_nat_rules(views, [self.node_ip], cluster_cidr=self.cluster_cidr)
            # Reloading identical rules costs seconds at 1,000 services: only on change, and
            # now and then in case someone flushed our chains.
            if text != self._last_rules or time.monotonic() - self._last_full > FULL_RELOAD:
                self.iptables.apply(text)
                self._last_rules, self._last_full = text, time.monotonic()
        if self.proxy is not None:
            self.proxy.update_blocking(views, [self.node_ip])
        local = {self.node_ip, "127.0.0.1"}
        routes = [r for r in plan_routes(nodes, self.node) if r.via not in local]
        self.routes.apply(routes)
        self.applied += 1
        self.last_applied_at = time.monotonic()
