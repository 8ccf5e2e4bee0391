"""The agent's executor: carries out the pod reconciler's plans against a container runtime.

Threads: heartbeats (one stream to a master, moved to another when it fails), the watch of
this node's pods, the reconcile loop (plan, act, probe, report), and the agent endpoint
(logs) for the masters. All decisions are made by `plan_pod_actions`; this module only does
what the plan says and feeds outcomes back.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import structlog

from raftorch import rpc
from raftorch.agent.certs import NodeCert, Renewer
from raftorch.agent.certs import paths as cert_paths
from raftorch.agent.config import AgentConfig
from raftorch.agent.endpoint import NodeAgentEndpoint
from raftorch.agent.endpoint import serve as serve_endpoint
from raftorch.agent.events import AgentEvents
from raftorch.agent.metrics import AgentMetrics, MeasuredRuntime
from raftorch.agent.network import NodeNetwork
from raftorch.agent.probes import run_probe
from raftorch.agent.reconciler import (
    CRASH_LOOP_BACK_OFF,
    AgentPodState,
    ReconcileConfig,
    RemoveContainer,
    StartContainer,
    StopContainer,
    due_probes,
    plan_pod_actions,
    record_probe,
    record_start_failure,
)
from raftorch.agent.runtime.base import (
    ChangeWatch,
    ContainerRuntime,
    ContainerSpec,
    RuntimeFailure,
    StartsPods,
    WatchesChanges,
    start_in_order,
)
from raftorch.agent.usage import Reading, build_usage, node_cpu_ns, node_memory
from raftorch.agent.volumes import PodVolumes, needs_inputs
from raftorch.api.v1 import agents_pb2, objects_pb2
from raftorch.auth.master_only import MasterOnlyInterceptor
from raftorch.client import Client
from raftorch.client.objects import ObjectWatch
from raftorch.errors import AlreadyExists, Conflict, RaftorchError
from raftorch.objects import MIRROR_ANNOTATION, format_time, is_mirror

log = structlog.get_logger("raftorch.agent")

SYSTEM_NAMESPACE = "raftorch-system"
RECONCILE_PERIOD = 0.5
# Volumes of pods that are gone (and have no container left) are removed this often (seconds).
VOLUME_CLEANUP_PERIOD = 5.0
# With the runtime's change events, a pass is also due after each exit; this is a resync only.
RECONCILE_PERIOD_WITH_EVENTS = 2.0
VERSION = "0.1.0"


def _only_status_changed(old: objects_pb2.Pod, new: objects_pb2.Pod) -> bool:
    return (old.spec == new.spec and old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
            and old.status.phase == new.status.phase)


def host_capacity() -> dict[str, str]:
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": str(os.cpu_count() or 1), "memory": str(memory or 1 << 30), "pods": "110"}


class Agent:
    def __init__(self, config: AgentConfig, runtime: ContainerRuntime, cert: NodeCert | None = None) -> None:
        """`cert`: the node's certificate (see raftorch.agent.certs); None only against
        --insecure masters (benchmarks)."""
        self.config = config
        self.metrics = AgentMetrics()
        self._inner_runtime = runtime
        self.runtime = MeasuredRuntime(runtime, self.metrics)
        self.cert = cert
        self.client = Client(config.masters, timeout=5.0, retry_for=30.0,
                             credentials=cert.credentials() if cert is not None else None)
        # Reads of ConfigMaps and Secrets happen on the reconcile thread: a short retry keeps a
        # master outage from stalling it (the last values read stay in use meanwhile).
        self._config_client = Client(config.masters, timeout=2.0, retry_for=2.0,
                                     credentials=cert.credentials() if cert is not None else None)
        self._renewer: Renewer | None = None
        self._fresh_tls: rpc.ServerTLS | None = None
        self._conn = self.client._conn
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pods: dict[str, objects_pb2.Pod] = {}
        self._pods_lock = threading.Lock()
        # No reconcile before the pod list arrived: every running container would look orphaned.
        self._pods_synced = threading.Event()
        self._reported: dict[str, bytes] = {}
        self._stopping: set[str] = set()
        self._stopper = ThreadPoolExecutor(max_workers=8, thread_name_prefix="agent-stop")
        # Container starts run in parallel. A start in flight, or finished after the last list of
        # containers, is handed to the planner (it neither repeats it nor removes its container as
        # half-made); failures come back as a queue.
        self._start_lock = threading.Lock()
        self._starting: set[tuple[str, str]] = set()
        self._started_at: dict[tuple[str, str], float] = {}  # when each start finished
        self._starter = ThreadPoolExecutor(max_workers=config.start_concurrency, thread_name_prefix="agent-start")
        self._start_failures: list[tuple[StartContainer, str, str, float]] = []
        self._changes: ChangeWatch | None = None
        self._period = RECONCILE_PERIOD
        self._threads: list[threading.Thread] = []
        self._watch: ObjectWatch | None = None
        self._server: grpc.Server | None = None
        self.state = AgentPodState()
        # Only Docker can put a pod's containers in one network namespace (see the process runtime).
        sandbox_image = config.sandbox_image if runtime.name == "docker" and config.sandbox_image else None
        self.rconfig = ReconcileConfig(node=config.name, host_ip=config.node_ip, backoff_base=config.backoff_base,
                                       sandbox_image=sandbox_image)
        self.volumes = PodVolumes(config.data_dir / "pods", config.name, self._fetch_config, runtime)
        self._volumes_cleaned = 0.0
        self.endpoint = f"{config.node_ip}:{config.agent_port}"
        self.network: NodeNetwork | None = None
        self.pod_cidr = ""
        # For metrics: the last statuses planned, and when each pod was first seen until it ran.
        self._statuses: Mapping[str, objects_pb2.PodStatus] = {}
        self._first_seen: dict[str, float] = {}
        self.events = AgentEvents(config.name, self._send_events, self.metrics.events)
        # (pod uid, container, restart count) whose back-off has its event already.
        self._backoffs: set[tuple[str, str, int]] = set()
        self.metrics.watch_statuses(lambda: self._statuses)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.metrics.serve(self.config.metrics_addr, None if self.cert is None else
                           cert_paths(self.config.pki_dir or self.config.data_dir / "pki"))
        self._serve_endpoint()
        if self.cert is not None:
            self._renewer = Renewer(self.config.masters, self.config.pki_dir or self.config.data_dir / "pki",
                                    self.config.name, self.config.node_ip, self.cert, self._renewed)
            self._renewer.start()
        self.register()
        self._start_network()
        self._start_sandbox_pool()
        self.events.start()
        if isinstance(self._inner_runtime, WatchesChanges):
            self._changes = self._inner_runtime.watch_changes(self.config.name, self._wake.set)
            self._period = RECONCILE_PERIOD_WITH_EVENTS
        for target in (self._heartbeat_loop, self._watch_loop, self._reconcile_loop, self._usage_loop):
            t = threading.Thread(target=target, name=f"agent-{target.__name__.strip('_')}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("agent_started", node=self.config.name, runtime=self.config.runtime, endpoint=self.endpoint,
                 masters=self.config.masters)

    def _renewed(self, cert: NodeCert) -> None:
        """A renewed certificate: new connections to masters and to this endpoint use it;
        pods and their containers are not touched."""
        self.cert = cert
        self._fresh_tls = cert.server_tls()
        self._conn.set_credentials(cert.credentials())
        self.metrics.reload()
        self._config_client._conn.set_credentials(cert.credentials())

    def _endpoint_tls(self) -> rpc.ServerTLS | None:
        fresh, self._fresh_tls = self._fresh_tls, None
        return fresh

    def stop(self) -> None:
        """Stop the agent; the pods' containers keep running (a restarted agent adopts them)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.stop()
        if self.network is not None:
            self.network.stop()
        self._wake.set()
        if self._watch is not None:
            self._watch.close()
        for t in self._threads:
            t.join(timeout=5)
        if self._changes is not None:
            self._changes.close()
        stop_pool = getattr(self._inner_runtime, "stop_sandbox_pool", None)
        if stop_pool is not None:
            stop_pool()  # its containers stay for the next agent
        self._stopper.shutdown(wait=False, cancel_futures=True)
        self._starter.shutdown(wait=False, cancel_futures=True)
        if self._server is not None:
            self._server.stop(1).wait(2)
        self.events.stop()
        self.client.close()
        self.metrics.close()
        self._config_client.close()
        log.info("agent_stopped", node=self.config.name)

    def wait(self) -> None:
        self._stop.wait()

    # -- registration and heartbeats ------------------------------------------------------

    def register(self) -> None:
        cfg = self.config
        capacity = host_capacity()
        node = objects_pb2.Node(
            metadata=objects_pb2.ObjectMeta(name=cfg.name, labels={"kubernetes.io/hostname": cfg.name, **cfg.labels}),
            status=objects_pb2.NodeStatus(
                capacity=capacity, allocatable=capacity, runtime=cfg.runtime, agent_version=VERSION,
                agent_endpoint=self.endpoint,
                addresses=[objects_pb2.NodeAddress(type="InternalIP", address=cfg.node_ip),
                           objects_pb2.NodeAddress(type="Hostname", address=cfg.name)]))
        req = agents_pb2.RegisterNodeRequest(node=node)
        while not self._stop.is_set():
            try:
                registered: objects_pb2.Node = self._conn.call(lambda s, t: s.agents.RegisterNode(req, timeout=t))
                self.pod_cidr = registered.spec.pod_cidr
                log.info("node_registered", node=cfg.name, pod_cidr=registered.spec.pod_cidr)
                break
            except RaftorchError as err:
                log.warning("register_retry", error=str(err))
                self._stop.wait(1.0)
        self._ensure_mirror_pod()

    def _start_network(self) -> None:
        """The pod network (a Docker bridge on the node's pod CIDR) and the service rules."""
        cfg = self.config
        if cfg.runtime == "docker" and self.pod_cidr:
            from raftorch.net import ensure_docker_network, remove_docker_network

            client = getattr(self.runtime, "client", None)
            if client is not None:
                wanted = f"raftorch-{cfg.name}"
                try:
                    name = ensure_docker_network(client, wanted, self.pod_cidr)
                except Conflict:
                    # Left from an earlier cluster with another CIDR: its pods are gone too.
                    log.warning("pod_network_replaced", network=wanted, pod_cidr=self.pod_cidr)
                    remove_pool = getattr(self._inner_runtime, "remove_sandbox_pool", None)
                    if remove_pool is not None:
                        remove_pool(cfg.name)
                    for container in self.runtime.list_containers(cfg.name):
                        self.runtime.stop(container.id, 0)
                        self.runtime.remove(container.id)
                    remove_docker_network(client, wanted)
                    name = ensure_docker_network(client, wanted, self.pod_cidr)
                # Pods of one container run without a sandbox, at addresses of this CIDR.
                self.rconfig = replace(self.rconfig, network=name, pod_cidr=self.pod_cidr)
        self.network = NodeNetwork(self.client, cfg.name, cfg.node_ip, cfg.network_mode, cfg.cluster_cidr,
                                   on_sync=self.metrics.network_sync_seconds.observe)
        try:
            self.network.start()
        except RaftorchError as err:
            if cfg.network_mode != "iptables":
                raise
            log.warning("iptables_unusable_falling_back_to_userspace", error=str(err))
            self.network = NodeNetwork(self.client, cfg.name, cfg.node_ip, "userspace", cfg.cluster_cidr,
                                       on_sync=self.metrics.network_sync_seconds.observe)
            self.network.start()

    def _start_sandbox_pool(self) -> None:
        """Started sandboxes kept ahead on the pod network (`sandbox_pool`; 0 removes any left)."""
        start_pool = getattr(self._inner_runtime, "start_sandbox_pool", None)
        if start_pool is None or not self.rconfig.sandbox_image or not self.rconfig.network:
            return
        try:
            start_pool(self.config.name, self.rconfig.network, self.rconfig.sandbox_image, self.config.sandbox_pool)
        except RaftorchError as err:
            log.warning("sandbox_pool_failed", error=str(err))

    def _ensure_mirror_pod(self) -> None:
        """The agent shows up in `get pods -A` as a running system component."""
        now = format_time(time.time())
        pod = objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(name=f"agent-{self.config.name}", namespace=SYSTEM_NAMESPACE,
                                            labels={"component": "raftorch-agent"},
                                            annotations={MIRROR_ANNOTATION: "true"}),
            spec=objects_pb2.PodSpec(node_name=self.config.name, containers=[objects_pb2.Container(
                name="agent", image=f"raftorch-agent:{VERSION}")]))
        try:
            created = self.client.objects.create(pod)
        except AlreadyExists:
            created = self.client.objects.get("pods", pod.metadata.name, SYSTEM_NAMESPACE)
        except RaftorchError as err:
            log.warning("mirror_pod_failed", error=str(err))
            return
        assert isinstance(created, objects_pb2.Pod)
        status = objects_pb2.PodStatus(
            phase="Running", host_ip=self.config.node_ip, pod_ip=self.config.node_ip, start_time=now,
            conditions=[objects_pb2.Condition(type="Ready", status="True", last_transition_time=now)],
            container_statuses=[objects_pb2.ContainerStatus(
                name="agent", ready=True, image=f"raftorch-agent:{VERSION}",
                state=objects_pb2.ContainerState(state="running", started_at=now))])
        self._report({created.metadata.uid: (created, status)})

    def _beats(self) -> Iterator[agents_pb2.HeartbeatRequest]:
        for seq in itertools.count(1):
            if self._stop.is_set():
                return
            yield agents_pb2.HeartbeatRequest(node=self.config.name, sequence=seq)
            self._stop.wait(self.config.heartbeat_period)

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            address = self._conn._candidate()
            try:
                for _ in self._conn.stubs(address).agents.Heartbeat(self._beats()):
                    pass
            except grpc.RpcError as exc:
                if not self._stop.is_set():
                    log.info("heartbeat_stream_moved", master=address, code=exc.code().name)
                self._conn._failed(address)
                self._stop.wait(0.2)

    # -- resource usage -------------------------------------------------------------------------

    def _usage_loop(self) -> None:
        """Sample CPU and memory every usage_period and report them (the first window is short)."""
        before: dict[str, Reading] | None = None
        before_cpu, before_at = 0, 0.0
        while not self._stop.is_set():
            try:
                containers = [c for c in self.runtime.list_containers(self.config.name) if c.running]
                readings = {c.id: r for c in containers if (r := self.runtime.usage(c.id)) is not None}
                node_cpu, at = node_cpu_ns(), time.monotonic()
                if before is not None:
                    usage = build_usage(self.config.name, containers, before, readings, at - before_at,
                                        (before_cpu, node_cpu), node_memory())
                    usage.timestamp = format_time(time.time())
                    self._send_usage(usage)
                first = before is None
                before, before_cpu, before_at = readings, node_cpu, at
            except RaftorchError as err:
                log.info("usage_report_failed", error=str(err))
                first = False
            self._stop.wait(1.0 if first else self.config.usage_period)

    def _send_usage(self, usage: agents_pb2.NodeUsage) -> None:
        self._conn.call(lambda s, t: s.agents.ReportUsage(usage, timeout=t))

    # -- pods ---------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        request = agents_pb2.WatchNodePodsRequest(node=self.config.name)
        while not self._stop.is_set():
            self._watch = ObjectWatch(self._conn, request, open_stream="agents")
            try:
                threading.Thread(target=self._mark_synced, args=(self._watch,), daemon=True).start()
                for event in self._watch:
                    pod = event.object
                    assert isinstance(pod, objects_pb2.Pod)
                    with self._pods_lock:
                        old = self._pods.get(pod.metadata.uid)
                        if event.type == "DELETED" or pod.spec.node_name != self.config.name:
                            self._pods.pop(pod.metadata.uid, None)
                        else:
                            self._pods[pod.metadata.uid] = pod
                    if event.type == "DELETED" or old is None or not _only_status_changed(old, pod):
                        self._wake.set()  # the echo of the agent's own status report plans nothing new
            except RaftorchError as err:
                if not self._stop.is_set():
                    log.warning("pod_watch_failed", error=str(err))
                    self._stop.wait(1.0)

    def _mark_synced(self, watch: ObjectWatch) -> None:
        while not self._stop.is_set():
            if watch.synced.wait(0.5):
                self._pods_synced.set()
                self._wake.set()
                return

    def desired(self) -> list[objects_pb2.Pod]:
        with self._pods_lock:
            return [p for p in self._pods.values() if not is_mirror(p)]

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set() and not self._pods_synced.wait(0.5):
            pass
        while not self._stop.is_set():
            wake_at = time.time() + self._period
            try:
                wake_at = min(wake_at, self.reconcile_once())
            except RaftorchError as err:
                log.warning("reconcile_failed", error=str(err))
            except Exception:
                log.exception("reconcile_crashed")
            self._wake.wait(max(0.0, wake_at - time.time()))
            self._wake.clear()

    def reconcile_once(self) -> float:
        desired = self.desired()
        listed_at = time.time()
        running = self.runtime.list_containers(self.config.name)
        now = time.time()
        with self._start_lock:
            for key, finished in list(self._started_at.items()):
                if finished < listed_at:
                    del self._started_at[key]
            starting = frozenset(self._starting | self._started_at.keys())
            failures, self._start_failures = self._start_failures, []
        for failed, reason, message, when in failures:
            self.state = record_start_failure(self.state, failed, reason, message, when, self.rconfig)
        inputs = {p.metadata.uid: self.volumes.prepare(p) for p in desired
                  if needs_inputs(p) and not p.metadata.deletion_timestamp
                  and p.status.phase not in ("Succeeded", "Failed")}
        plan = plan_pod_actions(desired, running, self.state, now, self.rconfig, starting, inputs)
        self.state = plan.state
        if now - self._volumes_cleaned >= VOLUME_CLEANUP_PERIOD:
            self._volumes_cleaned = now
            self.volumes.cleanup({p.metadata.uid for p in desired} | {c.pod_uid for c in running})
        for action in plan.actions:
            if isinstance(action, StopContainer):
                if action.container_id not in self._stopping:
                    self._killing_event(action)
                self._stop_async(action.container_id, action.grace_seconds, action.remove)
            elif isinstance(action, RemoveContainer):
                if action.before_starts and action.container_id not in self._stopping:
                    self.runtime.remove(action.container_id)
                else:
                    self._stop_async(action.container_id, None, True)
            elif isinstance(action, StartContainer):
                with self._start_lock:
                    self._starting.update((s.pod_uid, s.container) for s in (action.spec, *action.then))
                self._starter.submit(self._start_pod if action.then else self._start, action)
        for check in due_probes(desired, self.state, now):
            ok = run_probe(check.probe, check.pod_ip, check.container_id, self.runtime, check.named_ports)
            if not ok:
                self.metrics.probe_failures.labels(check.kind).inc()
                pod = next((p for p in desired if p.metadata.uid == check.pod_uid), None)
                if pod is not None:
                    self.events.emit(pod, "Unhealthy", f"{check.kind.capitalize()} probe failed for container "
                                                        f"{check.container}", "Warning")
            self.state = record_probe(self.state, check, ok, time.time())
        by_uid = {p.metadata.uid: p for p in desired}
        self._statuses = plan.statuses
        changed = {}
        for uid, status in plan.statuses.items():
            data = status.SerializeToString(deterministic=True)
            if uid in by_uid and self._reported.get(uid) != data:
                changed[uid] = (by_uid[uid], status)
                self._observe_start(uid, status, now)
                self._backoff_events(by_uid[uid], status)
        if changed:
            self._report(changed)
        for uid in list(self._reported):
            if uid not in by_uid:
                del self._reported[uid]
        for uid in list(self._first_seen):
            if uid not in by_uid:
                del self._first_seen[uid]
        return plan.wake_at or now + self._period

    def _backoff_events(self, pod: objects_pb2.Pod, status: objects_pb2.PodStatus) -> None:
        """BackOff once per restart of a crashing container: one event whose count rises."""
        for cs in status.container_statuses:
            if cs.state.state == "waiting" and cs.state.reason == CRASH_LOOP_BACK_OFF:
                key = (pod.metadata.uid, cs.name, cs.restart_count)
                if key not in self._backoffs:
                    self._backoffs.add(key)
                    self.events.emit(pod, "BackOff", f"Back-off restarting failed container {cs.name} in pod "
                                                     f"{pod.metadata.name}", "Warning")
        if len(self._backoffs) > 10_000:
            self._backoffs.clear()

    def _send_events(self, request: agents_pb2.ReportEventsRequest) -> object:
        return self._conn.call(lambda s, t: s.agents.ReportEvents(request, timeout=t))

    def _observe_start(self, uid: str, status: objects_pb2.PodStatus, now: float) -> None:
        """A pod's start latency, once: from first seen here to every container running."""
        seen = self._first_seen.get(uid)
        if seen is None:
            if status.phase != "Running":
                self._first_seen[uid] = now
            return
        if seen > 0 and status.container_statuses and all(
                cs.state.state == "running" for cs in status.container_statuses):
            self.metrics.pod_start_seconds.observe(max(0.0, now - seen))
            self._first_seen[uid] = 0.0  # observed; kept so that a restart is not a new start
    def _fetch_config(self, kind: str, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """A ConfigMap's or Secret's data by key (NotFound when it does not exist)."""
        plural = {"Secret": "secrets", "PersistentVolumeClaim": "persistentvolumeclaims"}.get(kind, "configmaps")
        msg = self._config_client.objects.get(plural, name, namespace)
        if isinstance(msg, objects_pb2.PersistentVolumeClaim):
            return {"uid": msg.metadata.uid.encode(), "node": msg.status.node_name.encode()}
        if isinstance(msg, objects_pb2.Secret):
            return dict(msg.data)
        if isinstance(msg, objects_pb2.ConfigMap):
            return {**{k: v.encode() for k, v in msg.data.items()}, **msg.binary_data}
        return None

    def _start(self, action: StartContainer) -> None:
        spec = action.spec
        failure: tuple[StartContainer, str, str, float] | None = None
        pod = self._pod(spec.pod_uid)
        try:
            self._pull(pod, spec.image, spec.pull_policy)
            self.runtime.create_and_start(spec)
            self._started(pod, spec)
        except RuntimeFailure as err:
            failure = self._start_failed(pod, action, err)
        except RaftorchError as err:
            log.warning("container_start_failed", pod=f"{spec.pod_namespace}/{spec.pod_name}",
                        container=spec.container, error=str(err))
        finally:
            self._start_done([spec], [failure] if failure is not None else [])

    def _start_pod(self, action: StartContainer) -> None:
        """A new sandbox and the containers that join it, in one go (`StartContainer.then`)."""
        spec = action.spec
        failures: list[tuple[StartContainer, str, str, float]] = []
        pod = self._pod(spec.pod_uid)
        try:
            ready: list[ContainerSpec] = []
            for joining in action.then:  # an image missing is the container's failure, not the sandbox's
                try:
                    self._pull(pod, joining.image, joining.pull_policy)
                    ready.append(joining)
                except RuntimeFailure as err:
                    failures.append(self._start_failed(pod, StartContainer(joining), err))
            self._pull(pod, spec.image, spec.pull_policy)
            if isinstance(self._inner_runtime, StartsPods):
                started = self.runtime.start_pod(spec, ready)
            else:
                started = start_in_order(self.runtime, spec, ready)
            self._started(pod, spec)
            for joining, result in zip(ready, started.containers, strict=True):
                if isinstance(result, RuntimeFailure):
                    joined = replace(joining, sandbox=started.sandbox.id)
                    failures.append(self._start_failed(pod, StartContainer(joined), result))
                else:
                    self._started(pod, joining)
        except RuntimeFailure as err:
            failures.append(self._start_failed(pod, action, err))
        except RaftorchError as err:
            log.warning("container_start_failed", pod=f"{spec.pod_namespace}/{spec.pod_name}",
                        container=spec.container, error=str(err))
        finally:
            self._start_done([spec, *action.then], failures)

    def _pod(self, uid: str) -> objects_pb2.Pod | None:
        with self._pods_lock:
            return self._pods.get(uid)

    def _started(self, pod: objects_pb2.Pod | None, spec: ContainerSpec) -> None:
        if spec.attempt > 0:
            self.metrics.restarts.inc()
        if pod is not None:
            self.events.emit(pod, "Created", f"Created container {spec.container}")
            self.events.emit(pod, "Started", f"Started container {spec.container}")
        log.info("container_started", pod=f"{spec.pod_namespace}/{spec.pod_name}", container=spec.container,
                 attempt=spec.attempt)

    def _start_failed(self, pod: objects_pb2.Pod | None, action: StartContainer, err: RuntimeFailure
                      ) -> tuple[StartContainer, str, str, float]:
        spec = action.spec
        log.warning("container_start_failed", pod=f"{spec.pod_namespace}/{spec.pod_name}",
                    container=spec.container, reason=err.reason, error=err.message)
        if pod is not None:
            self.events.emit(pod, "Failed", f"Error: {err.message}", "Warning")
        return action, err.reason, err.message, time.time()

    def _start_done(self, specs: list[ContainerSpec], failures: list[tuple[StartContainer, str, str, float]]) -> None:
        """Hand the starts back to the planner: finished (or failed), and wake it."""
        finished = time.time()
        with self._start_lock:
            self._start_failures.extend(failures)
            for spec in specs:
                key = (spec.pod_uid, spec.container)
                self._started_at[key] = finished
                self._starting.discard(key)
        self._wake.set()

    def _pull(self, pod: objects_pb2.Pod | None, image: str, policy: str) -> None:
        """ensure_image, with Kubernetes' Pulling / Pulled events."""
        if policy != "Always" and self.runtime.image_present(image):
            if pod is not None:
                self.events.emit(pod, "Pulled", f'Container image "{image}" already present on machine')
            return
        if pod is not None and policy != "Never":  # Never: ensure_image fails, with its Failed event
            self.events.emit(pod, "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        self.runtime.ensure_image(image, policy)
        if pod is not None:
            self.events.emit(pod, "Pulled", f'Successfully pulled image "{image}" in '
                                            f"{time.monotonic() - started:.3f}s")

    def _killing_event(self, action: StopContainer) -> None:
        with self._pods_lock:
            pod = self._pods.get(action.pod_uid)
        if pod is not None:
            self.events.emit(pod, "Killing", f"Stopping container {action.container}")

    def _stop_async(self, container_id: str, grace_seconds: float | None, remove: bool) -> None:
        """Stop (unless `grace_seconds` is None: only remove) and maybe remove, off the reconcile loop."""
        if container_id in self._stopping:
            return
        self._stopping.add(container_id)

        def run() -> None:
            try:
                if grace_seconds is not None:
                    self.runtime.stop(container_id, grace_seconds)
                if remove:
                    self.runtime.remove(container_id)
            except RaftorchError as err:
                log.warning("container_stop_failed", container=container_id, error=str(err))
            finally:
                self._stopping.discard(container_id)
                self._wake.set()

        self._stopper.submit(run)

    def _report(self, changed: dict[str, tuple[objects_pb2.Pod, objects_pb2.PodStatus]]) -> None:
        updates = [agents_pb2.PodStatusUpdate(namespace=pod.metadata.namespace, name=pod.metadata.name,
                                              uid=uid, status=status) for uid, (pod, status) in changed.items()]
        req = agents_pb2.ReportPodStatusRequest(node=self.config.name, updates=updates)
        try:
            self._conn.call(lambda s, t: s.agents.ReportPodStatus(req, timeout=t))
        except RaftorchError as err:
            log.warning("status_report_failed", error=str(err), pods=len(updates))
            return
        for uid, (_, status) in changed.items():
            self._reported[uid] = status.SerializeToString(deterministic=True)

    # -- the agent endpoint -------------------------------------------------------------------

    def _serve_endpoint(self) -> None:
        cert = self.cert
        guard = [] if cert is None else [MasterOnlyInterceptor()]
        self.endpoint_service = NodeAgentEndpoint(self._find_pod, self.runtime, self.config.name,
                                                  node_ip=self.config.node_ip)
        self._server, port = serve_endpoint(self.endpoint_service, f"{self.config.node_ip}:{self.config.agent_port}",
                                            interceptors=guard,
                                            tls=cert.server_tls() if cert is not None else None,
                                            reload=self._endpoint_tls)
        self.endpoint = f"{self.config.node_ip}:{port}"

    def _find_pod(self, namespace: str, name: str) -> objects_pb2.Pod | None:
        with self._pods_lock:
            return next((p for p in self._pods.values()
                         if p.metadata.namespace == namespace and p.metadata.name == name), None)
