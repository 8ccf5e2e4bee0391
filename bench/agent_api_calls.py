"""Every Docker API call the agent makes to start pods and to replace a killed container, counted.

    python bench/agent_api_calls.py [--replicas N] [--kills K]

Starts three masters and one agent (network mode none) whose Docker URL is a unix socket in a temporary directory:
a proxy there relays every byte to /var/run/docker.sock and records each request line (method
and path, ids and query strings folded). Creates a deployment of N replicas (default 10) of
raftorch/busybox:latest, waits until all run, kills K containers (default 3) one after the
other, waiting for each replacement, and prints the calls per phase, per pod. Always torn down.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
from agent_observe import PodWatch, all_running, free_cluster_cidr, remove_leftovers, restarted

from raftorch.api.v1 import objects_pb2
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters

DOCKER_SOCKET = "/var/run/docker.sock"
IMAGE = "raftorch/busybox:latest"
REQUEST = re.compile(rb"(?:^|\r\n)(GET|POST|DELETE|HEAD|PUT) (\S+) HTTP/1\.[01]\r\n")


def fold(path: str) -> str:
    """/v1.41/containers/<id>/json?x=y -> /containers/{id}/json"""
    path = re.sub(r"^/v[0-9.]+", "", path.split("?")[0])
    path = re.sub(r"^/images/.+/json$", "/images/{name}/json", path)
    return re.sub(r"^/(containers|exec|networks)/(?!json$|create$)[^/]+", r"/\1/{id}", path)


class Proxy:
    """A unix socket relaying to the Docker daemon, counting requests by method and folded path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self.calls)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(DOCKER_SOCKET)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if count:
                    for method, path in REQUEST.findall(data):
                        with self._lock:
                            self.calls[f"{method.decode()} {fold(path.decode())}"] += 1
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def deployment(name: str, replicas: int) -> objects_pb2.Deployment:
    labels = {"app": name}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="main", image=IMAGE)],
                                         termination_grace_period_seconds=1))))


def print_phase(title: str, before: collections.Counter[str], after: collections.Counter[str], per: int) -> None:
    diff = after - before
    print(f"{title}: {sum(diff.values())} calls" + (f", {sum(diff.values()) / per:.1f} per pod" if per else ""))
    for call, n in sorted(diff.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  " + (f"{n / per:5.1f}/pod  " if per else "") + call)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=10)
    p.add_argument("--kills", type=int, default=3)
    args = p.parse_args(argv)
    client = docker.from_env()
    node = f"apicalls-{secrets.token_hex(2)}"
    with tempfile.TemporaryDirectory(prefix="raftorch-api-calls-") as tmp:
        root = Path(tmp)
        proxy = Proxy(root / "docker.sock")
        cidr = free_cluster_cidr(client)
        masters = LocalMasters(root / "masters", extra_args=["--cluster-cidr", cidr])
        os.environ["RAFTORCH_AGENT_DOCKER_URL"] = f"unix://{proxy.path}"  # the agent's environment
        agents = LocalAgents(root / "agents", masters.endpoints, [node], ca_dir=masters.pki_dir)
        try:
            masters.start()
            masters.wait_ready(60.0)
            agents.start()
            watch = PodWatch(masters.endpoints, "calls")
            watch.wait_synced(30.0)
            time.sleep(3.0)  # the agent registered and is idle
            idle0 = proxy.snapshot()
            time.sleep(5.0)
            idle = proxy.snapshot()
            print_phase("idle agent, 5 s, no pods", idle0, idle, 0)
            done = watch.expect(all_running(args.replicas))
            with masters.client() as c:
                c.objects.create(deployment("calls", args.replicas))
                if not done.done.wait(120):
                    raise TimeoutError(f"not all Running: {watch.summary()}")
            time.sleep(1.0)
            started = proxy.snapshot()
            print_phase(f"deployment of {args.replicas}: create -> all Running (+1 s)", idle, started, args.replicas)
            for i in range(args.kills):
                uid, view = sorted(watch.snapshot().items(), key=lambda kv: kv[1].name)[i % args.replicas]
                m = watch.expect(restarted(uid, view.restart_count, view.container_id))
                client.api.kill(view.container_id)
                if not m.done.wait(60):
                    raise TimeoutError(f"{view.name} not replaced")
                time.sleep(1.0)
            killed = proxy.snapshot()
            print_phase(f"{args.kills} kills -> replacements Running (+1 s each)", started, killed, args.kills)
            watch.close()
        finally:
            agents.stop()
            masters.stop()
            remove_leftovers(client, [node])
            proxy.close()
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
