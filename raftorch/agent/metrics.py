"""An agent's metrics for Prometheus, served on its own small HTTP port.

Events on the agent's paths (a container start, a runtime call, a probe failure, a rule sync)
update pre-bound counters and histograms; the containers by state are counted from the last
statuses the reconciler computed, when Prometheus scrapes.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raftorch.agent.runtime.base import ContainerInfo, ContainerRuntime, ContainerSpec, PodStart
from raftorch.agent.usage import Reading
from raftorch.api.v1 import objects_pb2
from raftorch.rpc import is_loopback

log = structlog.get_logger("raftorch.agent")

STATES = ("waiting", "running", "terminated")
START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ContainerStates(Collector):
    def __init__(self, statuses: Callable[[], Mapping[str, objects_pb2.PodStatus]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(STATES, 0)
        for status in list(self.statuses().values()):
            for cs in status.container_statuses:
                state = cs.state.state if cs.state.state in counts else "waiting"
                counts[state] += 1
        family = GaugeMetricFamily("raftorch_agent_containers", "Pod containers on this node, by state.",
                                   labels=["state"])
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.pod_start_seconds = Histogram(
            "raftorch_agent_pod_start_duration_seconds",
            "From the agent first seeing a pod to all its containers running.", buckets=START_BUCKETS, registry=r)
        self.restarts = Counter("raftorch_agent_container_restarts", "Containers started again after they ended.",
                                registry=r)
        self.probe_failures = Counter("raftorch_agent_probe_failures", "Failed probes, by kind.", ["probe"],
                                      registry=r)
        self.runtime_seconds = Histogram("raftorch_agent_runtime_call_duration_seconds",
                                         "Time of a container runtime call, by call.", ["call"],
                                         buckets=CALL_BUCKETS, registry=r)
        self.runtime_errors = Counter("raftorch_agent_runtime_call_errors", "Runtime calls that failed, by call.",
                                      ["call"], registry=r)
        self.network_sync_seconds = Histogram("raftorch_agent_network_sync_duration_seconds",
                                              "Time to bring this node's service rules and routes up to date.",
                                              buckets=CALL_BUCKETS, registry=r)
        self.events = Counter("raftorch_agent_events", "Events about this node's pods, by outcome.", ["outcome"],
                              registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.addr = ""
        self.tls: tuple[Path, Path, Path] | None = None

    def watch_statuses(self, statuses: Callable[[], Mapping[str, objects_pb2.PodStatus]]) -> None:
        self.registry.register(_ContainerStates(statuses))

    def serve(self, addr: str, tls: tuple[Path, Path, Path] | None = None) -> None:
        """Serve /metrics on HOST:PORT ("" for none). A taken port is logged, not fatal:
        metrics never keep a node from running its pods.

        Nothing answers a stranger: off loopback, with `tls` (the cluster CA, the node's
        certificate and key files), it is HTTPS and wants a client certificate from the cluster
        CA (Prometheus's `tls_config` with `raftctl pki issue`). Without `tls` (--insecure
        masters, benchmarks) it stays plain, as the rest of such a cluster."""
        if not addr:
            return
        host, _, port = addr.rpartition(":")
        secure = tls is not None and not is_loopback(addr)
        files: dict[str, Any] = {}
        if secure:
            assert tls is not None
            ca, cert, key = (str(p) for p in tls)
            files = {"certfile": cert, "keyfile": key, "client_cafile": ca, "client_auth_required": True}
        try:
            self._server, self._thread = start_http_server(int(port), host, registry=self.registry, **files)
        except OSError as exc:
            log.warning("metrics_unavailable", metrics_addr=addr,
                        error="address in use" if exc.errno == errno.EADDRINUSE else exc.strerror)
            return
        self.port = int(self._server.server_address[1])
        self.addr = addr
        self.tls = tls
        log.info("metrics_serving", metrics_addr=f"{host}:{self.port}", https=secure)

    def reload(self) -> None:
        """Serve again with the certificate files as they are now (after a renewal)."""
        if self._server is None or self.tls is None or is_loopback(self.addr):
            return
        self.close()
        host = self.addr.rpartition(":")[0]
        self.serve(f"{host}:{self.port}", self.tls)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MeasuredRuntime:
    """A container runtime whose calls are timed; everything else passes through."""

    def __init__(self, runtime: ContainerRuntime, metrics: AgentMetrics) -> None:
        self._runtime = runtime
        self.name = runtime.name
        self._calls = {name: (metrics.runtime_seconds.labels(name), metrics.runtime_errors.labels(name))
                       for name in ("list_containers", "ensure_image", "create_and_start", "start_pod", "stop",
                                    "remove", "exec")}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        seconds, errors = self._calls[name]
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception:
            errors.inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    def list_containers(self, node: str) -> list[ContainerInfo]:
        result: list[ContainerInfo] = self._timed("list_containers", self._runtime.list_containers, node)
        return result

    def ensure_image(self, image: str, policy: str) -> None:
        self._timed("ensure_image", self._runtime.ensure_image, image, policy)

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        result: ContainerInfo = self._timed("create_and_start", self._runtime.create_and_start, spec)
        return result

    def start_pod(self, sandbox: ContainerSpec, containers: Sequence[ContainerSpec]) -> PodStart:
        """The runtime's `StartsPods.start_pod` (only call it when the runtime has one)."""
        result: PodStart = self._timed("start_pod", self._runtime.start_pod, sandbox, containers)  # type: ignore[attr-defined]
        return result

    def stop(self, container_id: str, grace_seconds: float) -> None:
        self._timed("stop", self._runtime.stop, container_id, grace_seconds)

    def remove(self, container_id: str) -> None:
        self._timed("remove", self._runtime.remove, container_id)

    def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        code: int = self._timed("exec", self._runtime.exec, container_id, command, timeout)
        return code

    def usage(self, container_id: str) -> Reading | None:
        """The container's CPU and memory reading, where the runtime can tell."""
        read = getattr(self._runtime, "usage", None)
        return None if read is None else read(container_id)

    def image_present(self, image: str) -> bool:
        """Whether the image is here already (runtimes without images: always)."""
        check = getattr(self._runtime, "image_present", None)
        return True if check is None else bool(check(image))

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        return self._runtime.logs(container_id, tail, follow)
