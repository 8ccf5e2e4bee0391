"""Liveness and readiness probes: running one (`run_probe`) and judging a series (`ProbeTracker`).

`run_probe` does the I/O: an exec in the container (exit 0), an HTTP GET (2xx or 3xx, redirects
not followed, certificates not checked, like Kubernetes) or a TCP connect, each within the
probe's timeout. Any error counts as a failure, never as an exception.

`ProbeTracker` is pure: results and times in, a new tracker out. A probe first runs
`initial_delay` after the container started, then every `period`; `success_threshold`
consecutive successes make it pass, `failure_threshold` consecutive failures make it fail.
A readiness probe starts failing (not ready until proven), a liveness probe starts passing.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace

from raftorch.agent.runtime.base import ContainerRuntime
from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid, RaftorchError
from raftorch.objects.defaults import (
    DEFAULT_PROBE_FAILURE_THRESHOLD,
    DEFAULT_PROBE_PERIOD_SECONDS,
    DEFAULT_PROBE_SUCCESS_THRESHOLD,
    DEFAULT_PROBE_TIMEOUT_SECONDS,
)

__all__ = ["LIVENESS", "READINESS", "ProbeSettings", "ProbeTracker", "probe_port", "run_probe"]

LIVENESS = "liveness"
READINESS = "readiness"


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    initial_delay: float = 0.0
    period: float = DEFAULT_PROBE_PERIOD_SECONDS
    timeout: float = DEFAULT_PROBE_TIMEOUT_SECONDS
    success_threshold: int = DEFAULT_PROBE_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_PROBE_FAILURE_THRESHOLD

    @classmethod
    def from_proto(cls, probe: objects_pb2.Probe) -> ProbeSettings:
        """Zero means the default, as in `apply_defaults`, so undefaulted probes work too."""
        return cls(initial_delay=float(max(probe.initial_delay_seconds, 0)),
                   period=float(probe.period_seconds or DEFAULT_PROBE_PERIOD_SECONDS),
                   timeout=float(probe.timeout_seconds or DEFAULT_PROBE_TIMEOUT_SECONDS),
                   success_threshold=probe.success_threshold or DEFAULT_PROBE_SUCCESS_THRESHOLD,
                   failure_threshold=probe.failure_threshold or DEFAULT_PROBE_FAILURE_THRESHOLD)


@dataclass(frozen=True, slots=True)
class ProbeTracker:
    """The probe state of one probe of one container (`container_id`); a new container gets a new one."""

    kind: str  # LIVENESS or READINESS
    settings: ProbeSettings
    container_id: str
    started_at: float
    passing: bool
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    last_run: float | None = None

    @classmethod
    def start(cls, kind: str, settings: ProbeSettings, container_id: str, started_at: float,
              passing: bool | None = None) -> ProbeTracker:
        """`passing` overrides the initial verdict, e.g. readiness already reported for an adopted container."""
        if kind not in (LIVENESS, READINESS):
            raise Invalid(f"probe kind: must be {LIVENESS} or {READINESS}, got {kind!r}")
        return cls(kind, settings, container_id, started_at, kind == LIVENESS if passing is None else passing)

    @property
    def next_due(self) -> float:
        if self.last_run is None:
            return self.started_at + self.settings.initial_delay
        return self.last_run + self.settings.period

    def due(self, now: float) -> bool:
        return now >= self.next_due

    @property
    def failed(self) -> bool:
        """For liveness: the container should be restarted."""
        return not self.passing

    def record(self, ok: bool, now: float) -> ProbeTracker:
        if ok:
            successes = self.successes + 1
            passing = self.passing or successes >= self.settings.success_threshold
            return replace(self, successes=successes, failures=0, passing=passing, last_run=now)
        failures = self.failures + 1
        passing = self.passing and failures < self.settings.failure_threshold
        return replace(self, successes=0, failures=failures, passing=passing, last_run=now)


def probe_port(port: str, named: Mapping[str, int]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if port.isdigit():
        return int(port)
    if port in named:
        return named[port]
    raise Invalid(f"probe port {port!r}: not a number nor a named port of the container")


def run_probe(probe: objects_pb2.Probe, pod_ip: str, container_id: str, runtime: ContainerRuntime,
              named_ports: Mapping[str, int] | None = None) -> bool:
    """Run the probe once: whether it succeeded. Errors of any kind are failures."""
    timeout = float(probe.timeout_seconds or DEFAULT_PROBE_TIMEOUT_SECONDS)
    ports = named_ports or {}
    try:
        if probe.HasField("exec"):
            return runtime.exec(container_id, list(probe.exec.command), timeout) == 0
        if probe.HasField("http_get"):
            action = probe.http_get
            return _http_get(action.host or pod_ip, probe_port(action.port, ports), action.path or "/",
                             action.scheme.upper() == "HTTPS", timeout)
        if probe.HasField("tcp_socket"):
            with socket.create_connection((probe.tcp_socket.host or pod_ip,
                                           probe_port(probe.tcp_socket.port, ports)), timeout=timeout):
                return True
    except (OSError, RaftorchError, http.client.HTTPException):
        return False
    raise Invalid("probe: needs one of exec, httpGet or tcpSocket")


def _http_get(host: str, port: int, path: str, https: bool, timeout: float) -> bool:
    conn: http.client.HTTPConnection
    if https:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path if path.startswith("/") else f"/{path}",
                     headers={"User-Agent": "raftorch-probe/1.0", "Accept": "*/*"})
        status = conn.getresponse().status
    finally:
        conn.close()
    return 200 <= status < 400
