"""The master's side of the controller-manager process: its local API socket and its supervisor.

The scheduler and the controllers run in a child process of each master (decision 21), so the
master's GIL serves Raft, apply, the gRPC API and the watch fan-out alone. The child reaches
its own master only, over a unix socket:

- the socket lives in a fresh directory of mode 0700 and is itself 0600: only this master's
  user can connect. A unix socket was chosen over loopback TLS because the child makes every
  controller write and reads every object through it: TLS would add a handshake, encryption on
  both sides and a certificate to issue and renew, on the leader's busiest path, to protect a
  channel the kernel already confines to one user.
- every call on it is the identity ``system:controller-manager`` (no credential travels: the
  socket's permissions are the credential), which RBAC limits to the Resources API and the
  cluster status, and which alone may fence its writes by term (`fence_term`).

The supervisor starts the child with the master, restarts it with a back-off when it exits,
and stops it with the master. The child is active only while its master leads (it asks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from raftorch import rpc
from raftorch.api.v1 import cluster_pb2, resources_pb2
from raftorch.auth import tokens
from raftorch.auth.identity import CONTROLLER_MANAGER, Identity
from raftorch.auth.interceptor import AuditLog, AuthInterceptor
from raftorch.errors import Unauthenticated
from raftorch.master import edge
from raftorch.master.backoff import Backoff
from raftorch.master.edge import StreamCaps, add_service

log = structlog.get_logger("raftorch.master")

SOCKET_NAME = "api.sock"
STOP_GRACE = 5.0
# Watches the child holds: one per kind, and a few to spare across a relist.
LOCAL_STREAMS = 64


class LocalAuthenticator:
    """Everyone on the local socket is the controller manager: its permissions are the credential."""

    def identify(self, token: str | None, metadata: Any) -> Identity:
        return CONTROLLER_MANAGER

    def join_record(self, token: str) -> tokens.TokenRecord:
        raise Unauthenticated("joining is not possible on the controller manager's socket")


class LocalAPI:
    """The Resources and Cluster services on a unix socket, for the controller-manager process."""

    def __init__(self, resources: object, cluster: object, audit: AuditLog) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="raftorch-cm-"))  # mode 0700
        self.path = self._dir / SOCKET_NAME
        self.server = rpc.aio_server([AuthInterceptor(LocalAuthenticator(), audit, decode=edge.decode)])
        caps = StreamCaps({"watch": LOCAL_STREAMS, "stream": LOCAL_STREAMS})
        add_service(self.server, resources, resources_pb2.DESCRIPTOR.services_by_name["Resources"], caps)
        add_service(self.server, cluster, cluster_pb2.DESCRIPTOR.services_by_name["Cluster"], caps)

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    async def start(self) -> None:
        rpc.bind(self.server, self.address)
        os.chmod(self.path, 0o600)
        await self.server.start()

    async def stop(self, grace: float = 1.0) -> None:
        await self.server.stop(grace)
        shutil.rmtree(self._dir, ignore_errors=True)


class ControllerManagerProcess:
    """Runs `python -m raftorch.master.controller_manager` while the master runs."""

    def __init__(self, address: str, master: str, args: list[str]) -> None:
        self.address = address
        self.master = master
        self.args = args
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._backoff = Backoff(time.monotonic, start=0.2, cap=10.0, healthy=30.0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    @property
    def pid(self) -> int | None:
        proc = self.process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _supervise(self) -> None:
        while True:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "raftorch.master.controller_manager", "--socket", self.address,
                "--master", self.master, "--parent-pid", str(os.getpid()), *self.args, stdin=asyncio.subprocess.DEVNULL)
            self.process = proc
            self.starts += 1
            log.info("controller_manager_started", pid=proc.pid, starts=self.starts)
            code = await proc.wait()
            delay = self._backoff.failed()
            log.warning("controller_manager_exited", pid=proc.pid, returncode=code, restart_in=delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
