"""A master process's parts wired together: replica, gRPC services, background duties."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raftorch import rpc
from raftorch.api.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    store_pb2,
)
from raftorch.auth.identity import INSECURE, set_insecure_identity
from raftorch.auth.interceptor import AuditLog, Authenticator, AuthInterceptor
from raftorch.errors import Unavailable
from raftorch.master import security
from raftorch.master.agents_service import AgentsService
from raftorch.master.auth_service import AuthService, TokenStore, register_bootstrap_tokens
from raftorch.master.cluster_service import ClusterService
from raftorch.master.config import MasterConfig
from raftorch.master.forward import LeaderForwarder
from raftorch.master.heartbeats import HeartbeatTracker
from raftorch.master.kv_service import KVService
from raftorch.master.manager import ControllerManager, ManagerSettings
from raftorch.master.node_lifecycle import LifecycleSettings
from raftorch.master.pods_service import PodsService
from raftorch.master.registry import NetworkSettings, Registry
from raftorch.master.resources_service import ResourcesService
from raftorch.store.leases import LeaseKeeper
from raftorch.store.replica import RaftReplica, RaftSettings

log = structlog.get_logger("raftorch.master")

SERVICES = (
    kv_pb2.DESCRIPTOR.services_by_name["KV"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name,
    resources_pb2.DESCRIPTOR.services_by_name["Resources"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["Agents"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["Pods"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["Auth"].full_name,
)
LEASE_TICK = 0.1
REGISTER_RETRY = 0.5


class Master:
    def __init__(self, config: MasterConfig, secret: str, settings: RaftSettings | None = None) -> None:
        self.config = config
        self._secret = secret
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.heartbeats = HeartbeatTracker()
        self.manager: ControllerManager | None = None

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self.tls = None if cfg.insecure else security.load(cfg)
        self.tokens: TokenStore | None = None
        self.audit = AuditLog(None if cfg.insecure else cfg.audit_log or cfg.data_dir / "audit.log")
        interceptors = []
        if self.tls is not None:
            self.authenticator = Authenticator(self.tls.ca.cert_pem, lambda tid: self._token_store().get(tid))
            interceptors.append(AuthInterceptor(self.authenticator, self.audit,
                                                lambda: self._token_store().barrier()))
        else:
            log.warning("insecure_mode", note="plaintext and no authentication: benchmarks only")
            set_insecure_identity(INSECURE)
        self.server = rpc.aio_server(interceptors)
        # Bind first: a taken client port should fail before Raft starts talking.
        self.port = rpc.bind(self.server, cfg.client_addr, self.tls.server if self.tls else None)
        self.client_addr = cfg.client_addr if not cfg.client_addr.endswith(":0") else \
            f"{cfg.client_addr.rsplit(':', 1)[0]}:{self.port}"
        settings = self._settings or RaftSettings(log_compaction_entries=cfg.compaction_entries,
                                                  election_min=cfg.election_min, election_max=cfg.election_max)
        self.replica = RaftReplica(cfg.name, cfg.peer_addr, cfg.peers, cfg.data_dir, self._secret,
                                   settings, on_role_change=self._role_changed)
        self.leases = LeaseKeeper(self.replica)
        self.forwarder = LeaderForwarder(self.replica, self.tls.client if self.tls else None)
        self.tokens = TokenStore(self.replica)
        self.registry = Registry(self.replica, NetworkSettings(cfg.service_cidr, cfg.cluster_cidr))
        resources_pb2_grpc.add_ResourcesServicer_to_server(
            ResourcesService(self.registry, cfg.write_timeout), self.server)
        agents_pb2_grpc.add_AgentsServicer_to_server(
            AgentsService(self.registry, self.heartbeats, self.forwarder, cfg.write_timeout), self.server)
        agents_pb2_grpc.add_PodsServicer_to_server(PodsService(self.registry, self.forwarder), self.server)
        kv_pb2_grpc.add_KVServicer_to_server(
            KVService(self.replica, self.leases, self.forwarder, cfg.write_timeout), self.server)
        cluster_pb2_grpc.add_ClusterServicer_to_server(
            ClusterService(self.replica, self.client_addr, self.forwarder), self.server)
        if self.tls is not None:
            auth_pb2_grpc.add_AuthServicer_to_server(
                AuthService(self.tokens, self.authenticator, self.tls.ca, cfg.node_cert_ttl, cfg.write_timeout),
                self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if cfg.reflection:
            reflection.enable_server_reflection(
                (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                self.server)
        await self.server.start()
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._tasks = [asyncio.create_task(self._register()), asyncio.create_task(self._lease_ticks())]
        log.info("master_started", name=cfg.name, client_addr=self.client_addr, peer_addr=cfg.peer_addr,
                 peers=cfg.peers, data_dir=str(cfg.data_dir))

    def _token_store(self) -> TokenStore:
        if self.tokens is None:
            raise Unavailable("this master is starting; retry")
        return self.tokens

    def _role_changed(self, leader: bool, term: int) -> None:
        """pysyncobj's tick thread: record the change, hand the rest to the event loop."""
        if hasattr(self, "leases"):
            self.leases.on_role_change(leader, term)
        if leader:
            self.heartbeats.reset()
        manager = self.manager
        if manager is not None and (not leader or manager.term != term):
            manager._stop.set()  # never block Raft's thread: the manager exits by itself
            self.manager = None
        log.info("role_changed", leader=leader, term=term)
        if leader and self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self._tasks.append(
                asyncio.create_task(self._fence(term))))

    async def _fence(self, term: int) -> None:
        """Commit the new term's fence: leader-only work of older terms is rejected after it."""
        while self.replica.is_leader and self.replica.term == term:
            future = self.replica.submit(store_pb2.Command(
                fence=store_pb2.LeaderFence(term=term, leader=self.config.name)))
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), 5.0)
                log.info("leader_fenced", term=term)
                self._start_controllers(term)
                cfg = self.config
                if cfg.bootstrap_token_file is not None and self.tokens is not None:
                    await register_bootstrap_tokens(self.tokens, cfg.bootstrap_token_file,
                                                    cfg.bootstrap_token_ttl, time.time)
                return
            except Exception as exc:
                log.warning("fence_retry", term=term, error=str(exc))
                await asyncio.sleep(0.1)

    def _start_controllers(self, term: int) -> None:
        if not (self.replica.is_leader and self.replica.term == term):
            return
        if self.manager is not None:
            self.manager._stop.set()
        cfg = self.config
        settings = ManagerSettings(LifecycleSettings(cfg.node_grace, cfg.eviction_timeout))
        self.manager = ControllerManager(self.registry, self.heartbeats, term, settings)
        self.manager.start()

    async def _register(self) -> None:
        """Make sure the store lists this master with its current addresses."""
        me = cluster_pb2.Member(name=self.config.name, client_addr=self.client_addr,
                                peer_addr=self.config.peer_addr)
        while True:
            with self.replica.reading() as machine:
                current = machine.members.get(me.name)
            if current == me:
                return
            if self.replica.leader_peer_addr:
                future = self.replica.submit(store_pb2.Command(member=me))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(future), 5.0)
                    continue
            await asyncio.sleep(REGISTER_RETRY)

    async def _lease_ticks(self) -> None:
        while True:
            try:
                self.leases.tick()
            except Exception:
                log.exception("lease_tick_failed")
            await asyncio.sleep(LEASE_TICK)

    async def stop(self, grace: float = 1.0) -> None:
        log.info("master_stopping", name=self.config.name)
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.manager is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.manager.stop)
        await self.server.stop(grace)
        await self.forwarder.close()
        self.audit.close()
        await asyncio.get_running_loop().run_in_executor(None, self.replica.stop)
        log.info("master_stopped", name=self.config.name)
