"""Benchmark: pod start with one configMap and one emptyDir volume, against the same pods without.

    python bench/volumes_bench.py [--runs N] [--replicas R]

Starts three real masters and one agent (`--runtime docker --network-mode none`) in a temporary
directory, always torn down. Each run deploys R replicas (default 10) of raftorch/busybox's httpd
twice, in alternating order: plain, and with a ConfigMap mounted at /etc/conf plus an emptyDir
at /cache. Measured: create call -> every replica Running, from a pod watch opened before the
create (as bench/agent_bench.py measures deployments). Prints each run, the medians and the
difference; the cost of volumes is the agent's work (reading the ConfigMap, writing its files,
making the directory) and Docker's bind mounts.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
from agent_observe import PodWatch, all_running, free_cluster_cidr, node_containers, remove_leftovers
from benchlib import wait_until

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import Conflict, NotFound
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters

IMAGE = "raftorch/busybox:latest"
NAMESPACE = "default"
CONFIG = "bench-conf"


def deployment(name: str, replicas: int, volumes: bool) -> objects_pb2.Deployment:
    labels = {"app": name}
    container = objects_pb2.Container(name="main", image=IMAGE)
    spec = objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=1)
    if volumes:
        container.volume_mounts.add(name="conf", mount_path="/etc/conf", read_only=True)
        container.volume_mounts.add(name="cache", mount_path="/cache")
        spec.volumes.add(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name=CONFIG))
        spec.volumes.add(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource())
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=NAMESPACE),
        spec=objects_pb2.DeploymentSpec(replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
                                        template=objects_pb2.PodTemplateSpec(
                                            metadata=objects_pb2.ObjectMeta(labels=labels), spec=spec)))


def deploy_once(c: Client, endpoints: list[str], docker_client: object, node: str, name: str, replicas: int,
                volumes: bool, timeout: float) -> float:
    watch = PodWatch(endpoints, name)
    try:
        watch.wait_synced(10.0)
        done = watch.expect(all_running(replicas))
        t0 = time.time()
        c.objects.create(deployment(name, replicas, volumes))
        if not done.done.wait(timeout):
            raise TimeoutError(f"{name}: not all Running after {timeout:.0f}s: {watch.summary()}")
        total = done.at - t0
        for _ in range(20):
            try:
                c.objects.delete("deployment", name, NAMESPACE)
                break
            except NotFound:
                break
            except Conflict:
                time.sleep(0.05)
        if not wait_until(lambda: not node_containers(docker_client, [node]) and not watch.pods, timeout, 0.1):
            raise TimeoutError(f"{name}: containers left after delete")
        return total
    finally:
        watch.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    p.add_argument("--replicas", type=int, default=10, help="replicas per deployment (default 10)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for any one wait (default 120)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.replicas < 1:
        p.error("--runs and --replicas must be positive")
    client = docker.from_env()
    node = f"volbench-{secrets.token_hex(2)}"
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="raftorch-volumes-bench-") as tmp:
        root = Path(tmp)
        cidr = free_cluster_cidr(client)
        masters = LocalMasters(root / "masters", extra_args=["--cluster-cidr", cidr])
        agents = LocalAgents(root / "agents", masters.endpoints, [node], runtime="docker", network_mode="none",
                             ca_dir=masters.pki_dir)
        try:
            masters.start()
            masters.wait_ready(60.0)
            agents.start()
            with masters.client(timeout=10.0, retry_for=30.0) as c:
                if not wait_until(lambda: any(n.metadata.name == node for n in c.objects.list("nodes")[0]),
                                  60.0, 0.2):
                    raise TimeoutError("the agent did not register")
                c.objects.create(objects_pb2.ConfigMap(
                    metadata=objects_pb2.ObjectMeta(name=CONFIG, namespace=NAMESPACE),
                    data={"default.conf": "server { listen 8080; }\n", "mode": "fast"}))
                for run in range(args.runs):
                    for volumes in ((False, True) if run % 2 == 0 else (True, False)):
                        kind = "volumes" if volumes else "plain"
                        t = deploy_once(c, masters.endpoints, client, node, f"bench-{kind}-{run}", args.replicas,
                                        volumes, args.timeout)
                        times[volumes].append(t)
                        print(f"run {run + 1}, {kind}: {args.replicas} replicas Running in {t:.2f} s", flush=True)
        finally:
            agents.stop()
            masters.stop()
            remove_leftovers(client, [node])
            for volume in client.volumes.list(filters={"label": f"raftorch.io/node={node}"}):
                volume.remove(force=True)
            client.close()
    plain, with_volumes = statistics.median(times[False]), statistics.median(times[True])
    print(f"\n{args.replicas} replicas, median of {args.runs}: plain {plain:.2f} s, with a configMap and an emptyDir "
          f"{with_volumes:.2f} s: {with_volumes - plain:+.2f} s ({(with_volumes / plain - 1) * 100:+.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
