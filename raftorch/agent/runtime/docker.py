"""The Docker runtime, through the Docker SDK (`docker.from_env()` or a `base_url`).

Kubernetes' mapping: `command` replaces the image's entrypoint and `args` its cmd; ports are
published on the host only when they have a host port; the cpu limit becomes nano_cpus and
the memory limit mem_limit; the pod name is the hostname. Every Docker error comes out as a
`raftorch.errors` class (see `base`), with the daemon's explanation in the message.

Pulls run in a thread of their own and are given `pull_timeout` seconds: the SDK waits for a
pull without any timeout, and a registry that never answers must not hang the agent. A pull
that timed out goes on; asking for the same image again waits for it rather than starting
another.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import docker.utils
import structlog

from raftorch.agent.runtime.base import (
    CREATE_CONTAINER_ERROR,
    CREATED,
    ERR_IMAGE_NEVER_PULL,
    EXITED,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POD_UID,
    LABEL_ROLE,
    PULL_ALWAYS,
    PULL_NEVER,
    PULL_POLICIES,
    RUNNING,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    ImagePullError,
    PodStart,
    RuntimeFailure,
    RuntimeUnavailable,
    exit_reason,
)
from raftorch.agent.runtime.docker_events import DockerEvents
from raftorch.agent.runtime.docker_pool import ROLE_POOL, SandboxPool, claimed_labels, claimed_name, is_unclaimed
from raftorch.agent.usage import Reading, cgroup_reading
from raftorch.dockerlib import explain, translated
from raftorch.errors import Invalid, RaftorchError
from raftorch.objects import CREATE_CONTAINER_CONFIG_ERROR, parse_time

__all__ = ["DockerRuntime"]

log = structlog.get_logger("raftorch.agent.docker")

_DOCKER_ZERO_TIME = "0001-01-01T00:00:00Z"
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_MIN_API_VERSION = "1.24"  # the SDK's minimum; only to ask the daemon for its own
_MIN_NANO_CPUS = 10_000_000  # Docker refuses less than 0.01 CPU
# Docker's refusal of an address still held (its API gives no other sign of it), and how long
# (seconds) a start at a fixed address waits for the container it replaces to let it go.
_ADDRESS_IN_USE = "Address already in use"
_ADDRESS_WAIT = 5.0


def _translated(what: str) -> contextlib.AbstractContextManager[None]:
    return translated(what, not_found=ContainerNotFound, failure=RuntimeFailure, unreachable=RuntimeUnavailable)


def _time(text: str | None) -> float | None:
    if not text or text.startswith(_DOCKER_ZERO_TIME[:4]):
        return None
    try:
        return parse_time(text)
    except Invalid:
        return None


def _kind(status: str) -> str:
    """Docker's container status as the runtime interface's state."""
    if status in ("running", "paused", "restarting"):
        return RUNNING
    return CREATED if status == "created" else EXITED


def _container_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    kind = _kind(str(state.get("Status", "")))
    config = attrs.get("Config") or {}
    network = attrs.get("NetworkSettings") or {}
    ip = network.get("IPAddress") or next(
        (n["IPAddress"] for n in (network.get("Networks") or {}).values() if n and n.get("IPAddress")), "")
    exit_code = int(state.get("ExitCode") or 0)
    return ContainerInfo(
        id=str(attrs["Id"]), state=kind, labels=claimed_labels(config.get("Labels") or {}, str(attrs.get("Name", ""))),
        name=str(attrs.get("Name", "")).lstrip("/"), image=str(config.get("Image", "")),
        exit_code=exit_code if kind == EXITED else 0, started_at=_time(state.get("StartedAt")),
        finished_at=_time(state.get("FinishedAt")) if kind == EXITED else None, ip=str(ip),
        reason=exit_reason(exit_code, bool(state.get("OOMKilled"))) if kind == EXITED else "",
        message=str(state.get("Error") or ""))


def _created_info(summary: Mapping[str, Any]) -> ContainerInfo:
    """A container made but never started, from the list's summary."""
    name = str((summary.get("Names") or [""])[0])
    return ContainerInfo(id=str(summary["Id"]), state=CREATED, labels=claimed_labels(summary.get("Labels") or {}, name),
                         name=name.lstrip("/"), image=str(summary.get("Image", "")))


