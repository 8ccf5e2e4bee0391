"""Fixtures for the tests that need a real Docker engine (marker `docker`).

Without a reachable daemon these tests are skipped, unless CI is set: then they fail, so a CI
that forgot to start Docker cannot pass them silently. Images come from scripts/build_images.sh
(offline, from the host's busybox); the tests run a session tag of raftorch/busybox, and every
container they make is on a node name of this session, so the clean-up removes only those,
plus that tag.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from raftorch.agent.runtime.base import LABEL_NODE, RuntimeUnavailable
from raftorch.agent.runtime.docker import DockerRuntime

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "raftorch/busybox:latest"
SESSION = uuid.uuid4().hex[:10]
TEST_LABEL = "raftorch.io/test-session"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unreachable() -> str | None:
    """Why the daemon cannot be used, or None."""
    try:
        DockerRuntime(timeout=5).close()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session", autouse=True)
def _docker_available() -> None:
    reason = _unreachable()
    if reason is None:
        return
    message = f"the Docker daemon is unreachable: {reason}"
    if _in_ci():
        pytest.fail(f"{message} (CI is set: the docker tests must run; start dockerd first)", pytrace=False)
    pytest.skip(f"{message} (start it with `dockerd &` to run these)")


@pytest.fixture(scope="session")
def docker_client(_docker_available: None) -> Iterator[Any]:
    runtime = DockerRuntime()
    yield runtime.client
    runtime.close()


@pytest.fixture(scope="session")
def node() -> str:
    """A node name of this session only: every test container carries it, and the clean-up goes by it."""
    return f"docker-test-{SESSION}"


@pytest.fixture(scope="session")
def image(docker_client: Any) -> Iterator[str]:
    subprocess.run(["bash", str(ROOT / "scripts" / "build_images.sh")], check=True, timeout=300)
    tag = f"raftorch-test/busybox:{SESSION}"
    docker_client.images.get(BASE_IMAGE).tag(tag)
    yield tag
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.images.remove(tag)  # only this session's tag: raftorch/busybox stays for demos


@pytest.fixture
def runtime(docker_client: Any, node: str) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(pull_timeout=30)
    yield rt
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={node}"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    rt.close()
