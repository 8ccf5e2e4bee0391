"""Container runtimes: the interface (`base`), Docker (`docker`), host processes (`process`), in-memory (`fake`).

Only the interface is imported here, so choosing the process or fake runtime never loads the Docker SDK.
"""

from __future__ import annotations

from raftorch.agent.runtime.base import (
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    ImagePullError,
    PortMapping,
    RuntimeFailure,
    RuntimeUnavailable,
    container_spec,
)

__all__ = [
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerRuntime",
    "ContainerSpec",
    "ExecTimeout",
    "ImagePullError",
    "PortMapping",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "container_spec",
]
