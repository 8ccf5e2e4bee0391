"""Pod security admission: what a namespace's level lets its pods ask of their host.

A namespace's level is its label `raftorch.io/pod-security`, one of (Kubernetes' Pod Security
Standards, limited to the fields raftorch's pod spec has):

- `privileged`: anything goes, host processes included (pods on process-runtime nodes).
- `baseline` (the default): no privileged containers, no `hostNetwork`, no `hostPort`, and
  capabilities added only from Docker's default set. (Host path volumes would be refused here
  too; raftorch has no volumes.)
- `restricted`: baseline, and every container sets `allowPrivilegeEscalation: false`,
  `runAsNonRoot: true`, no `runAsUser: 0`, drops `ALL` capabilities and adds back at most
  `NET_BIND_SERVICE`. Kubernetes' restricted also wants a seccomp profile: raftorch offers no way
  to turn Docker's default profile off, so every container already has it.

Pods are checked when they are created, or updated with a changed spec, through the Resources
API, and so are the pod templates of deployments, replica sets, jobs, daemon sets and cron jobs:
a workload whose pods would be refused is refused itself, so the user learns it at once rather
than from a replica set that
never gets its pods. (Kubernetes only warns about workloads.) When a namespace's level is raised
later, existing pods keep running and workloads can still be scaled, but the replica set
controller creates no new pods that break the level: it reports FailedCreate instead.
Admission cannot know where the scheduler will put a pod; `host_processes_allowed` is what the
scheduler asks to keep pods of other levels off process-runtime nodes (see scheduler.py), and
`check_node` refuses a pod that names such a node itself.

Pure functions: the caller reads the namespace and the node.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid, PermissionDenied

LEVEL_LABEL = "raftorch.io/pod-security"
PRIVILEGED = "privileged"
BASELINE = "baseline"
RESTRICTED = "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
DEFAULT_LEVEL = BASELINE
# The runtime that runs a pod's command as host processes: no container boundary at all.
HOST_PROCESS_RUNTIME = "process"

# Docker's default capabilities: adding one of these back changes nothing baseline cares about.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def level_of(labels: Mapping[str, str]) -> str:
    """The level a namespace with these labels enforces; an unknown value (refused on write, so
    only ever from an older store) counts as the strictest."""
    value = labels.get(LEVEL_LABEL, DEFAULT_LEVEL)
    return value if value in LEVELS else RESTRICTED


def check_namespace(ns: objects_pb2.Namespace) -> None:
    """`Invalid` when the namespace's level label is not a level."""
    value = ns.metadata.labels.get(LEVEL_LABEL)
    if value is not None and value not in LEVELS:
        raise Invalid(f"metadata.labels[{LEVEL_LABEL}]: must be one of {', '.join(LEVELS)}, got {value!r}")


def host_processes_allowed(level: str) -> bool:
    return level == PRIVILEGED


def pod_spec_violations(spec: objects_pb2.PodSpec, level: str, path: str = "spec") -> list[str]:
    """Each field of `spec` the level forbids, as `path=value`; empty when the spec passes."""
    if level == PRIVILEGED:
        return []
    out: list[str] = []
    if spec.host_network:
        out.append(f"{path}.hostNetwork=true")
    for i, volume in enumerate(spec.volumes):
        if volume.HasField("host_path"):  # the host's files: as Kubernetes' baseline
            out.append(f"{path}.volumes[{i}].hostPath={volume.host_path.path}")
    containers = [(f"{path}.containers[{i}]", c) for i, c in enumerate(spec.containers)]
    containers += [(f"{path}.initContainers[{i}]", c) for i, c in enumerate(spec.init_containers)]
    for where, container in containers:
        for j, port in enumerate(container.ports):
            if port.host_port:
                out.append(f"{where}.ports[{j}].hostPort={port.host_port}")
        out += _security_context_violations(container.security_context, level, f"{where}.securityContext")
    return out


def _security_context_violations(sc: objects_pb2.SecurityContext, level: str, path: str) -> list[str]:
    out: list[str] = []
    if sc.privileged:
        out.append(f"{path}.privileged=true")
    allowed = RESTRICTED_CAPABILITIES if level == RESTRICTED else BASELINE_CAPABILITIES
    extra = [name for name in sc.capabilities.add if name not in allowed]
    if extra:
        out.append(f"{path}.capabilities.add=[{', '.join(extra)}]")
    if level != RESTRICTED:
        return out
    if not sc.HasField("allow_privilege_escalation") or sc.allow_privilege_escalation:
        out.append(f"{path}.allowPrivilegeEscalation must be false")
    if not sc.run_as_non_root:
        out.append(f"{path}.runAsNonRoot must be true")
    if sc.HasField("run_as_user") and sc.run_as_user == 0:
        out.append(f"{path}.runAsUser=0")
    if "ALL" not in sc.capabilities.drop:
        out.append(f"{path}.capabilities.drop must include ALL")
    return out


def _pod_spec_of(msg: Message) -> tuple[str, objects_pb2.PodSpec] | None:
    if isinstance(msg, objects_pb2.Pod):
        return "pods", msg.spec
    if isinstance(msg, objects_pb2.Deployment):
        return "deployments", msg.spec.template.spec
    if isinstance(msg, objects_pb2.ReplicaSet):
        return "replicasets", msg.spec.template.spec
    if isinstance(msg, objects_pb2.Job):
        return "jobs", msg.spec.template.spec
    if isinstance(msg, objects_pb2.DaemonSet):
        return "daemonsets", msg.spec.template.spec
    if isinstance(msg, objects_pb2.CronJob):
        return "cronjobs", msg.spec.job_template.spec.template.spec
    return None


def admit(msg: Message, level: str) -> None:
    """`PermissionDenied` naming every forbidden field when `msg` (a pod, or a deployment, replica
    set, job, daemon set or cron job by its pod template) asks for more than `level` allows; other
    kinds pass."""
    found = _pod_spec_of(msg)
    if found is None:
        return
    plural, spec = found
    path = {"pods": "spec", "cronjobs": "spec.jobTemplate.spec.template.spec"}.get(plural, "spec.template.spec")
    violations = pod_spec_violations(spec, level, path)
    if violations:
        name = msg.metadata.name  # type: ignore[attr-defined]
        raise PermissionDenied(f'{plural} "{name}" is forbidden: violates pod-security level "{level}": '
                               + ", ".join(violations))


def check_node(pod: objects_pb2.Pod, level: str, node: objects_pb2.Node | None) -> None:
    """`PermissionDenied` when the pod names a node that would run it as host processes and its
    namespace's level does not allow that (the scheduler keeps other pods off such nodes)."""
    if node is None or host_processes_allowed(level) or node.status.runtime != HOST_PROCESS_RUNTIME:
        return
    raise PermissionDenied(
        f'pods "{pod.metadata.name}" is forbidden: violates pod-security level "{level}": '
        f"spec.nodeName={node.metadata.name} runs pods as host processes ({HOST_PROCESS_RUNTIME} runtime); "
        f"only namespaces labelled {LEVEL_LABEL}={PRIVILEGED} may place pods there")
