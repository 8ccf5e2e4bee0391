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

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.auth.pki import ensure_admin
from raftorch.client import Client, load_credentials
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
