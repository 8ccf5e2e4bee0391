"""The references bench/agent_bench.py measures in the same run as raftorch, on the same daemon.

- The floor ("raw Docker"): the same containers as the bench's pods (same image and default
  command, on the agent's pod bridge, with a hostname and labels) created and started through
  the Docker SDK's low-level API by a pool of threads, no raftorch at all. Every concurrency in
  `concurrencies` is tried in each run and the fastest counts: the most this daemon gives a
  client over its API.
- Docker Swarm: a single-node swarm is initialised on the daemon (only when it is in no swarm),
  `docker service create` of N replicas of the same image with restart delay 0, and its tasks
  polled every 50 ms through the API until all run (what `docker service ps` shows); kills of
  a task's container until a new task of that slot runs. The swarm is always left again, its
  services and the docker_gwbridge network it made removed, so nothing else sees a swarm.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.types import RestartPolicy, ServiceMode

FLOOR_LABEL = "raftorch.io/bench-floor"
SWARM_POLL_S = 0.05
GWBRIDGE = "docker_gwbridge"


@dataclass(slots=True)
class StartRun:
    """N containers started by a reference (the floor or Swarm)."""

    replicas: int
    total_s: float  # from just before the first create to the last container running
    first_s: float  # to the first container running
    concurrency: int = 0  # the floor's pool size that gave this run


@dataclass(slots=True)
class ReplaceRun:
    """A Swarm task's container killed (`docker kill`) until its slot runs a new one."""

    replaced_s: float


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


# -- the floor ---------------------------------------------------------------------------------------------


def remove_labelled(client: Any, label: str, timeout: float = 60.0) -> None:
    """Kill, then remove, every container with `label` (one at a time: concurrent forced removals have
    left stale endpoints on this daemon's bridges)."""
    api = client.api
    ids = [str(c["Id"]) for c in api.containers(all=True, filters={"label": label})]
    for container_id in ids:
        with contextlib.suppress(docker.errors.APIError):
            api.kill(container_id)
    for container_id in ids:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True, v=True)
    wait_for(lambda: not api.containers(all=True, filters={"label": label}), timeout)


def floor_once(client: Any, image: str, network: str, replicas: int, concurrency: int, tag: str) -> StartRun:
    api = client.api

    def start(i: int) -> float:
        host = api.create_host_config(network_mode=network)
        net = api.create_networking_config({network: {}})
        created = api.create_container(image, name=f"{tag}-{i}", hostname=f"{tag}-{i}"[:63], detach=True,
                                       labels={FLOOR_LABEL: tag, "app": tag}, host_config=host,
                                       networking_config=net)
        api.start(created["Id"])
        return time.time()

    t0 = time.time()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            running = list(pool.map(start, range(replicas)))
        return StartRun(replicas, max(running) - t0, min(running) - t0, concurrency)
    finally:
        remove_labelled(client, f"{FLOOR_LABEL}={tag}")


def floor_run(client: Any, image: str, network: str, replicas: int, concurrencies: tuple[int, ...],
              tag: str) -> StartRun:
    """The fastest of one run at each concurrency."""
    tries = [floor_once(client, image, network, replicas, c, f"{tag}-c{c}") for c in concurrencies]
    return min(tries, key=lambda r: r.total_s)


# -- Docker Swarm ------------------------------------------------------------------------------------------


def swarm_unavailable(client: Any) -> str:
    """Why the Swarm anchor cannot run here ("" if it can): a daemon already in a swarm is not touched."""
    try:
        state = str((client.info().get("Swarm") or {}).get("LocalNodeState", ""))
    except docker.errors.DockerException as exc:
        return f"docker info failed: {exc}"
    if state != "inactive":
        return f"this daemon's swarm state is {state or 'unknown'!r}, not 'inactive': left alone"
    return ""


class Swarm:
    """A single-node swarm for the length of a `with` block."""

    def __init__(self, client: Any, image: str, timeout: float) -> None:
        self.client = client
        self.image = image
        self.timeout = timeout
        self._services: list[str] = []
        self._had_gwbridge = False

    def __enter__(self) -> Swarm:
        self._had_gwbridge = bool(self.client.networks.list(names=[GWBRIDGE]))
        self.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        return self

    def __exit__(self, *exc: object) -> None:
        for service in self._services:
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_service(service)
        wait_for(lambda: not self._containers(), self.timeout, every=0.2)
        self.client.swarm.leave(force=True)
        wait_for(lambda: not swarm_unavailable(self.client), 30.0, every=0.2)
        if not self._had_gwbridge:
            for net in self.client.networks.list(names=[GWBRIDGE]):
                with contextlib.suppress(docker.errors.APIError):
                    net.remove()

    def _containers(self, service: str = "") -> list[str]:
        label = f"com.docker.swarm.service.name={service}" if service else "com.docker.swarm.service.name"
        return [str(c["Id"]) for c in self.client.api.containers(all=True, filters={"label": label})]

    def _create(self, name: str, replicas: int) -> str:
        service = self.client.services.create(
            self.image, name=name, mode=ServiceMode("replicated", replicas=replicas),
            restart_policy=RestartPolicy(condition="any", delay=0), stop_grace_period=1_000_000_000)
        self._services.append(service.id)
        return str(service.id)

    def _remove(self, service: str) -> None:
        self.client.api.remove_service(service)
        self._services.remove(service)
        name = service
        wait_for(lambda: not self.client.api.containers(
            all=True, filters={"label": f"com.docker.swarm.service.id={name}"}), self.timeout, every=0.1)

    def _running(self, service: str) -> list[dict[str, Any]]:
        tasks = self.client.api.tasks(filters={"service": service, "desired-state": "running"})
        return [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]

    def deploy(self, replicas: int, name: str) -> StartRun:
        """`service create` -> every task running."""
        t0 = time.time()
        service = self._create(name, replicas)
        first = math.nan
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            running = len(self._running(service))
            now = time.time()
            if running and math.isnan(first):
                first = now - t0
            if running >= replicas:
                total = now - t0
                break
            time.sleep(SWARM_POLL_S)
        else:
            raise TimeoutError(f"swarm service {name}: not all {replicas} tasks running after {self.timeout:.0f}s")
        self._remove(service)
        return StartRun(replicas, total, first)

    def kills(self, replicas: int, kills: int, name: str) -> Iterator[ReplaceRun]:
        """Kill the container of slot i % replicas, `kills` times; each until a new task of that slot runs."""
        service = self._create(name, replicas)
        try:
            if not wait_for(lambda: len(self._running(service)) >= replicas, self.timeout):
                raise TimeoutError(f"swarm service {name}: not all tasks running")
            time.sleep(1.0)
            for i in range(kills):
                slot = i % replicas + 1
                task = next(t for t in self._running(service) if t.get("Slot") == slot)
                old = task["Status"]["ContainerStatus"]["ContainerID"]

                def replaced(slot: int = slot, old: str = old) -> bool:
                    return any(t.get("Slot") == slot and t["Status"]["ContainerStatus"]["ContainerID"] != old
                               for t in self._running(service))

                t0 = time.time()
                self.client.api.kill(old)
                if not wait_for(replaced, self.timeout, every=SWARM_POLL_S):
                    raise TimeoutError(f"swarm service {name}: slot {slot} not replaced")
                yield ReplaceRun(time.time() - t0)
                time.sleep(0.5)
        finally:
            self._remove(service)