def _create_args(spec: ContainerSpec, api: Any) -> dict[str, Any]:
    """Arguments of the low-level create call: the SDK's high-level create would inspect the container
    afterwards, and its model's start and reload once more."""
    host: dict[str, Any] = {}
    # A container joining a sandbox shares its network namespace, hostname and published ports;
    # Docker refuses them on a container that joins another's network.
    bindings = {} if spec.sandbox else {
        f"{p.container_port}/{p.protocol.lower()}": p.host_port for p in spec.ports if p.host_port}
    if bindings:
        host["port_bindings"] = bindings
    if spec.cpu_millis:
        host["nano_cpus"] = max(spec.cpu_millis * 1_000_000, _MIN_NANO_CPUS)
    if spec.memory_bytes:
        host["mem_limit"] = spec.memory_bytes
    args: dict[str, Any] = {
        "image": spec.image, "name": spec.runtime_name, "labels": spec.labels(), "detach": True,
        "environment": [f"{name}={value}" for name, value in spec.env],
        "entrypoint": list(spec.command) or None, "command": list(spec.args) or None,
        "working_dir": spec.working_dir or None, "ports": list(bindings) or None,
    }
    if spec.privileged:
        host["privileged"] = True
    if spec.run_as_user is not None:
        args["user"] = str(spec.run_as_user)
    if spec.no_new_privileges:
        host["security_opt"] = ["no-new-privileges"]
    if spec.cap_add:
        host["cap_add"] = list(spec.cap_add)
    if spec.cap_drop:
        host["cap_drop"] = list(spec.cap_drop)
    if spec.mounts:
        host["binds"] = [f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts]
    if spec.sandbox:
        host["network_mode"] = f"container:{spec.sandbox}"
    elif spec.host_network:
        host["network_mode"] = "host"
    else:
        args["hostname"] = spec.pod_name[:63]
        if spec.network:
            host["network_mode"] = spec.network
            endpoint = api.create_endpoint_config(ipv4_address=spec.ip_address) if spec.ip_address else {}
            args["networking_config"] = api.create_networking_config({spec.network: endpoint})
    args["host_config"] = api.create_host_config(**host)
    return args


def _connect(base_url: str | None, timeout: float) -> Any:
    """A client speaking the daemon's API version, as the SDK's "auto" does, minus the sockets the SDK
    leaks when the daemon is down."""

    def client(version: str) -> Any:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=timeout, version=version)
        return docker.from_env(timeout=timeout, version=version)

    url = base_url or os.environ.get("DOCKER_HOST") or _DEFAULT_SOCKET
    try:
        if url.startswith("unix://"):
            # The SDK leaks its socket when connecting to a unix socket fails; this one is closed.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(url.removeprefix("unix://"))
        probe = client(_MIN_API_VERSION)  # sends nothing yet
        try:
            version = str(probe.version(api_version=False)["ApiVersion"])
        finally:
            probe.close()
        return client(version)
    except (docker.errors.DockerException, OSError) as exc:
        raise RuntimeUnavailable(f"docker: cannot reach the daemon at {url}: {explain(exc)}") from exc


