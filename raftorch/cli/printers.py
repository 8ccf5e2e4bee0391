"""kubectl's table columns for each kind: pure functions of an object and the time now."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import (
    CONFIG_MAP,
    CRON_JOB,
    DAEMON_SET,
    DEPLOYMENT,
    ENDPOINTS,
    EVENT,
    JOB,
    NAMESPACE,
    NODE,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    REPLICA_SET,
    SECRET,
    SERVICE,
    Kind,
    get_condition,
    parse_time,
)

NONE = "<none>"
UNKNOWN = "<unknown>"
MAX_ENDPOINTS_SHOWN = 3
ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"


def human_duration(seconds: float) -> str:
    """kubectl's AGE: 45s, 3m20s, 15m, 5h30m, 20h, 4d6h, 30d, 2y100d."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def age(timestamp: str, now: float) -> str:
    if not timestamp:
        return UNKNOWN
    try:
        return human_duration(now - parse_time(timestamp))
    except Invalid:
        return UNKNOWN


def labels_text(labels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels)) or NONE


# -- pods -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodSummary:
    ready: str  # "1/2"
    status: str  # Running, CrashLoopBackOff, ErrImagePull, Terminating, Completed, ...
    restarts: str  # "3" or "3 (2m ago)"


def pod_summary(pod: objects_pb2.Pod, now: float) -> PodSummary:
    """READY, STATUS and RESTARTS as kubectl computes them (its printPod)."""
    reason = pod.status.reason or pod.status.phase or "Pending"
    ready = restarts = 0
    last_restart = ""
    has_running = False
    initializing = False
    for i, cs in enumerate(pod.status.init_container_statuses):
        restarts += cs.restart_count
        state = cs.state
        if state.state == "terminated" and state.exit_code == 0:
            continue
        initializing = True
        if state.state == "terminated":
            reason = "Init:" + (state.reason or f"ExitCode:{state.exit_code}")
        elif state.state == "waiting" and state.reason and state.reason != "PodInitializing":
            reason = "Init:" + state.reason
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        break
    # In reverse, so the first container's state wins, as kubectl's loop does.
    for cs in reversed(pod.status.container_statuses if not initializing else ()):
        restarts += cs.restart_count
        if cs.last_state.state == "terminated" and cs.last_state.finished_at > last_restart:
            last_restart = cs.last_state.finished_at
        state = cs.state
        if state.state == "waiting" and state.reason:
            reason = state.reason
        elif state.state == "terminated":
            reason = state.reason or f"ExitCode:{state.exit_code}"
        elif cs.ready and state.state == "running":
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        condition = get_condition(pod.status.conditions, "Ready")
        reason = "Running" if condition is not None and condition.status == "True" else "NotReady"
    if pod.metadata.deletion_timestamp:
        reason = "Unknown" if pod.status.reason == "NodeLost" else "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart:
        restarts_text += f" ({age(last_restart, now)} ago)"
    return PodSummary(f"{ready}/{len(pod.spec.containers)}", reason, restarts_text)


# -- rows per kind -----------------------------------------------------------------------------


def _pod(pod: objects_pb2.Pod, now: float, wide: bool) -> list[str]:
    s = pod_summary(pod, now)
    row = [pod.metadata.name, s.ready, s.status, s.restarts, age(pod.metadata.creation_timestamp, now)]
    if wide:
        row += [pod.status.pod_ip or NONE, pod.spec.node_name or NONE]
    return row


def _images(template: objects_pb2.PodTemplateSpec, selector: objects_pb2.LabelSelector) -> list[str]:
    containers = template.spec.containers
    return [",".join(c.name for c in containers) or NONE, ",".join(c.image for c in containers) or NONE,
            labels_text(selector.match_labels.items())]


def _deployment(d: objects_pb2.Deployment, now: float, wide: bool) -> list[str]:
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    row = [d.metadata.name, f"{d.status.ready_replicas}/{desired}", str(d.status.updated_replicas),
           str(d.status.available_replicas), age(d.metadata.creation_timestamp, now)]
    return row + (_images(d.spec.template, d.spec.selector) if wide else [])


def _replica_set(rs: objects_pb2.ReplicaSet, now: float, wide: bool) -> list[str]:
    row = [rs.metadata.name, str(rs.spec.replicas), str(rs.status.replicas), str(rs.status.ready_replicas),
           age(rs.metadata.creation_timestamp, now)]
    return row + (_images(rs.spec.template, rs.spec.selector) if wide else [])


