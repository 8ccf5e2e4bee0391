"""A master process's parts wired together: replica, gRPC services, background duties."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from raftorch import rpc
from raftorch.api.v1 import agents_pb2, auth_pb2, cluster_pb2, kv_pb2, resources_pb2, store_pb2
from raftorch.auth.identity import INSECURE, set_insecure_identity
from raftorch.auth.interceptor import AuditLog, Authenticator, AuthInterceptor
from raftorch.errors import Conflict, RaftorchError, Unavailable
from raftorch.master import edge, security
from raftorch.master.agents_service import AgentsService
from raftorch.master.auth_service import AuthService, TokenStore, register_bootstrap_tokens
from raftorch.master.cluster_service import ClusterService
from raftorch.master.config import MasterConfig
from raftorch.master.controller_process import ControllerManagerProcess, LocalAPI
from raftorch.master.dashboard import Dashboard
from raftorch.master.edge import StreamCaps, add_service
from raftorch.master.encryption import load_key_file
from raftorch.master.forward import LeaderForwarder
from raftorch.master.heartbeats import HeartbeatTracker
from raftorch.master.http import HttpServer
from raftorch.master.kv_service import KVService
from raftorch.master.manager import MASTER_PREFIXES, MASTER_STEPS, ControllerManager, ManagerSettings, ReplicaLink
from raftorch.master.metrics import MasterMetrics, count_refused
from raftorch.master.node_lifecycle import LifecycleSettings
from raftorch.master.pods_service import PodsService
from raftorch.master.registry import NetworkSettings, Registry
from raftorch.master.resources_service import ResourcesService
from raftorch.master.stored import open_secrets, use_secret_box
from raftorch.master.usage import UsageStore
from raftorch.objects import SECRET, store_prefix
from raftorch.store.leases import LeaseKeeper
from raftorch.store.replica import RaftReplica, RaftSettings

log = structlog.get_logger("raftorch.master")


def _service(module: Any, name: str) -> ServiceDescriptor:
    descriptor: ServiceDescriptor = module.DESCRIPTOR.services_by_name[name]
    return descriptor


SERVICES = (
    _service(kv_pb2, "KV").full_name,
    _service(cluster_pb2, "Cluster").full_name,
    _service(resources_pb2, "Resources").full_name,
    _service(agents_pb2, "Agents").full_name,
    _service(agents_pb2, "Pods").full_name,
    _service(auth_pb2, "Auth").full_name,
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
        # Set when stop() begins: a leadership won while stopping starts no leader-only work.
        self._stopping = False
        self.local_api: LocalAPI | None = None
        self.controller_process: ControllerManagerProcess | None = None
        self.metrics = MasterMetrics()
        self.usage = UsageStore()
        self.http = HttpServer(config.http_addr, self.metrics)
        # Set when the master must not go on serving (its key cannot open the stored secrets).
        self.failed = asyncio.Event()
        self.failure: RaftorchError | None = None

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        use_secret_box(load_key_file(cfg.encryption_key_file) if cfg.encryption_key_file else None)
        self.tls = None if cfg.insecure else security.load(cfg)
        self.tokens: TokenStore | None = None
        self.audit = AuditLog(None if cfg.insecure else cfg.audit_log or cfg.data_dir / "audit.log",
                              max_bytes=cfg.audit_log_max_size_mb << 20, backups=cfg.audit_log_max_backups)
        interceptors = []
        if self.tls is not None:
            self.authenticator = Authenticator(self.tls.ca.cert_pem, lambda tid: self._token_store().get(tid))
            interceptors.append(AuthInterceptor(self.authenticator, self.audit,
                                                lambda: self._token_store().barrier(), decode=edge.decode,
                                                refused=count_refused(self.metrics)))
        else:
            log.warning("insecure_mode", note="plaintext and no authentication: benchmarks only")
            set_insecure_identity(INSECURE)
        self.server = rpc.aio_server(interceptors)
        # Bind first: a taken client port should fail before Raft starts talking.
        self.port = rpc.bind(self.server, cfg.client_addr, self.tls.server if self.tls else None)
        self.client_addr = cfg.client_addr if not cfg.client_addr.endswith(":0") else \
            f"{cfg.client_addr.rsplit(':', 1)[0]}:{self.port}"
        settings = self._settings or RaftSettings(log_compaction_entries=cfg.compaction_entries,
                                                  election_min=cfg.election_min, election_max=cfg.election_max,
                                                  fsync=not cfg.unsafe_no_fsync)
        self.replica = RaftReplica(cfg.name, cfg.peer_addr, cfg.peers, cfg.data_dir, self._secret,
                                   settings, on_role_change=self._role_changed)
        self.replica.on_commit_latency = self.metrics.proposal_seconds.observe
        self.replica.on_fsync_latency = self.metrics.fsync_seconds.observe
        self.metrics.watch_state(self.replica, self.heartbeats)
        self.leases = LeaseKeeper(self.replica)
        self.forwarder = LeaderForwarder(self.replica, self.tls.client if self.tls else None)
        self.tokens = TokenStore(self.replica)
        self.registry = Registry(self.replica, NetworkSettings(cfg.service_cidr, cfg.cluster_cidr))
        # Every service sits behind the edge: parsed, bounded and counted there (edge.py).
        caps = StreamCaps({"watch": cfg.max_watches_per_client, "stream": cfg.max_streams_per_client})
        resources = ResourcesService(self.registry, cfg.write_timeout)
        cluster = ClusterService(self.replica, self.client_addr, self.forwarder)
        services: list[tuple[object, ServiceDescriptor]] = [
            (resources, _service(resources_pb2, "Resources")),
            (AgentsService(self.registry, self.heartbeats, self.forwarder, cfg.write_timeout, self.usage,
                           record_events=cfg.record_events),
             _service(agents_pb2, "Agents")),
            (PodsService(self.registry, self.forwarder), _service(agents_pb2, "Pods")),
            (KVService(self.replica, self.leases, self.forwarder, cfg.write_timeout), _service(kv_pb2, "KV")),
            (cluster, _service(cluster_pb2, "Cluster")),
        ]
        if self.tls is not None:
            services.append((AuthService(self.tokens, self.authenticator, self.tls.ca, cfg.node_cert_ttl,
                                         cfg.write_timeout), _service(auth_pb2, "Auth")))
        for servicer, descriptor in services:
            add_service(self.server, servicer, descriptor, caps, self.metrics)
        # Health and reflection too: the edge answers their bad input with INVALID_ARGUMENT.
        self.health = health.aio.HealthServicer()
        add_service(self.server, self.health, _service(health_pb2, "Health"), caps, self.metrics)
        if cfg.reflection:
            names = (*SERVICES, _service(health_pb2, "Health").full_name, reflection.SERVICE_NAME)
            add_service(self.server, reflection.aio.ReflectionServicer(names),
                        _service(reflection_pb2, "ServerReflection"), caps, self.metrics)
        await self.server.start()
        if self.tls is not None:
            self.http.protect(self.authenticator.token_identity, cfg.data_dir / "tls" / "master.crt",
                              cfg.data_dir / "tls" / "master.key")
        self.dashboard = Dashboard(self.client_addr, self.tls.ca.cert_pem if self.tls else None, self.http.secure)
        self.dashboard.add_routes(self.http.app)
        await self.http.start()
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._tasks = [asyncio.create_task(self._register()), asyncio.create_task(self._lease_ticks()),
                       asyncio.create_task(self._check_secret_key())]
        if cfg.controllers == "process":
            self.local_api = LocalAPI(resources, cluster, self.audit)
            await self.local_api.start()
            self.controller_process = ControllerManagerProcess(
                self.local_api.address, cfg.name,
                ["--log-level", cfg.log_level, "--event-ttl", str(cfg.event_ttl),
                 "--events" if cfg.record_events else "--no-events"])
            self.controller_process.start()
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
            self.usage.reset()
        manager = self.manager
        if manager is not None and (not leader or manager.term != term):
            manager._stop.set()  # never block Raft's thread: the manager exits by itself
            self.manager = None
        log.info("role_changed", leader=leader, term=term)
        if leader and self._loop is not None and not self._stopping:
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
                self._tasks.append(asyncio.create_task(self._set_quota(term)))
                self._start_controllers(term)
                cfg = self.config
                if cfg.bootstrap_token_file is not None and self.tokens is not None:
                    await register_bootstrap_tokens(self.tokens, cfg.bootstrap_token_file,
                                                    cfg.bootstrap_token_ttl, time.time)
                return
            except Exception as exc:
                log.warning("fence_retry", term=term, error=str(exc))
                await asyncio.sleep(0.1)

    async def _set_quota(self, term: int) -> None:
        """Commit this master's --quota-bytes if the store's differs: the quota is replicated
        state, so every replica refuses the same writes."""
        want = self.config.quota_bytes
        with self.replica.reading() as machine:
            if machine.quota_bytes == want:
                return
        future = self.replica.submit(store_pb2.Command(quota=store_pb2.StoreQuota(bytes=want), fence_term=term))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), 5.0)
        except Exception as exc:
            log.warning("quota_not_set", quota_bytes=want, error=str(exc))
            return
        if result.WhichOneof("result") == "error":
            log.warning("quota_not_set", quota_bytes=want, error=result.error.message)
        else:
            log.info("quota_set", quota_bytes=want)

    def _start_controllers(self, term: int) -> None:
        if self._stopping or not (self.replica.is_leader and self.replica.term == term):
            return
        if self.manager is not None:
            self.manager._stop.set()
        cfg = self.config
        settings = ManagerSettings(LifecycleSettings(cfg.node_grace, cfg.eviction_timeout), event_ttl=cfg.event_ttl,
                                   record_events=cfg.record_events)
        # With the controller-manager process, the master keeps the steps that need its own
        # memory (heartbeats, Raft links, undecodable objects); the process runs the rest.
        if cfg.controllers == "process":
            self.manager = ControllerManager(self.registry, self.heartbeats, term, settings, steps=MASTER_STEPS,
                                             link=ReplicaLink(self.replica, MASTER_PREFIXES), metrics=self.metrics)
        else:
            self.manager = ControllerManager(self.registry, self.heartbeats, term, settings, metrics=self.metrics)
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

    async def _check_secret_key(self) -> None:
        """Once this replica holds the cluster's state, every stored secret must open with this
        master's key; otherwise it stops, rather than answer reads it cannot decrypt."""
        while True:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.replica.barrier()), 5.0)
                break
            except Exception:
                await asyncio.sleep(REGISTER_RETRY)
        with self.replica.reading() as machine:
            found = list(machine.index.range(store_prefix(SECRET, None), True, 0))
        try:
            open_secrets(found)
        except Conflict as err:
            log.error("secret_key_mismatch", error=err.message)
            self.failure = Conflict(f"encryption-key-file: {err.message}; every master needs the key file "
                                    "that sealed the stored secrets")
            self.failed.set()
            return
        log.info("secret_key_checked", secrets=len(found))

    async def _lease_ticks(self) -> None:
        while True:
            try:
                self.leases.tick()
            except Exception:
                log.exception("lease_tick_failed")
            await asyncio.sleep(LEASE_TICK)

    async def stop(self, grace: float = 1.0) -> None:
        log.info("master_stopping", name=self.config.name)
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.manager is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.manager.stop)
        if self.controller_process is not None:
            await self.controller_process.stop()
        if self.local_api is not None:
            await self.local_api.stop(grace)
        await self.server.stop(grace)
        await self.http.stop()
        if hasattr(self, "dashboard"):
            self.dashboard.close()
        await self.forwarder.close()
        self.audit.close()
        await asyncio.get_running_loop().run_in_executor(None, self.replica.stop)
        # A fence that won the race with the flag above may have started controllers since.
        if self.manager is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.manager.stop)
        log.info("master_stopped", name=self.config.name)
