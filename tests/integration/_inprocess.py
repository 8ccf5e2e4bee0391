"""One master in this test's process (a one-member Raft cluster on 127.0.0.1), on an event
loop thread of its own: tests can reach into its replica and controllers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from raftorch.agent.hollow import HollowFleet
from raftorch.api.v1 import kv_pb2, objects_pb2, store_pb2
from raftorch.auth.pki import ensure_admin
from raftorch.client import Client, load_credentials
from raftorch.errors import NotFound
from raftorch.local.masters import free_ports
from raftorch.master.config import MasterConfig
from raftorch.master.manager import ControllerManager
from raftorch.master.server import Master


class InProcessMaster:
    def __init__(self, data_dir: Path) -> None:
        client_port, peer_port = free_ports(2)
        # The cluster CA and an admin certificate beside the data, as LocalMasters keeps them.
        admin = ensure_admin(data_dir.parent / f"{data_dir.name}-pki")
        self.credentials = load_credentials(admin.ca_file, admin.cert_file, admin.key_file)
        self.config = MasterConfig(name="m1", client_addr=f"127.0.0.1:{client_port}",
                                   peer_addr=f"127.0.0.1:{peer_port}", data_dir=data_dir,
                                   pki_dir=data_dir.parent / f"{data_dir.name}-pki")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-master", daemon=True)
        self._thread.start()
        self.master = Master(self.config, "in-process-test-secret-0123456789")
        self._call(self.master.start())

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self) -> Client:
        return Client([self.master.client_addr], timeout=5.0, retry_for=15.0, credentials=self.credentials)

    def manager(self, timeout: float = 30.0) -> ControllerManager:
        """The running controllers (once this master leads and has fenced its term)."""
        deadline = time.monotonic() + timeout
        while (manager := self.master.manager) is None:
            assert time.monotonic() < deadline, "the master never started its controllers"
            time.sleep(0.05)
        return manager

    def wait_ready(self) -> None:
        """Until the controllers run and have created the default namespace."""
        self.manager()
        with self.client() as c:
            def has_default() -> bool:
                items, _ = c.objects.list("namespaces")
                return any(ns.metadata.name == "default" for ns in items)  # type: ignore[attr-defined]

            eventually(has_default, what="the default namespace")

    def raw_put(self, key: str, value: bytes) -> int:
        """Write through the replica, around every API check: how a bug or a hand would."""
        txn = kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value))])
        future: Future[store_pb2.CommandResult] = self.master.replica.submit(
            store_pb2.Command(request_id=f"raw-{key}-{time.monotonic_ns()}", txn=txn))
        result = future.result(10)
        assert result.WhichOneof("result") == "txn", result
        return result.txn.header.revision

    def restart_controllers(self) -> ControllerManager:
        """What a new leader does: a fresh controller manager over what is stored now."""
        old = self.manager()
        old.stop()
        self.master._start_controllers(self.master.replica.term)
        return self.manager()

    def close(self) -> None:
        try:
            self._call(self.master.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- a whole cluster in this process ----------------------------------------------------------

SECRET = "in-process-test-secret-0123456789"
# gRPC's asyncio poller: one per process, started on first use and never stopped.
PROCESS_WIDE_THREADS = ("(_poll_wrapper)",)


def _foreign(thread: threading.Thread) -> bool:
    """A thread Python did not start: gRPC's core threads that ran a Python callback (the client
    certificate's proof, a call credentials plugin) show up as dummies, and belong to gRPC's
    process-wide pool, not to the cluster."""
    return isinstance(thread, threading._DummyThread)


class InProcessCluster:
    """Masters (a real Raft cluster over 127.0.0.1, gRPC on port 0) and optionally a hollow
    fleet, all in this test's process on one event loop thread: in the manner of
    dask/distributed's `gen_cluster`, fast to start, and tests can reach into any master.

    Use `with InProcessCluster(...) as cluster:` (or the `inprocess_cluster` fixture): on exit
    everything is stopped and any thread the cluster started and left running fails the test.
    """

    def __init__(self, data_dir: Path, masters: int = 3, nodes: list[str] | None = None,
                 node_grace: float = 2.0, eviction_timeout: float = 2.0) -> None:
        self.data_dir = data_dir
        # The cluster CA and an admin certificate beside the data, as LocalMasters keeps them;
        # each master makes its own certificate from that CA when it starts.
        self.pki_dir = data_dir.parent / f"{data_dir.name}-pki"
        admin = ensure_admin(self.pki_dir)
        self.credentials = load_credentials(admin.ca_file, admin.cert_file, admin.key_file)
        self.names = [f"m{i + 1}" for i in range(masters)]
        peer_ports = free_ports(masters)
        peers = {name: f"127.0.0.1:{port}" for name, port in zip(self.names, peer_ports, strict=True)}
        self.configs = {
            name: MasterConfig(name=name, client_addr="127.0.0.1:0", peer_addr=peers[name],
                               peers={n: a for n, a in peers.items() if n != name}, data_dir=data_dir / name,
                               pki_dir=self.pki_dir, node_grace=node_grace, eviction_timeout=eviction_timeout)
            for name in self.names}
        self.node_names = list(nodes or [])
        self.masters: dict[str, Master] = {}
        self.fleet: HollowFleet | None = None
        self._threads_before = set(threading.enumerate())
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-cluster-loop", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> InProcessCluster:
        self._thread.start()
        try:
            for name in self.names:
                self.start_master(name)
            self.wait_ready()
            if self.node_names:
                # Hollow nodes share one client, so they act with the admin's credentials (a
                # cluster-wide admin may act as any node; no node certificate names them all).
                self.fleet = HollowFleet(self.endpoints, self.node_names, heartbeat_period=0.5,
                                         credentials=self.credentials)
                self.fleet.start()
                with self.client() as c:
                    eventually(lambda: all(node_ready(c, n) for n in self.node_names), what="nodes Ready")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if exc[0] is None:
            self.check_threads()

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_master(self, name: str) -> Master:
        master = Master(self.configs[name], SECRET)
        self._call(master.start())
        self.masters[name] = master
        return master

    def stop_master(self, name: str) -> None:
        master = self.masters.pop(name)
        self._call(master.stop(grace=0.1))

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        for name in list(self.masters):
            try:
                self.stop_master(name)
            except Exception:  # the others still stop
                self.masters.pop(name, None)
        if self._thread.is_alive():
            self._call(self.loop.shutdown_default_executor())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()

    def check_threads(self, timeout: float = 10.0) -> None:
        """Fail if a thread started since the cluster was made is still running."""
        deadline = time.monotonic() + timeout
        while True:
            left = [t for t in threading.enumerate() if t not in self._threads_before and t.is_alive()
                    and not t.name.endswith(PROCESS_WIDE_THREADS) and not _foreign(t)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not left, f"threads left running: {sorted(t.name for t in left)}"

    # -- views ----------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [m.client_addr for m in self.masters.values()]

    def client(self) -> Client:
        return Client(self.endpoints, timeout=5.0, retry_for=15.0, credentials=self.credentials)

    def leader(self) -> str:
        """The name of the master that leads and runs its controllers (waits for one)."""
        found: list[str] = []

        def one() -> bool:
            found[:] = [n for n, m in self.masters.items() if m.replica.is_leader and m.manager is not None
                        and m.manager.running]
            return len(found) == 1

        eventually(one, what="one leader with running controllers")
        return found[0]

    def wait_ready(self) -> None:
        self.leader()
        with self.client() as c:
            eventually(lambda: any(ns.metadata.name == "default"  # type: ignore[attr-defined]
                                   for ns in c.objects.list("namespaces")[0]), what="the default namespace")


def node_ready(c: Client, name: str) -> bool:
    try:
        node = c.objects.get("node", name)
    except NotFound:
        return False
    assert isinstance(node, objects_pb2.Node)
    return any(cd.type == "Ready" and cd.status == "True" for cd in node.status.conditions)
