"""The container runtime interface the agent drives, its data and its errors.

A runtime knows nothing of pods: the agent hands it one `ContainerSpec` at a time, and finds its
containers again by the labels written on every one (`labels_for`). Those labels are the only
state that must survive an agent restart: pod, container, attempt (the restart count) and the
pod's grace period, so a restarted agent adopts what runs and stops what it should not.

A pod's network namespace may be held by a sandbox container (`sandbox_spec`, role label
`sandbox`, container name `POD`, as Kubernetes' pause container): the pod's containers join it
(`ContainerSpec.sandbox`, recorded in their `sandbox` label), share localhost and its one IP.
A pod of one container needs no sandbox: its container has the network namespace to itself, at
a fixed address the agent gives the pod (`ContainerSpec.ip_address`, recorded in its
`pod-ip` label, so that the pod keeps it across restarts of its container and of the agent).

Errors are `raftorch.errors` classes: `RuntimeFailure` (an `Internal`) carries the
Kubernetes-style reason a container shows while it waits (ErrImagePull, RunContainerError, ...),
`ContainerNotFound` is a `NotFound`, `RuntimeUnavailable` an `Unavailable` (no daemon).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal, NotFound, Unavailable
from raftorch.objects import parse_cpu, parse_memory

__all__ = [
    "ERR_IMAGE_NEVER_PULL",
    "ERR_IMAGE_PULL",
    "LABEL_ATTEMPT",
    "LABEL_CONTAINER",
    "LABEL_GRACE",
    "LABEL_MANAGED",
    "LABEL_NODE",
    "LABEL_POD_IP",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "LABEL_ROLE",
    "LABEL_SANDBOX",
    "PULL_ALWAYS",
    "PULL_IF_NOT_PRESENT",
    "PULL_NEVER",
    "SANDBOX_CONTAINER",
    "ChangeWatch",
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerRuntime",
    "ContainerSpec",
    "ExecTimeout",
    "ImagePullError",
    "Mount",
    "PodStart",
    "PortMapping",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "StartsPods",
    "WatchesChanges",
    "container_spec",
    "labels_for",
    "sandbox_spec",
    "start_in_order",
]

LABEL_MANAGED = "raftorch.io/managed"
LABEL_NODE = "raftorch.io/node"
LABEL_POD_UID = "raftorch.io/pod-uid"
LABEL_POD_NAMESPACE = "raftorch.io/pod-namespace"
LABEL_POD_NAME = "raftorch.io/pod-name"
LABEL_CONTAINER = "raftorch.io/container"
LABEL_ATTEMPT = "raftorch.io/attempt"
# Lets an agent that lost its memory stop a deleted pod's containers with the pod's own grace.
LABEL_GRACE = "raftorch.io/grace-seconds"
# The fixed address the agent gave the pod of a container that holds its own network namespace.
LABEL_POD_IP = "raftorch.io/pod-ip"
# "sandbox" on the container that holds a pod's network namespace.
LABEL_ROLE = "raftorch.io/role"
ROLE_SANDBOX = "sandbox"
# On a pod's containers: the id of the sandbox whose network namespace they joined.
LABEL_SANDBOX = "raftorch.io/sandbox"
# The sandbox's container name: upper case, so no container of a pod spec (a DNS label) has it.
SANDBOX_CONTAINER = "POD"

PULL_IF_NOT_PRESENT = "IfNotPresent"
PULL_ALWAYS = "Always"
PULL_NEVER = "Never"
PULL_POLICIES = (PULL_IF_NOT_PRESENT, PULL_ALWAYS, PULL_NEVER)

ERR_IMAGE_PULL = "ErrImagePull"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
RUN_CONTAINER_ERROR = "RunContainerError"
CREATE_CONTAINER_ERROR = "CreateContainerError"

RUNNING = "running"
EXITED = "exited"
CREATED = "created"


class RuntimeFailure(Internal):
    """A runtime operation failed; `reason` is what the container's waiting state shows."""

    def __init__(self, message: str, reason: str = RUN_CONTAINER_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class ImagePullError(RuntimeFailure):
    """The image is not there and could not (or may not) be pulled."""

    def __init__(self, message: str, *, image: str, reason: str = ERR_IMAGE_PULL) -> None:
        super().__init__(message, reason)
        self.image = image


class ExecTimeout(RuntimeFailure):
    def __init__(self, message: str) -> None:
        super().__init__(message, "ExecTimeout")


class ContainerNotFound(NotFound):
    pass


class RuntimeUnavailable(Unavailable):
    """The runtime itself cannot be reached (the Docker daemon is down, the data dir is gone)."""


@dataclass(frozen=True, slots=True)
class PortMapping:
    container_port: int
    host_port: int = 0  # 0: not published on the host
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container to start: everything the runtime needs, nothing it would have to look up."""

    pod_uid: str
    pod_namespace: str
    pod_name: str
    node: str
    container: str
    image: str
    pull_policy: str = PULL_IF_NOT_PRESENT
    command: tuple[str, ...] = ()  # replaces the image's entrypoint
    args: tuple[str, ...] = ()  # replaces the image's cmd
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMapping, ...] = ()
    working_dir: str = ""
    cpu_millis: int | None = None  # limit
    memory_bytes: int | None = None  # limit
    attempt: int = 0  # the restart count this container starts with
    grace_seconds: int = 30
    host_network: bool = False
    # Hooks for per-node bridge networking: a runtime network to join, and a fixed address on it.
    network: str | None = None
    ip_address: str | None = None
    # The id of a sandbox container whose network namespace (and IP, hostname) this one joins.
    sandbox: str | None = None
    extra_labels: tuple[tuple[str, str], ...] = ()
    # The container's securityContext (objects.proto SecurityContext).
    privileged: bool = False
    run_as_user: int | None = None
    run_as_non_root: bool = False
    no_new_privileges: bool = False  # allowPrivilegeEscalation: false
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    # The pod's volumes this container mounts (raftorch/agent/volumes.py prepares them).
    mounts: tuple[Mount, ...] = ()

    @property
    def runtime_name(self) -> str:
        """A name unique per pod, container and attempt, readable in `docker ps`."""
        return f"raftorch_{self.pod_namespace}_{self.pod_name}_{self.container}_{self.pod_uid[:8]}_{self.attempt}"

    def labels(self) -> dict[str, str]:
        return labels_for(self)


def labels_for(spec: ContainerSpec) -> dict[str, str]:
    labels = dict(spec.extra_labels)
    labels.update({
        LABEL_MANAGED: "true",
        LABEL_NODE: spec.node,
        LABEL_POD_UID: spec.pod_uid,
        LABEL_POD_NAMESPACE: spec.pod_namespace,
        LABEL_POD_NAME: spec.pod_name,
        LABEL_CONTAINER: spec.container,
        LABEL_ATTEMPT: str(spec.attempt),
        LABEL_GRACE: str(spec.grace_seconds),
    })
    if spec.sandbox:
        labels[LABEL_SANDBOX] = spec.sandbox
    elif spec.ip_address:
        labels[LABEL_POD_IP] = spec.ip_address
    return labels


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Mount:
    """A path of the host, or a runtime volume (`volume`: its name, for tmpfs emptyDirs), at `target`."""

    source: str
    target: str
    read_only: bool = False
    volume: bool = False


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What a runtime reports about one of its containers; pod identity comes from the labels."""

    id: str
    state: str  # "running", "exited" or "created" (made but never started)
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    image: str = ""
    exit_code: int = 0  # meaningful once exited
    started_at: float | None = None  # seconds since the epoch
    finished_at: float | None = None
    ip: str = ""
    reason: str = ""  # once exited: Completed, Error, OOMKilled, ContainerStatusUnknown
    message: str = ""
    # Once exited: it was stopped by a signal someone sent through the runtime (`docker kill`,
    # `docker stop`), not by the agent and not by exiting on its own. Such an exit is no crash.
    killed: bool = False

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def pod_namespace(self) -> str:
        return self.labels.get(LABEL_POD_NAMESPACE, "")

    @property
    def pod_name(self) -> str:
        return self.labels.get(LABEL_POD_NAME, "")

    @property
    def container(self) -> str:
        return self.labels.get(LABEL_CONTAINER, "")

    @property
    def attempt(self) -> int:
        return _int_label(self.labels, LABEL_ATTEMPT) or 0

    @property
    def grace_seconds(self) -> int | None:
        return _int_label(self.labels, LABEL_GRACE)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def is_sandbox(self) -> bool:
        return self.labels.get(LABEL_ROLE) == ROLE_SANDBOX

    @property
    def sandbox(self) -> str:
        """The id of the sandbox this container joined; "" for none."""
        return self.labels.get(LABEL_SANDBOX, "")

    @property
    def address(self) -> str:
        """The fixed pod address it was created with (a pod without a sandbox); "" for none."""
        return self.labels.get(LABEL_POD_IP, "")


def exit_reason(exit_code: int, oom_killed: bool = False) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


class ContainerRuntime(Protocol):
    """What the agent needs from a runtime. Stop and remove are idempotent: a missing container is done."""

    name: str

    def list_containers(self, node: str) -> list[ContainerInfo]:
        """Every container of ours on `node` (labels managed=true and node=`node`), running or not."""
        ...

    def ensure_image(self, image: str, policy: str) -> None:
        """Make `image` present as `policy` says, or raise `ImagePullError`."""
        ...

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container; on failure nothing is left behind and `RuntimeFailure` is raised."""
        ...

    def stop(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, up to `grace_seconds` to exit, then SIGKILL; returns once it has exited."""
        ...

    def remove(self, container_id: str) -> None:
        """Delete the container (killing it if it still runs) and what the runtime kept of it."""
        ...

    def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        """Run `command` in the container; its exit code. `ExecTimeout` after `timeout` seconds."""
        ...

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        """Output (stdout and stderr), the last `tail` lines or all; with `follow`, until the container exits."""
        ...


def sandbox_spec(pod: objects_pb2.Pod, node: str, attempt: int, image: str, *,
                 network: str | None = None, ip_address: str | None = None) -> ContainerSpec:
    """The sandbox of a pod: it holds the network namespace, so it publishes every host port of the pod."""
    ports = tuple(PortMapping(p.container_port, p.host_port, p.protocol or "TCP")
                  for c in pod.spec.containers for p in c.ports if p.host_port)
    return ContainerSpec(
        pod_uid=pod.metadata.uid, pod_namespace=pod.metadata.namespace, pod_name=pod.metadata.name, node=node,
        container=SANDBOX_CONTAINER, image=image, ports=ports, attempt=attempt,
        grace_seconds=pod.spec.termination_grace_period_seconds or 30, network=network, ip_address=ip_address,
        extra_labels=((LABEL_ROLE, ROLE_SANDBOX),))


class ChangeWatch(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class WatchesChanges(Protocol):
    """A runtime that can tell the agent when a container exits or disappears, so it need not poll."""

    def watch_changes(self, node: str, changed: Callable[[], None]) -> ChangeWatch:
        """From now on call `changed` (from a thread of the runtime's) soon after one of `node`'s containers
        exits or goes, and whenever the runtime may have missed that; until the watch is closed."""
        ...


@dataclass(frozen=True, slots=True)
class PodStart:
    """A sandbox started with the containers that joined it: each container's info, or why it failed."""

    sandbox: ContainerInfo
    containers: tuple[ContainerInfo | RuntimeFailure, ...]


@runtime_checkable
class StartsPods(Protocol):
    """A runtime that starts a sandbox and its first containers together, overlapping what it can."""

    def start_pod(self, sandbox: ContainerSpec, containers: Sequence[ContainerSpec]) -> PodStart:
        """Start `sandbox`, then `containers` in it (their `sandbox` set to its id), as `create_and_start`
        would, one after the other. `RuntimeFailure` when the sandbox fails (nothing is left behind);
        a container that fails is left out, its failure in its place."""
        ...


def start_in_order(runtime: ContainerRuntime, sandbox: ContainerSpec, containers: Sequence[ContainerSpec]) -> PodStart:
    """`StartsPods.start_pod` for any runtime: the sandbox, then each container, one at a time."""
    info = runtime.create_and_start(sandbox)
    results: list[ContainerInfo | RuntimeFailure] = []
    for spec in containers:
        try:
            results.append(runtime.create_and_start(replace(spec, sandbox=info.id)))
        except RuntimeFailure as err:
            results.append(err)
    return PodStart(info, tuple(results))


def container_spec(pod: objects_pb2.Pod, container: objects_pb2.Container, node: str, attempt: int, *,
                   network: str | None = None, ip_address: str | None = None,
                   sandbox: str | None = None, env: tuple[tuple[str, str], ...] | None = None,
                   mounts: tuple[Mount, ...] = ()) -> ContainerSpec:
    """The spec of one container of a pod. `Invalid` for a bad resource quantity. `env`: the
    resolved environment (env sources read), else the spec's literal values."""
    limits = container.resources.limits
    sc = container.security_context
    return ContainerSpec(
        pod_uid=pod.metadata.uid, pod_namespace=pod.metadata.namespace, pod_name=pod.metadata.name, node=node,
        container=container.name, image=container.image,
        pull_policy=container.image_pull_policy or PULL_IF_NOT_PRESENT,
        command=tuple(container.command), args=tuple(container.args),
        env=env if env is not None else tuple((e.name, e.value) for e in container.env),
        ports=tuple(PortMapping(p.container_port, p.host_port, p.protocol or "TCP") for p in container.ports),
        working_dir=container.working_dir,
        cpu_millis=parse_cpu(limits["cpu"]) if "cpu" in limits else None,
        memory_bytes=parse_memory(limits["memory"]) if "memory" in limits else None,
        attempt=attempt, grace_seconds=pod.spec.termination_grace_period_seconds or 30,
        host_network=pod.spec.host_network, network=network, ip_address=ip_address, sandbox=sandbox,
        privileged=sc.privileged, run_as_user=sc.run_as_user if sc.HasField("run_as_user") else None,
        run_as_non_root=sc.run_as_non_root,
        no_new_privileges=sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation,
        cap_add=tuple(sc.capabilities.add), cap_drop=tuple(sc.capabilities.drop), mounts=mounts)


@runtime_checkable
class ManagesVolumes(Protocol):
    """A runtime with volumes of its own: the tmpfs of `emptyDir: {medium: Memory}`, shared by a
    pod's containers and removed with the pod, and the volumes of persistent volume claims."""

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, tmpfs: bool,
                      size_bytes: int | None = None) -> None:
        """A named volume (on the node's disk, or a tmpfs of `size_bytes`), made when missing."""
        ...

    def remove_pod_volumes(self, node: str, keep: set[str]) -> None:
        """Remove `node`'s pod volumes but those of the pod uids in `keep` (a volume in use stays)."""
        ...