def service_ports(spec: objects_pb2.ServiceSpec) -> str:
    """kubectl's PORT(S): "80/TCP", "8080:31234/TCP"."""
    parts = []
    for p in spec.ports:
        node = f":{p.node_port}" if p.node_port else ""
        parts.append(f"{p.port}{node}/{p.protocol or 'TCP'}")
    return ",".join(parts) or NONE


def _service(svc: objects_pb2.Service, now: float, wide: bool) -> list[str]:
    row = [svc.metadata.name, svc.spec.type or "ClusterIP", svc.spec.cluster_ip or NONE, service_ports(svc.spec),
           age(svc.metadata.creation_timestamp, now)]
    return row + ([labels_text(svc.spec.selector.items())] if wide else [])


def node_status(node: objects_pb2.Node) -> str:
    condition = get_condition(node.status.conditions, "Ready")
    status = "Unknown" if condition is None else "Ready" if condition.status == "True" else "NotReady"
    return status + (",SchedulingDisabled" if node.spec.unschedulable else "")


def node_roles(node: objects_pb2.Node) -> str:
    roles = sorted(k[len(ROLE_LABEL_PREFIX):] for k in node.metadata.labels if k.startswith(ROLE_LABEL_PREFIX))
    return ",".join(r for r in roles if r) or NONE


def _address(node: objects_pb2.Node, kind: str) -> str:
    return next((a.address for a in node.status.addresses if a.type == kind), NONE)


def _node(node: objects_pb2.Node, now: float, wide: bool) -> list[str]:
    row = [node.metadata.name, node_status(node), node_roles(node), age(node.metadata.creation_timestamp, now),
           node.status.agent_version or NONE]
    if wide:
        row += [_address(node, "InternalIP"), node.status.runtime or NONE]
    return row


def endpoints_text(ep: objects_pb2.Endpoints) -> str:
    """kubectl's ENDPOINTS: "10.244.1.5:80,10.244.2.3:80 + 2 more..."."""
    items: list[str] = []
    for subset in ep.subsets:
        for address in subset.addresses:
            items += [f"{address.ip}:{port.port}" for port in subset.ports] or [address.ip]
    if not items:
        return NONE
    shown = ",".join(items[:MAX_ENDPOINTS_SHOWN])
    more = len(items) - MAX_ENDPOINTS_SHOWN
    return f"{shown} + {more} more..." if more > 0 else shown


def _endpoints(ep: objects_pb2.Endpoints, now: float, wide: bool) -> list[str]:
    return [ep.metadata.name, endpoints_text(ep), age(ep.metadata.creation_timestamp, now)]


def _namespace(ns: objects_pb2.Namespace, now: float, wide: bool) -> list[str]:
    return [ns.metadata.name, ns.status.phase or "Active", age(ns.metadata.creation_timestamp, now)]


def event_time(ev: objects_pb2.Event) -> str:
    return ev.last_timestamp or ev.first_timestamp or ev.metadata.creation_timestamp


def event_order(ev: objects_pb2.Event) -> tuple[float, int]:
    """Last seen, then the order of writing."""
    try:
        when = parse_time(event_time(ev))
    except Invalid:
        when = 0.0
    return when, ev.metadata.resource_version


def _event(ev: objects_pb2.Event, now: float, wide: bool) -> list[str]:
    obj = ev.involved_object
    seen = age(event_time(ev), now)
    if ev.count > 1 and ev.first_timestamp:
        seen += f" (x{ev.count} over {age(ev.first_timestamp, now)})"
    return [seen, ev.type or "Normal", ev.reason, f"{obj.kind.lower()}/{obj.name}", " ".join(ev.message.split())]


def job_status(job: objects_pb2.Job) -> str:
    """kubectl's Job STATUS: Complete, Failed or Running."""
    for type_ in ("Complete", "Failed"):
        cond = get_condition(job.status.conditions, type_)
        if cond is not None and cond.status == "True":
            return type_
    return "Running"


def job_duration(job: objects_pb2.Job, now: float) -> str:
    if not job.status.start_time:
        return ""
    try:
        start = parse_time(job.status.start_time)
        end = parse_time(job.status.completion_time) if job.status.completion_time else now
    except Invalid:
        return UNKNOWN
    return human_duration(end - start)


def _job(job: objects_pb2.Job, now: float, wide: bool) -> list[str]:
    completions = job.spec.completions if job.spec.HasField("completions") else 1
    row = [job.metadata.name, job_status(job), f"{job.status.succeeded}/{completions}", job_duration(job, now),
           age(job.metadata.creation_timestamp, now)]
    return row + (_images(job.spec.template, job.spec.selector) if wide else [])


