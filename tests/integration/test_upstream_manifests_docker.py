"""Kubernetes manifests written for upstream images apply and run unchanged on real Docker: the
guestbook's Redis leader (emptyDir at /data) and nginx with its site from a ConfigMap.

The images are Debian's redis and nginx, built offline by scripts/build_app_images.sh and tagged
with the names the manifests use (there is no registry to pull from here)."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from raftorch.api.v1 import objects_pb2
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.client.portforward import PortForwarder, resolver
from raftorch.local.masters import LocalMasters
from tests.integration._docker import docker_cluster, docker_for_nodes
from tests.integration._wait import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NODE = "upstream-a"
IMAGES = ("docker.io/redis:6.0.5", "nginx:1.25")


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    for client in docker_for_nodes((NODE,)):
        missing = [image for image in IMAGES if not has_image(client, image)]
        if missing:
            pytest.fail(f"images {missing} missing: run scripts/build_app_images.sh (as root)")
        yield client


def has_image(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[LocalMasters]:
    with docker_cluster(tmp_path_factory.mktemp("upstream-cluster"), [NODE]) as (masters, _):
        yield masters



def apply(masters: LocalMasters, tmp_path: Path, manifest: str) -> str:
    result = CliRunner().invoke(cli, ["--endpoints", ",".join(masters.endpoints), "--config",
                                      str(tmp_path / "no-config"), "apply", "-f", str(EXAMPLES / manifest)])
    assert result.exit_code == 0, result.output
    return result.output


def ready_pods(c: Client, app: str) -> list[objects_pb2.Pod]:
    pods = [p for p in c.objects.list("pods", "default", label_selector=f"app={app}")[0]
            if isinstance(p, objects_pb2.Pod)]
    return [p for p in pods if p.status.phase == "Running" and p.status.container_statuses
            and all(s.ready for s in p.status.container_statuses)]


@pytest.fixture
def forward(cluster: LocalMasters) -> Iterator[Callable[[str, int], int]]:
    """forward("service/NAME", port) -> a local port forwarded to it, as `raftctl port-forward`."""
    opened: list[tuple[Client, PortForwarder, threading.Thread]] = []

    def start(ref: str, port: int) -> int:
        client = cluster.client()
        pf = PortForwarder(client, resolver(client, ref, "default", port), 0)
        thread = threading.Thread(target=pf.serve_forever, name="port-forward", daemon=True)
        thread.start()
        opened.append((client, pf, thread))
        return pf.port

    yield start
    for client, pf, thread in opened:
        pf.close()
        thread.join(5)
        client.close()


def redis(port: int, *command: str) -> bytes:
    """One command in Redis's protocol; the first reply line."""
    wire = f"*{len(command)}\r\n".encode() + b"".join(
        f"${len(part.encode())}\r\n".encode() + part.encode() + b"\r\n" for part in command)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(wire)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n")[0]


def test_the_guestbook_redis_leader_runs_and_keeps_its_data_in_the_empty_dir(
        cluster: LocalMasters, docker_client: Any, forward: Callable[[str, int], int], tmp_path: Path) -> None:
    out = apply(cluster, tmp_path, "guestbook/redis-leader.yaml")
    assert "deployment.apps/redis-leader created" in out and "service/redis-leader created" in out, out
    with cluster.client() as c:
        eventually(lambda: len(ready_pods(c, "redis")) == 1, what="the redis leader Running")
        pod = ready_pods(c, "redis")[0]
    port = forward("service/redis-leader", 6379)
    assert redis(port, "PING") == b"+PONG"
    assert redis(port, "SET", "guestbook", "hello") == b"+OK"
    assert redis(port, "GET", "guestbook") == b"$5"
    assert redis(port, "SAVE") == b"+OK"

    # Redis wrote its snapshot to /data, which is the pod's emptyDir on the node.
    found = docker_client.api.containers(filters={"label": [f"raftorch.io/pod-uid={pod.metadata.uid}",
                                                             "raftorch.io/container=leader"]})
    assert len(found) == 1, found
    mounts = {m["Destination"]: m for m in docker_client.api.inspect_container(found[0]["Id"])["Mounts"]}
    data_dir = Path(mounts["/data"]["Source"])
    assert (data_dir / "dump.rdb").is_file()
    assert b"guestbook" in (data_dir / "dump.rdb").read_bytes()


def test_nginx_serves_the_site_from_its_config_map(cluster: LocalMasters, forward: Callable[[str, int], int],
                                                   tmp_path: Path) -> None:
    out = apply(cluster, tmp_path, "nginx-configmap.yaml")
    for created in ("configmap/nginx-conf created", "deployment.apps/nginx created", "service/nginx created"):
        assert created in out, out
    with cluster.client() as c:
        # Ready means nginx answered the probe on /healthz, a location only the ConfigMap's file has.
        eventually(lambda: len(ready_pods(c, "nginx")) == 2, what="both nginx replicas ready")
    port = forward("service/nginx", 80)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"hello from the nginx-conf ConfigMap\n"
