"""A warm pool of started pod sandboxes on one node (`raftorch-agent --sandbox-pool N`).

A pod of several containers starts on Docker as one container more: the sandbox, which holds
the network namespace (a veth pair on the pod bridge, an address), and the pod's containers
joining it. The sandbox's start is the dearer half (bench/agent_bench.py). With a pool, the
agent starts sandboxes ahead while no pod is starting, and a new pod claims one: its
containers start at once in it. Pods of one container have no sandbox (they run as that one
container, see raftorch/agent/addresses.py) and take none from the pool.

Pool containers carry the labels managed, node and role `pool`, and no pod: the runtime's
lists leave them out, so they are never taken for pods. Docker cannot change a container's
labels, so a claim renames the container to `raftorch_<namespace>_<pod>_POD_<uid>_<attempt>`,
and the name is what makes it that pod's sandbox from then on (`claimed_labels`), also for an
agent restarted later. Unclaimed pool containers stay when the agent stops (a restarted agent
takes them back), and go with `--uninstall`, or when the pool is made smaller.

The price: Docker gives a container that joins another's network the other's hostname, fixed
when that one was created. In a claimed sandbox, the pod's containers see the pool container's
hostname, not the pod's name. Docker offers no way around it: such a container gets a UTS
namespace of its own, named from the sandbox's configuration when it starts, and may not have a
hostname of its own; renaming the sandbox's namespace afterwards changes nothing for it
(bench/README.md, agent_bench.py). That is why the pool is off by default.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors
import structlog

from raftorch.agent.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_ROLE,
    ROLE_SANDBOX,
    SANDBOX_CONTAINER,
    ContainerSpec,
)

__all__ = ["POOL_PREFIX", "ROLE_POOL", "SandboxPool", "claimed_labels", "claimed_name", "is_unclaimed"]

log = structlog.get_logger("raftorch.agent.docker")

ROLE_POOL = "pool"
POOL_PREFIX = "raftorch-pool_"
# Refill only after no start has been under way for this long (seconds): pods first.
_IDLE_SECONDS = 0.5
_CHECK_SECONDS = 1.0


def claimed_name(spec: ContainerSpec) -> str:
    """The name a claimed pool container takes: the sandbox's own, with the whole pod uid (it is
    the only record of the claim)."""
    return f"raftorch_{spec.pod_namespace}_{spec.pod_name}_{SANDBOX_CONTAINER}_{spec.pod_uid}_{spec.attempt}"


def is_unclaimed(labels: Mapping[str, str], name: str) -> bool:
    return labels.get(LABEL_ROLE) == ROLE_POOL and name.lstrip("/").startswith(POOL_PREFIX)


def claimed_labels(labels: Mapping[str, str], name: str) -> dict[str, str]:
    """A pool container's labels as a sandbox's, when its name says which pod claimed it."""
    if labels.get(LABEL_ROLE) != ROLE_POOL:
        return dict(labels)
    parts = name.lstrip("/").split("_")
    # Namespaces and pod names are DNS names: no "_" in them.
    if len(parts) != 6 or parts[0] != "raftorch" or parts[3] != SANDBOX_CONTAINER or not parts[5].isdigit():
        return dict(labels)
    return {**labels, LABEL_ROLE: ROLE_SANDBOX, LABEL_POD_NAMESPACE: parts[1], LABEL_POD_NAME: parts[2],
            LABEL_CONTAINER: SANDBOX_CONTAINER, LABEL_POD_UID: parts[4], LABEL_ATTEMPT: parts[5]}


class SandboxPool:
    """Up to `size` started pause containers on `network`, refilled in a thread while starts are idle.

    `busy()` tells whether the runtime is starting containers. `take()` hands out a running pool
    container's id (the caller renames it) or None."""

    def __init__(self, client: Any, node: str, network: str, image: str, size: int,
                 busy: Callable[[], bool]) -> None:
        self._client = client
        self.node = node
        self.network = network
        self.image = image
        self.size = size
        self._busy = busy
        self._lock = threading.Lock()
        self._ready: list[str] = []
        self._idle_since = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sandbox-pool {node}", daemon=True)

    def start(self) -> None:
        self._adopt()
        self._thread.start()

    def close(self) -> None:
        """Stop refilling; the pool's containers stay for the next agent."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def fits(self, spec: ContainerSpec) -> bool:
        """Whether a pooled sandbox can serve as `spec`: no host ports and no fixed address (both are
        set when a container is created), the same image and network."""
        return (self.size > 0 and spec.container == SANDBOX_CONTAINER and not spec.ports and not spec.ip_address
                and spec.network == self.network and spec.image == self.image)

    def take(self) -> str | None:
        with self._lock:
            taken = self._ready.pop() if self._ready else None
        self._wake.set()
        return taken

    def ready(self) -> list[str]:
        with self._lock:
            return list(self._ready)

    def wait_full(self, timeout: float) -> bool:
        """For tests: wait until the pool holds `size` containers."""
        deadline = time.monotonic() + timeout
        while len(self.ready()) < self.size:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _list(self) -> list[Mapping[str, Any]]:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_NODE}={self.node}", f"{LABEL_ROLE}={ROLE_POOL}"]}
        return [c for c in self._client.api.containers(all=True, filters=filters)
                if is_unclaimed(c.get("Labels") or {}, str((c.get("Names") or [""])[0]))]

    def _adopt(self) -> None:
        """Take back the running pool containers of an earlier agent (as many as fit); remove the rest."""
        for summary in self._list():
            container_id = str(summary["Id"])
            fits = (summary.get("State") == "running" and summary.get("Image") == self.image
                    and self.network in ((summary.get("NetworkSettings") or {}).get("Networks") or {}))
            with self._lock:
                keep = fits and len(self._ready) < self.size
                if keep:
                    self._ready.append(container_id)
            if not keep:
                self._remove(container_id)

    def _remove(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.DockerException, OSError):
            self._client.api.remove_container(container_id, force=True, v=True)

    def forget(self, container_id: str) -> None:
        """A pool container that exited: out of the pool, and removed."""
        with self._lock:
            if container_id in self._ready:
                self._ready.remove(container_id)
        self._remove(container_id)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_CHECK_SECONDS)
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    missing = self.size - len(self._ready)
                if missing <= 0:
                    break
                if self._busy():
                    self._idle_since = time.monotonic()
                    self._stop.wait(0.1)
                    continue
                if time.monotonic() - self._idle_since < _IDLE_SECONDS:
                    self._stop.wait(0.1)
                    continue
                try:
                    self._add()
                except (docker.errors.DockerException, OSError) as exc:
                    log.warning("sandbox_pool_refill_failed", node=self.node, error=str(exc))
                    self._stop.wait(_CHECK_SECONDS)
                    break

    def _add(self) -> None:
        api = self._client.api
        token = secrets.token_hex(4)
        name = f"{POOL_PREFIX}{self.node}_{token}"
        labels = {LABEL_MANAGED: "true", LABEL_NODE: self.node, LABEL_ROLE: ROLE_POOL}
        created = api.create_container(
            self.image, name=name, labels=labels, detach=True, hostname=f"{self.node[:54]}-{token}",
            host_config=api.create_host_config(network_mode=self.network),
            networking_config=api.create_networking_config({self.network: api.create_endpoint_config()}))
        container_id = str(created["Id"])
        try:
            api.start(container_id)
        except docker.errors.APIError:
            self._remove(container_id)
            raise
        with self._lock:
            self._ready.append(container_id)