class DockerRuntime(ContainerRuntime):
    name = "docker"

    def __init__(self, client: Any = None, *, base_url: str | None = None, timeout: float = 60.0,
                 pull_timeout: float = 300.0) -> None:
        self.client = client if client is not None else _connect(base_url, timeout)
        self.pull_timeout = pull_timeout
        self._pulls: dict[str, Future[None]] = {}
        self._images: set[str] = set()  # known present; forgotten when a create says otherwise
        self._image_check = threading.Lock()
        self._inspected: dict[str, ContainerInfo] = {}  # by id; refreshed when the listed state differs
        self._lock = threading.Lock()
        self._feed: DockerEvents | None = None
        self._starting: set[str] = set()  # ids between create and the inspect after start
        self._creating: set[str] = set()  # names of containers being created (no id yet)
        # A pod start's second hand: the sandbox starts here while its containers are created.
        self._side = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker-side")
        self._pool: SandboxPool | None = None

    def close(self) -> None:
        self.stop_sandbox_pool()
        if self._feed is not None:
            self._feed.close()
        self._side.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def watch_changes(self, node: str, changed: Callable[[], None]) -> DockerEvents:
        """Docker's event stream for `node`'s containers: `changed` is called when one exits or goes, and
        kills sent by others are told apart from the agent's own stops (`ContainerInfo.killed`)."""
        if self._feed is None:
            self._feed = DockerEvents(self.client, node, self._on_die, changed)
        return self._feed

    def _on_die(self, container_id: str, exit_code: int, at: float, killed: bool, oom: bool) -> None:
        """The cached container as the die event says it ended: no inspect needed to see the exit."""
        with self._lock:
            cached = self._inspected.get(container_id)
            if cached is not None:
                self._inspected[container_id] = replace(
                    cached, state=EXITED, exit_code=exit_code, finished_at=at, ip="",
                    reason=exit_reason(exit_code, oom), killed=killed)

    def list_containers(self, node: str) -> list[ContainerInfo]:
        """One list call. A container is inspected only when it is new to this runtime or its state changed
        in a way the event stream has not told (an exit is waited for from the stream while it is live).
        Never inspected: containers only created (the list says all the planner needs of them), and those
        this runtime is starting (left out until `create_and_start` returns: it inspects them itself)."""
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_NODE}={node}"]}
        feed = self._feed
        with self._lock:
            known = set(self._inspected)  # what a start adds meanwhile is not stale
        infos = []
        with _translated("listing containers"):
            listed = self.client.api.containers(all=True, filters=filters)
            for summary in listed:
                container_id = str(summary["Id"])
                state = _kind(str(summary.get("State", "")))
                name = str((summary.get("Names") or [""])[0])
                if container_id in self._starting or name.lstrip("/") in self._creating:
                    continue
                if is_unclaimed(summary.get("Labels") or {}, name):
                    if state == EXITED and self._pool is not None:
                        self._pool.forget(container_id)
                    continue  # a pool container is no pod's until claimed
                if state == CREATED:
                    infos.append(_created_info(summary))
                    continue
                cached = self._inspected.get(container_id)
                if cached is not None and cached.state != state and not (feed is not None and (
                        # the exit is on its way in the event stream (and will wake the agent) ...
                        (cached.running and state == EXITED and feed.live and not feed.died(container_id))
                        # ... or came by it, before the list's view of the daemon has it
                        or (state == RUNNING and cached.state == EXITED and feed.died_lately(container_id)))):
                    cached = None
                if cached is None:
                    try:
                        cached = self._inspect(container_id)
                    except docker.errors.NotFound:
                        continue  # removed since the list
                infos.append(cached)
        with self._lock:
            listed_ids = {c.id for c in infos}
            for stale in [i for i, c in list(self._inspected.items()) if c.labels.get(LABEL_NODE) == node
                          and i in known and i not in listed_ids and i not in self._starting]:
                del self._inspected[stale]
        return infos

    def _inspect(self, container_id: str) -> ContainerInfo:
        info = _container_info(self.client.api.inspect_container(container_id))
        if info.state == EXITED and self._feed is not None:
            info = replace(info, killed=self._feed.was_killed(container_id))
        with self._lock:
            self._inspected[container_id] = info
        return info

    # -- images -----------------------------------------------------------------------------

    def ensure_image(self, image: str, policy: str) -> None:
        if policy not in PULL_POLICIES:
            raise Invalid(f"image pull policy: expected one of {', '.join(PULL_POLICIES)}, got {policy!r}")
        if policy != PULL_ALWAYS and image in self._images:
            return
        if policy != PULL_ALWAYS:
            with self._image_check:  # parallel first starts of an image ask the daemon once
                if image in self._images or self._present(image):
                    self._images.add(image)
                    return
        if policy == PULL_NEVER:
            raise ImagePullError(f'container image "{image}" is not present with pull policy of Never',
                                 image=image, reason=ERR_IMAGE_NEVER_PULL)
        with self._lock:
            pull = self._pulls.get(image)
            if pull is None or pull.done():
                pull = self._pulls[image] = Future()
                threading.Thread(target=self._pull, args=(image, pull), name=f"docker-pull {image}",
                                 daemon=True).start()
        try:
            pull.result(timeout=self.pull_timeout)
        except TimeoutError:
            raise ImagePullError(f'failed to pull image "{image}": no answer within {self.pull_timeout:g}s',
                                 image=image) from None
        except (docker.errors.DockerException, OSError, RuntimeFailure) as exc:
            raise ImagePullError(f'failed to pull image "{image}": {explain(exc)}', image=image) from exc
        with self._lock:
            self._images.add(image)

    def usage(self, container_id: str) -> Reading | None:
        """CPU and memory from the container's cgroup files; Docker's stats API (slow) if those are not here."""
        reading = cgroup_reading(container_id)
        if reading is not None:
            return reading
        try:
            stats = self.client.api.stats(container_id, stream=False)
        except (docker.errors.DockerException, OSError):
            return None
        memory = stats.get("memory_stats") or {}
        inner = memory.get("stats") or {}
        inactive = inner.get("total_inactive_file", inner.get("inactive_file", 0))
        cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0)
        return Reading(int(cpu), max(0, int(memory.get("usage", 0)) - int(inactive)))

    def image_present(self, image: str) -> bool:
        if image in self._images:
            return True
        with self._image_check:
            if image in self._images or self._present(image):
                self._images.add(image)
                return True
        return False

    def _present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:  # e.g. an invalid reference
            raise ImagePullError(f'image "{image}": {explain(exc)}', image=image) from exc
        except OSError as exc:
            raise RuntimeUnavailable(f"docker: the daemon cannot be reached: {exc}") from exc
        return True

    def _pull(self, image: str, result: Future[None]) -> None:
        try:
            repository, tag = docker.utils.parse_repository_tag(image)
            # Errors after the pull started come in the stream, not as an HTTP status.
            for line in self.client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    raise RuntimeFailure(str(line["error"]))
        except BaseException as exc:  # handed to the waiting caller, whatever it is
            result.set_exception(exc)
        else:
            result.set_result(None)

    # -- containers -------------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: Mapping[str, str], *, tmpfs: bool,
                      size_bytes: int | None = None) -> None:
        opts = {"type": "tmpfs", "device": "tmpfs"} if tmpfs else {}
        if tmpfs and size_bytes:
            opts["o"] = f"size={size_bytes}"
        with _translated(f"volume {name}"):
            try:
                self.client.api.inspect_volume(name)
                return
            except docker.errors.NotFound:
                pass
            self.client.api.create_volume(name, driver="local", driver_opts=opts or None, labels=dict(labels))

    def remove_pod_volumes(self, node: str, keep: set[str]) -> None:
        with _translated("pod volumes"):
            found = self.client.api.volumes(filters={"label": f"{LABEL_NODE}={node}"}).get("Volumes") or []
        for volume in found:
            owner = (volume.get("Labels") or {}).get(LABEL_POD_UID)
            if owner is None or owner in keep:  # a claim's volume has no pod: it stays
                continue
            try:
                self.client.api.remove_volume(volume["Name"])
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                pass  # still in use by a container that is going: the next pass removes it

    # -- the sandbox pool (docker_pool.py) ----------------------------------------------------

    def start_sandbox_pool(self, node: str, network: str, image: str, size: int) -> SandboxPool | None:
        """Keep `size` started sandboxes on `network` for `node`'s new pods; 0: none (and remove those left)."""
        self.stop_sandbox_pool()
        if size <= 0:
            self.remove_sandbox_pool(node)
            return None
        self._pool = SandboxPool(self.client, node, network, image, size, self._busy)
        self._pool.start()
        return self._pool

    def _busy(self) -> bool:
        """Containers being created or started: the pool waits (pods first)."""
        with self._lock:
            return bool(self._starting or self._creating)

    def stop_sandbox_pool(self) -> None:
        """Stop refilling; the pool's containers stay for the next agent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def remove_sandbox_pool(self, node: str) -> int:
        """Remove `node`'s unclaimed pool containers (the node goes, or its pool is off); how many."""
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_NODE}={node}", f"{LABEL_ROLE}={ROLE_POOL}"]}
        removed = 0
        with _translated("sandbox pool"):
            for summary in self.client.api.containers(all=True, filters=filters):
                if is_unclaimed(summary.get("Labels") or {}, str((summary.get("Names") or [""])[0])):
                    with contextlib.suppress(docker.errors.NotFound):
                        self.client.api.remove_container(summary["Id"], force=True, v=True)
                        removed += 1
        return removed

    def _claim(self, spec: ContainerSpec) -> ContainerInfo | None:
        """A started pool sandbox renamed for `spec`'s pod, or None (no pool, none fits, none left)."""
        pool = self._pool
        if pool is None or not pool.fits(spec):
            return None
        while (container_id := pool.take()) is not None:
            with self._lock:
                self._starting.add(container_id)
            try:
                self.client.api.rename(container_id, claimed_name(spec))
                info = self._inspect(container_id)
            except (docker.errors.DockerException, OSError) as exc:
                log.warning("sandbox_pool_claim_failed", container=container_id, error=explain(exc))
                self._discard(container_id)
                continue
            finally:
                with self._lock:
                    self._starting.discard(container_id)
            if info.running and info.pod_uid == spec.pod_uid:
                return info
            self._discard(container_id)
        return None

    # -- containers ----------------------------------------------------------------------------

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create, start, inspect once (the address and start time); the result is cached for the next list.
        A sandbox is a claimed pool container when the pool has one that fits."""
        claimed = self._claim(spec)
        if claimed is not None:
            return claimed
        return self._start_created(self._create_container(spec), spec.runtime_name,
                                   fixed_address=bool(spec.ip_address))

    def start_pod(self, sandbox: ContainerSpec, containers: Sequence[ContainerSpec]) -> PodStart:
        """The sandbox's start overlaps the creation of its containers (Docker creates a container that
        joins another's network before that one runs); they start once it runs. A claimed pool sandbox
        runs already."""
        claimed = self._claim(sandbox)
        if claimed is not None:
            sandbox_id = claimed.id
            starting: Future[ContainerInfo] = Future()
            starting.set_result(claimed)
        else:
            sandbox_id = self._create_container(sandbox)
            starting = self._side.submit(self._start_created, sandbox_id, sandbox.runtime_name)
        created: list[str | RuntimeFailure] = []
        for spec in containers:
            try:
                created.append(self._create_container(replace(spec, sandbox=sandbox_id)))
            except RuntimeFailure as err:
                created.append(err)
            except RaftorchError as err:  # the daemon went away: the sandbox's start will tell
                created.append(RuntimeFailure(f"creating container {spec.runtime_name}: {err}"))
        try:
            info = starting.result()
        except BaseException:
            for container_id in created:
                if isinstance(container_id, str):
                    self._discard(container_id)
            raise
        results = list(self._side.map(
            lambda item: item[1] if isinstance(item[1], RuntimeFailure) else self._start_or_failure(item[1], item[0]),
            zip([c.runtime_name for c in containers], created, strict=True)))
        return PodStart(info, tuple(results))

    def _start_or_failure(self, container_id: str, name: str) -> ContainerInfo | RuntimeFailure:
        try:
            return self._start_created(container_id, name)
        except RuntimeFailure as err:
            return err

    def _create_container(self, spec: ContainerSpec) -> str:
        """Create; the id is held back from lists until `_start_created` or `_discard` lets it go."""
        name = spec.runtime_name
        with self._lock:
            self._creating.add(name)  # a list between the create and the next line must not see it
        try:
            with _translated(f"container {name}"):
                if spec.run_as_non_root:
                    self._check_non_root(spec)
                try:
                    created = self._create(spec)
                except docker.errors.APIError as exc:
                    raise RuntimeFailure(f"creating container {name}: {explain(exc)}", CREATE_CONTAINER_ERROR) from exc
            container_id = str(created["Id"])
            with self._lock:
                self._starting.add(container_id)
            return container_id
        finally:
            with self._lock:
                self._creating.discard(name)

    def _start_created(self, container_id: str, name: str, *, fixed_address: bool = False) -> ContainerInfo:
        with _translated(f"container {name}"):
            try:
                self._start_at(container_id, fixed_address)
                return self._inspect(container_id)
            except docker.errors.APIError as exc:
                self._discard(container_id)
                raise RuntimeFailure(f"starting container {name}: {explain(exc)}") from exc
            finally:
                with self._lock:
                    self._starting.discard(container_id)

    def _start_at(self, container_id: str, fixed_address: bool) -> None:
        """Start; a container at a fixed address waits while the container it replaces still holds it.
        Docker announces a container's exit (the agent then starts its replacement) before it has
        released its address, so the first starts may be refused for a moment."""
        deadline = time.monotonic() + _ADDRESS_WAIT
        pause = 0.02
        while True:
            try:
                self.client.api.start(container_id)
                return
            except docker.errors.APIError as exc:
                if not (fixed_address and _ADDRESS_IN_USE in explain(exc) and time.monotonic() < deadline):
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _discard(self, container_id: str) -> None:
        """Remove a container made for a start that failed."""
        self._forget(container_id)
        with contextlib.suppress(docker.errors.DockerException, OSError):
            self.client.api.remove_container(container_id, force=True, v=True)
        with self._lock:
            self._starting.discard(container_id)

    def _create(self, spec: ContainerSpec) -> Mapping[str, Any]:
        api = self.client.api
        try:
            return dict(api.create_container(**_create_args(spec, api)))
        except docker.errors.ImageNotFound:
            if spec.image not in self._images:
                raise
        # Removed since it was seen: forget it, get it as the policy says, and try once more.
        with self._lock:
            self._images.discard(spec.image)
        self.ensure_image(spec.image, spec.pull_policy)
        return dict(api.create_container(**_create_args(spec, api)))

    def _forget(self, container_id: str) -> None:
        with self._lock:
            self._inspected.pop(container_id, None)

    def _check_non_root(self, spec: ContainerSpec) -> None:
        """runAsNonRoot: the user the container would run as (its runAsUser, else the image's)
        must be a uid other than 0; a user name cannot be checked without the image's passwd."""
        if spec.run_as_user is not None:
            user = str(spec.run_as_user)
        else:
            user = str((self.client.api.inspect_image(spec.image).get("Config") or {}).get("User") or "")
        uid = user.partition(":")[0]
        if uid in ("", "0", "root"):
            raise RuntimeFailure("container has runAsNonRoot and image will run as root", CREATE_CONTAINER_CONFIG_ERROR)
        if not uid.isdigit():
            raise RuntimeFailure(f"container has runAsNonRoot and image has non-numeric user ({uid}), "
                                 "cannot verify user is non-root", CREATE_CONTAINER_CONFIG_ERROR)

    def stop(self, container_id: str, grace_seconds: float) -> None:
        # Docker sends the image's stop signal (SIGTERM by default), waits, then SIGKILLs.
        if self._feed is not None:
            self._feed.ours(container_id)
        with contextlib.suppress(ContainerNotFound), _translated(f"stopping container {container_id}"):
            self.client.api.stop(container_id, timeout=math.ceil(max(grace_seconds, 0.0)))

    def remove(self, container_id: str) -> None:
        if self._feed is not None:
            self._feed.ours(container_id)
        with contextlib.suppress(ContainerNotFound), _translated(f"removing container {container_id}"):
            try:
                self.client.api.remove_container(container_id, force=True, v=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or "already in progress" not in explain(exc):
                    raise
        self._forget(container_id)

    def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        api = self.client.api
        with _translated(f"exec in container {container_id}"):
            exec_id = api.exec_create(container_id, list(command), stdout=False, stderr=False)["Id"]
            api.exec_start(exec_id, detach=True)
            deadline = time.monotonic() + timeout
            pause = 0.005
            while True:
                info = api.exec_inspect(exec_id)
                if not info.get("Running") and info.get("ExitCode") is not None:
                    return int(info["ExitCode"])
                if time.monotonic() >= deadline:
                    raise ExecTimeout(f"exec in container {container_id}: no exit within {timeout:g}s")
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        with _translated(f"logs of container {container_id}"):
            stream = self.client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=follow,
                                          tail="all" if tail is None else max(tail, 0))
        return self._chunks(stream, container_id)

    @staticmethod
    def _chunks(stream: Iterator[bytes], container_id: str) -> Iterator[bytes]:
        with _translated(f"logs of container {container_id}"):
            yield from stream
