"""What bench/agent_bench.py observes: the Docker daemon (containers, events, networks) and the
pods of a deployment through a Resources watch."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors

from raftorch.agent.runtime.base import LABEL_ATTEMPT, LABEL_MANAGED, LABEL_NODE, LABEL_POD_UID
from raftorch.agent.runtime.docker_pool import is_unclaimed
from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import RaftorchError

NAMESPACE = "default"
EVENT_ACTIONS = ("create", "start", "kill", "die", "destroy")


# -- Docker ------------------------------------------------------------------------------------------------


def docker_version(client: Any) -> str:
    v = client.version()
    return f"{v.get('Version', '?')} (API {v.get('ApiVersion', '?')})"


def node_containers(client: Any, nodes: Sequence[str], pods_only: bool = False) -> list[str]:
    """The ids of every container, running or not, labelled for one of `nodes` (one list call per node:
    the high-level `containers.list` inspects each one and fails on a container removed meanwhile).
    `pods_only`: not the agents' unclaimed pool sandboxes."""
    found: list[str] = []
    for node in nodes:
        found.extend(str(c["Id"]) for c in client.api.containers(all=True, filters={"label": f"{LABEL_NODE}={node}"})
                     if not (pods_only and is_unclaimed(c.get("Labels") or {}, str((c.get("Names") or [""])[0]))))
    return found


def pool_ready(client: Any, nodes: Sequence[str]) -> int:
    """Running unclaimed pool sandboxes on `nodes`."""
    return sum(1 for node in nodes for c in client.api.containers(filters={"label": f"{LABEL_NODE}={node}"})
               if is_unclaimed(c.get("Labels") or {}, str((c.get("Names") or [""])[0])))


def remove_leftovers(client: Any, nodes: Sequence[str]) -> int:
    """Force-remove the bench nodes' containers and pod networks; the number of containers removed."""
    removed = 0
    for container_id in node_containers(client, nodes):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container_id, force=True, v=True)
            removed += 1
    wanted = {f"raftorch-{n}" for n in nodes}
    for net in client.networks.list(names=sorted(wanted)):
        if net.name in wanted:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                net.remove()
    return removed


def docker_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    subnets = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError):
                subnets.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
    return subnets


def free_cluster_cidr(client: Any) -> str:
    """A 10.x.0.0/16 that overlaps no Docker network and not the default service or cluster CIDRs."""
    taken = [*docker_subnets(client), ipaddress.IPv4Network("10.96.0.0/16"), ipaddress.IPv4Network("10.244.0.0/16")]
    candidates = list(range(128, 240))
    random.shuffle(candidates)
    for second in candidates:
        net = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError("no free 10.x.0.0/16 for the cluster CIDR on this Docker daemon")


@dataclass(frozen=True, slots=True)
class DockerEvent:
    at: float  # the daemon's timestamp, seconds since the epoch
    action: str
    container_id: str
    pod_uid: str
    attempt: int


