"""An in-memory runtime for unit tests and hollow nodes: containers "run" until stopped or told to exit.

Thread-safe, and every call is recorded in `calls` so tests can assert what the agent did. Images
pull successfully unless `fail_image` says otherwise; "present" images are the ones pulled or
added with `add_image`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from raftorch.agent.runtime.base import (
    ERR_IMAGE_NEVER_PULL,
    EXITED,
    LABEL_MANAGED,
    LABEL_NODE,
    PULL_ALWAYS,
    PULL_NEVER,
    RUNNING,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    ImagePullError,
    RuntimeFailure,
    exit_reason,
)

__all__ = ["FakeRuntime"]

# What a stopped container exits with: killed by SIGTERM, or by SIGKILL when it ignores TERM.
SIGTERM_EXIT = 143
SIGKILL_EXIT = 137


class FakeRuntime(ContainerRuntime):
    name = "fake"

    def __init__(self, clock: Callable[[], float] = time.time, ip_prefix: str = "10.88.") -> None:
        self.clock = clock
        self.ip_prefix = ip_prefix
        self.images: set[str] = set()
        self.calls: list[tuple[str, ...]] = []
        self.specs: dict[str, ContainerSpec] = {}
        self._containers: dict[str, ContainerInfo] = {}
        self._logs: dict[str, bytearray] = {}
        self._image_failures: dict[str, str] = {}
        self._start_failures: dict[str, RuntimeFailure] = {}
        self._exec_results: dict[str, int | None] = {}
        self._ignores_term: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- test helpers ---------------------------------------------------------------------

    def add_image(self, image: str) -> None:
        with self._lock:
            self.images.add(image)

    def fail_image(self, image: str, message: str = "") -> None:
        """Pulls of `image` fail with `message` (and the image is not present) until `heal_image`."""
        with self._lock:
            self._image_failures[image] = message or f'failed to pull image "{image}": not found'
            self.images.discard(image)

    def heal_image(self, image: str) -> None:
        with self._lock:
            self._image_failures.pop(image, None)

    def fail_start(self, image: str, error: RuntimeFailure | None = None) -> None:
        """Containers of `image` fail to start (after a successful pull)."""
        with self._lock:
            self._start_failures[image] = error or RuntimeFailure(f"cannot start {image}")

    def exit(self, container_id: str, code: int, reason: str = "", at: float | None = None,
             killed: bool = False) -> None:
        """Make a running container exit, as if its process had ended (`killed`: by a signal from outside)."""
        with self._lock:
            info = self._get(container_id)
            self._containers[container_id] = replace(
                info, state=EXITED, exit_code=code, reason=reason or exit_reason(code),
                finished_at=self.clock() if at is None else at, killed=killed)

    def set_exec_result(self, container_id: str, code: int | None) -> None:
        """What `exec` in this container returns from now on; None makes it time out."""
        with self._lock:
            self._exec_results[container_id] = code

    def ignore_term(self, container_id: str) -> None:
        """The container ignores SIGTERM: `stop` ends it with SIGKILL."""
        with self._lock:
            self._ignores_term.add(container_id)

    def write_log(self, container_id: str, data: bytes) -> None:
        with self._lock:
            self._logs.setdefault(container_id, bytearray()).extend(data)

    def add_container(self, info: ContainerInfo) -> None:
        """Put a container there directly, as if a previous agent had started it."""
        with self._lock:
            self._containers[info.id] = info

    def container(self, container_id: str) -> ContainerInfo:
        with self._lock:
            return self._get(container_id)

    def find(self, pod_uid: str, container: str) -> list[ContainerInfo]:
        """A pod container's containers, oldest attempt first."""
        with self._lock:
            found = [c for c in self._containers.values() if c.pod_uid == pod_uid and c.container == container]
        return sorted(found, key=lambda c: c.attempt)

    def _get(self, container_id: str) -> ContainerInfo:
        try:
            return self._containers[container_id]
        except KeyError:
            raise ContainerNotFound(f"no such container: {container_id}") from None

    # -- the runtime ----------------------------------------------------------------------

    def list_containers(self, node: str) -> list[ContainerInfo]:
        with self._lock:
            return [c for c in self._containers.values()
                    if c.labels.get(LABEL_MANAGED) == "true" and c.labels.get(LABEL_NODE) == node]

    def image_present(self, image: str) -> bool:
        with self._lock:
            return image in self.images

    def ensure_image(self, image: str, policy: str) -> None:
        with self._lock:
            self.calls.append(("ensure_image", image, policy))
            if policy == PULL_NEVER:
                if image not in self.images:
                    raise ImagePullError(f'container image "{image}" is not present with pull policy of Never',
                                         image=image, reason=ERR_IMAGE_NEVER_PULL)
                return
            if image in self.images and policy != PULL_ALWAYS:
                return
            failure = self._image_failures.get(image)
            if failure is not None:
                raise ImagePullError(failure, image=image)
            self.images.add(image)

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        with self._lock:
            self.calls.append(("create_and_start", spec.runtime_name))
            failure = self._start_failures.get(spec.image)
            if failure is not None:
                raise failure
            number = next(self._ids)
            container_id = f"fake{number:06d}"
            info = ContainerInfo(
                id=container_id, state=RUNNING, labels=spec.labels(), name=spec.runtime_name, image=spec.image,
                started_at=self.clock(),
                ip=spec.ip_address or f"{self.ip_prefix}{number // 250 % 256}.{number % 250 + 1}")
            self._containers[container_id] = info
            self.specs[container_id] = spec
            return info

    def stop(self, container_id: str, grace_seconds: float) -> None:
        with self._lock:
            self.calls.append(("stop", container_id, f"{grace_seconds:g}"))
            info = self._containers.get(container_id)
            if info is None or info.state != RUNNING:
                return
            code = SIGKILL_EXIT if container_id in self._ignores_term else SIGTERM_EXIT
            self._containers[container_id] = replace(info, state=EXITED, exit_code=code, reason="Error",
                                                     finished_at=self.clock())

    def remove(self, container_id: str) -> None:
        with self._lock:
            self.calls.append(("remove", container_id))
            self._containers.pop(container_id, None)
            self._logs.pop(container_id, None)

    def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        with self._lock:
            self.calls.append(("exec", container_id, *command))
            info = self._get(container_id)
            if info.state != RUNNING:
                raise RuntimeFailure(f"container {container_id} is not running")
            code = self._exec_results.get(container_id, 0)
        if code is None:
            raise ExecTimeout(f"exec in {container_id}: no exit within {timeout:g}s")
        return code

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        with self._lock:
            self._get(container_id)
            data = bytes(self._logs.get(container_id, b""))
        lines = data.splitlines(keepends=True)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return iter(lines)

