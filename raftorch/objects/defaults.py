"""Defaults the masters fill in before storing an object, so stored objects say what they mean.

`apply_defaults` only fills fields that are empty, so it is idempotent and never overrides a
user's choice. Proto3 scalars have no presence, which forces two choices:

* `terminationGracePeriodSeconds: 0` means "the default, 30 seconds". An immediate kill is
  asked for on the delete (a grace period override), not in the spec; the shortest grace a
  spec can ask for is 1 second.
* A ReplicaSet's `replicas` (not `optional`) stays 0 when absent; only a Deployment, whose
  `replicas` is `optional`, defaults to 1.
"""

from __future__ import annotations

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.objects.kinds import kind_of_message, unwrap
from raftorch.objects.meta import meta
from raftorch.objects.workloads import default_cron_job, default_daemon_set, default_job_spec

__all__ = [
    "DEFAULT_NAMESPACE",
    "apply_defaults",
    "default_pod_spec",
]

DEFAULT_NAMESPACE = "default"
DEFAULT_RESTART_POLICY = "Always"
# Not "Always" even for ":latest" images as Kubernetes does: agents may run on offline hosts.
DEFAULT_IMAGE_PULL_POLICY = "IfNotPresent"
DEFAULT_PROTOCOL = "TCP"
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_PROBE_PERIOD_SECONDS = 10
DEFAULT_PROBE_TIMEOUT_SECONDS = 1
DEFAULT_PROBE_SUCCESS_THRESHOLD = 1
DEFAULT_PROBE_FAILURE_THRESHOLD = 3
DEFAULT_REPLICAS = 1
DEFAULT_STRATEGY = "RollingUpdate"
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_SERVICE_TYPE = "ClusterIP"
DEFAULT_NAMESPACE_PHASE = "Active"


def apply_defaults(msg: objects_pb2.Object | Message) -> None:
    """Fill the empty fields of an object (or of the object inside an `Object`) in place."""
    kind, msg = unwrap(msg) if isinstance(msg, objects_pb2.Object) else (kind_of_message(msg), msg)
    metadata = meta(msg)
    # Cluster-scoped kinds keep whatever namespace they carry, for validation to reject.
    if kind.namespaced and not metadata.namespace:
        metadata.namespace = DEFAULT_NAMESPACE
    if isinstance(msg, objects_pb2.Pod):
        default_pod_spec(msg.spec)
    elif isinstance(msg, objects_pb2.Deployment):
        _deployment(msg.spec)
    elif isinstance(msg, objects_pb2.ReplicaSet):
        default_pod_spec(msg.spec.template.spec)
    elif isinstance(msg, objects_pb2.Service):
        _service(msg.spec)
    elif isinstance(msg, objects_pb2.Endpoints):
        for subset in msg.subsets:
            for port in subset.ports:
                port.protocol = port.protocol or DEFAULT_PROTOCOL
    elif isinstance(msg, objects_pb2.Namespace):
        msg.status.phase = msg.status.phase or DEFAULT_NAMESPACE_PHASE
    elif isinstance(msg, objects_pb2.Job):
        default_job_spec(msg.spec, metadata.name)
    elif isinstance(msg, objects_pb2.CronJob):
        default_cron_job(msg.spec)
    elif isinstance(msg, objects_pb2.DaemonSet):
        default_daemon_set(msg.spec)
    elif isinstance(msg, objects_pb2.PersistentVolumeClaim):
        if not msg.spec.access_modes:
            msg.spec.access_modes.append("ReadWriteOnce")
        msg.status.phase = msg.status.phase or "Pending"
    elif isinstance(msg, objects_pb2.Secret):
        # stringData is write-only, as in Kubernetes: merged into data, over it.
        for key, value in msg.string_data.items():
            msg.data[key] = value.encode()
        msg.ClearField("string_data")
        msg.type = msg.type or "Opaque"


def default_pod_spec(spec: objects_pb2.PodSpec) -> None:
    spec.restart_policy = spec.restart_policy or DEFAULT_RESTART_POLICY
    if spec.termination_grace_period_seconds == 0:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    for container in spec.containers:
        container.image_pull_policy = container.image_pull_policy or DEFAULT_IMAGE_PULL_POLICY
        for port in container.ports:
            port.protocol = port.protocol or DEFAULT_PROTOCOL
        if container.HasField("liveness_probe"):
            _probe(container.liveness_probe)
        if container.HasField("readiness_probe"):
            _probe(container.readiness_probe)


def _probe(probe: objects_pb2.Probe) -> None:
    probe.period_seconds = probe.period_seconds or DEFAULT_PROBE_PERIOD_SECONDS
    probe.timeout_seconds = probe.timeout_seconds or DEFAULT_PROBE_TIMEOUT_SECONDS
    probe.success_threshold = probe.success_threshold or DEFAULT_PROBE_SUCCESS_THRESHOLD
    probe.failure_threshold = probe.failure_threshold or DEFAULT_PROBE_FAILURE_THRESHOLD
    if probe.HasField("http_get"):
        probe.http_get.path = probe.http_get.path or "/"
        probe.http_get.scheme = probe.http_get.scheme or "HTTP"


def _deployment(spec: objects_pb2.DeploymentSpec) -> None:
    if not spec.HasField("replicas"):
        spec.replicas = DEFAULT_REPLICAS
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    strategy = spec.strategy
    strategy.type = strategy.type or DEFAULT_STRATEGY
    if strategy.type == DEFAULT_STRATEGY:
        rolling = strategy.rolling_update
        rolling.max_surge = rolling.max_surge or DEFAULT_MAX_SURGE
        rolling.max_unavailable = rolling.max_unavailable or DEFAULT_MAX_UNAVAILABLE
    default_pod_spec(spec.template.spec)


def _service(spec: objects_pb2.ServiceSpec) -> None:
    spec.type = spec.type or DEFAULT_SERVICE_TYPE
    for port in spec.ports:
        port.protocol = port.protocol or DEFAULT_PROTOCOL
        if not port.target_port and port.port:
            port.target_port = str(port.port)