class DockerEvents:
    """Docker's container events for the bench's nodes, in a thread, with the daemon's timestamps."""

    def __init__(self, client: Any, nodes: Sequence[str]) -> None:
        self._nodes = set(nodes)
        self._stream = client.events(decode=True, filters={"type": "container", "label": f"{LABEL_MANAGED}=true"})
        self._lock = threading.Lock()
        self.events: list[DockerEvent] = []
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in self._stream:
                self._record(raw)
        except Exception as err:  # the stream is closed at the end: anything else is shown
            self.error = repr(err)

    def _record(self, raw: Mapping[str, Any]) -> None:
        action = str(raw.get("Action", "")).split(":")[0]
        attrs = (raw.get("Actor") or {}).get("Attributes") or {}
        if action not in EVENT_ACTIONS or attrs.get(LABEL_NODE) not in self._nodes:
            return
        at = int(raw.get("timeNano") or int(raw.get("time", 0)) * 10**9) / 1e9
        event = DockerEvent(at, action, str((raw.get("Actor") or {}).get("ID", raw.get("id", ""))),
                            str(attrs.get(LABEL_POD_UID, "")), int(attrs.get(LABEL_ATTEMPT, "0") or 0))
        with self._lock:
            self.events.append(event)

    def select(self, action: str, pod_uids: set[str] | None = None, container_id: str = "",
               attempt: int | None = None, since: float = 0.0) -> list[DockerEvent]:
        with self._lock:
            return [e for e in self.events if e.action == action and e.at >= since
                    and (pod_uids is None or e.pod_uid in pod_uids)
                    and (not container_id or e.container_id == container_id)
                    and (attempt is None or e.attempt == attempt)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


# -- the pod watch ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class PodView:
    name: str
    seen: float
    bound: float | None = None
    running: float | None = None  # first event with phase Running
    phase: str = ""
    restart_count: int = 0
    state: str = ""  # of the (only) container: waiting, running, terminated
    container_id: str = ""


@dataclass(slots=True)
class Milestone:
    """A condition on the watched pods, and the arrival time of the event that first made it true."""

    check: Callable[[Mapping[str, PodView]], bool]
    done: threading.Event = field(default_factory=threading.Event)
    at: float = math.nan


class PodWatch:
    """The pods of one deployment through a Resources watch (its own client), times in wall clock."""

    def __init__(self, endpoints: list[str], app: str) -> None:
        self._client = Client(endpoints, timeout=10.0, retry_for=60.0)
        self._watch = self._client.objects.watch("pods", NAMESPACE, label_selector=f"app={app}")
        self._lock = threading.Lock()
        self._pending: list[Milestone] = []
        self.pods: dict[str, PodView] = {}
        self.deleted: set[str] = set()
        self.error = ""
        self._thread = threading.Thread(target=self._run, name=f"watch-{app}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self._watch:
                now = time.time()
                with self._lock:
                    self._apply(ev.type, ev.object, now)
                    self._check(now)
        except RaftorchError as err:
            self.error = str(err)

    def _apply(self, kind: str, pod: Any, now: float) -> None:
        if not isinstance(pod, objects_pb2.Pod):
            return
        uid = pod.metadata.uid
        if kind == "DELETED":
            self.deleted.add(uid)
            self.pods.pop(uid, None)
            return
        view = self.pods.get(uid) or self.pods.setdefault(uid, PodView(pod.metadata.name, now))
        if view.bound is None and pod.spec.node_name:
            view.bound = now
        view.phase = pod.status.phase
        if view.running is None and view.phase == "Running":
            view.running = now
        if pod.status.container_statuses:
            cs = pod.status.container_statuses[0]
            view.restart_count, view.state, view.container_id = cs.restart_count, cs.state.state, cs.container_id

    def _check(self, now: float) -> None:
        for m in [m for m in self._pending if m.check(self.pods)]:
            m.at = now
            m.done.set()
            self._pending.remove(m)

    def expect(self, check: Callable[[Mapping[str, PodView]], bool]) -> Milestone:
        m = Milestone(check)
        with self._lock:
            self._pending.append(m)
            self._check(time.time())
        return m

    def wait_synced(self, timeout: float) -> None:
        if not self._watch.synced.wait(timeout):
            raise TimeoutError(f"pod watch not synced within {timeout:.0f}s {self.error}")

    def snapshot(self) -> dict[str, PodView]:
        with self._lock:
            return {uid: PodView(**asdict(v)) for uid, v in self.pods.items()}

    def summary(self) -> str:
        pods = self.snapshot()
        phases = [v.phase or "-" for v in pods.values()]
        counts = ", ".join(f"{p} {phases.count(p)}" for p in sorted(set(phases)))
        return f"{len(pods)} pods ({counts or 'none'}), {len(self.deleted)} deleted {self.error}".rstrip()

    def close(self) -> None:
        self._watch.close()
        self._client.close()


def all_running(replicas: int) -> Callable[[Mapping[str, PodView]], bool]:
    return lambda pods: sum(v.phase == "Running" for v in pods.values()) >= replicas


def restarted(uid: str, old_count: int, old_id: str) -> Callable[[Mapping[str, PodView]], bool]:
    def check(pods: Mapping[str, PodView]) -> bool:
        v = pods.get(uid)
        return (v is not None and v.restart_count == old_count + 1 and v.state == "running"
                and v.phase == "Running" and v.container_id not in ("", old_id))
    return check