def _cron_job(cron: objects_pb2.CronJob, now: float, wide: bool) -> list[str]:
    spec = cron.spec
    last = age(cron.status.last_schedule_time, now) if cron.status.last_schedule_time else NONE
    row = [cron.metadata.name, spec.schedule, spec.time_zone or NONE, "True" if spec.suspend else "False",
           str(len(cron.status.active)), last, age(cron.metadata.creation_timestamp, now)]
    return row + (_images(spec.job_template.spec.template, spec.job_template.spec.selector) if wide else [])


def _daemon_set(ds: objects_pb2.DaemonSet, now: float, wide: bool) -> list[str]:
    s = ds.status
    selector = labels_text(ds.spec.template.spec.node_selector.items())
    row = [ds.metadata.name, str(s.desired_number_scheduled), str(s.current_number_scheduled), str(s.number_ready),
           str(s.updated_number_scheduled), str(s.number_available), selector,
           age(ds.metadata.creation_timestamp, now)]
    return row + (_images(ds.spec.template, ds.spec.selector) if wide else [])


@dataclass(frozen=True, slots=True)
class Columns:
    headers: tuple[str, ...]
    wide: tuple[str, ...]
    # Any: each kind's function takes its own message type.
    row: Callable[[Any, float, bool], list[str]]


def _config_map(cm: objects_pb2.ConfigMap, now: float, wide: bool) -> list[str]:
    return [cm.metadata.name, str(len(cm.data) + len(cm.binary_data)), age(cm.metadata.creation_timestamp, now)]


def _secret(s: objects_pb2.Secret, now: float, wide: bool) -> list[str]:
    return [s.metadata.name, s.type or "Opaque", str(len(s.data)), age(s.metadata.creation_timestamp, now)]


def _claim(c: objects_pb2.PersistentVolumeClaim, now: float, wide: bool) -> list[str]:
    return [c.metadata.name, c.status.phase or "Pending", c.status.node_name or NONE,
            c.spec.resources.requests.get("storage", NONE), ",".join(_ACCESS.get(m, m) for m in c.spec.access_modes),
            age(c.metadata.creation_timestamp, now)]


_ACCESS = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


_COLUMNS: dict[str, Columns] = {
    POD.name: Columns(("NAME", "READY", "STATUS", "RESTARTS", "AGE"), ("IP", "NODE"), _pod),
    DEPLOYMENT.name: Columns(("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
                             ("CONTAINERS", "IMAGES", "SELECTOR"), _deployment),
    REPLICA_SET.name: Columns(("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
                              ("CONTAINERS", "IMAGES", "SELECTOR"), _replica_set),
    SERVICE.name: Columns(("NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"), ("SELECTOR",),
                          _service),
    NODE.name: Columns(("NAME", "STATUS", "ROLES", "AGE", "VERSION"), ("INTERNAL-IP", "CONTAINER-RUNTIME"),
                       _node),
    ENDPOINTS.name: Columns(("NAME", "ENDPOINTS", "AGE"), (), _endpoints),
    NAMESPACE.name: Columns(("NAME", "STATUS", "AGE"), (), _namespace),
    EVENT.name: Columns(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), (), _event),
    JOB.name: Columns(("NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"), ("CONTAINERS", "IMAGES", "SELECTOR"),
                      _job),
    CRON_JOB.name: Columns(("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"),
                           ("CONTAINERS", "IMAGES", "SELECTOR"), _cron_job),
    DAEMON_SET.name: Columns(("NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR",
                              "AGE"), ("CONTAINERS", "IMAGES", "SELECTOR"), _daemon_set),
    CONFIG_MAP.name: Columns(("NAME", "DATA", "AGE"), (), _config_map),
    SECRET.name: Columns(("NAME", "TYPE", "DATA", "AGE"), (), _secret),
    PERSISTENT_VOLUME_CLAIM.name: Columns(("NAME", "STATUS", "NODE", "CAPACITY", "ACCESS MODES", "AGE"), (), _claim),
}


def headers(kind: Kind, wide: bool = False, with_namespace: bool = False) -> list[str]:
    columns = _COLUMNS[kind.name]
    out = list(columns.headers) + (list(columns.wide) if wide else [])
    return (["NAMESPACE"] if with_namespace else []) + out


def row(kind: Kind, msg: Message, now: float, wide: bool = False, with_namespace: bool = False) -> list[str]:
    cells = _COLUMNS[kind.name].row(msg, now, wide)
    if with_namespace:
        cells.insert(0, msg.metadata.namespace)  # type: ignore[attr-defined]
    return cells
