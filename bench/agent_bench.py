"""Benchmark of the agent with the Docker runtime: deployments to Running, restarts, memory.

    python bench/agent_bench.py [--quick] [--runs N] [--agents K] [--profile DIR] [--json]

Starts three real masters (`LocalMasters`) and K agents (`LocalAgents`, default 1) with
`--runtime docker --network-mode none` on this host, in a temporary directory, always torn down
(agents, masters, then every container and pod network labelled for the bench's nodes; also on
Ctrl-C). Pods run `raftorch/busybox:latest` with its default command (httpd on 8080) and a grace
period of 1 s. Node names carry a random suffix, and the cluster CIDR is a /16 free on this Docker
daemon, so other clusters on the same daemon are not disturbed.

Measured, N runs each (default 5; 2 with --quick), all times in wall-clock seconds:

- deployment of 10 (then 50) replicas: from just before the create call to the moment this
  process's pod watch (`client.objects.watch("pods", "default", label_selector="app=<name>")`,
  opened and synced before the create) delivers the event that makes every replica's
  status.phase "Running", as the agent reported it. Broken down with the same watch (all pods
  created by the controller, all bound by the scheduler) and Docker's own event stream (first
  container created, last container started: daemon timestamps). Between runs the deployment is
  deleted and the bench waits until no container labelled raftorch.io/node=<bench node> is left
  (that wait is shown as "delete -> containers gone").
- a killed container: one deployment of 5 replicas; kill i (of --kills, default 10) kills the
  container of pod i % 5 (each pod is killed twice: a second kill of the same pod must not wait
  for a crash-loop back-off) with the Docker SDK (`container.kill()`, SIGKILL). Two end points:
  * "reported": the first watch event of that pod with restart_count = old + 1, the container's
    state "running" with a new container id, and phase Running - what a client sees;
  * "runtime": Docker's `start` event of the replacement container (label raftorch.io/pod-uid, attempt
    label old + 1) - when the new container was running.
  Broken down into kill -> die (daemon), die -> create of the replacement (the agent noticing),
  create -> start (Docker), start -> reported (the agent's report, the masters' write, the watch).
- agent memory: VmRSS and VmHWM from /proc/<pid>/status of every agent process once all 50
  replicas run (the largest over the runs; VmHWM is the peak since the agent started), and
  VmRSS before any deployment.

In the same run, on the same daemon (bench/agent_anchors.py): the floor, the same containers
started through the Docker SDK with no raftorch at the fastest of --floor-concurrency (default
2 4 8), and Docker Swarm (a single-node swarm made for the purpose and left again; skipped with
--no-swarm or when the daemon is already in a swarm): `service create` of the same replicas and
kills of a task's container with restart delay 0. The side-by-side table gives raftorch / Swarm
and raftorch / floor from medians of this run; the targets are those ratios (issue 16).

`--sandbox-pool N` starts the agents with `--sandbox-pool N` (default 0, the agent's default): each
measurement then begins once every node's pool holds N started sandboxes, as on a node at rest.
`--start-concurrency N` passes the agents' option of that name (pod starts under way at once).

`--profile DIR` runs `py-spy record --format raw --nonblocking` on every agent during the first
run of the largest deployment (create -> all Running) and during the whole kill phase (one file
per agent and phase, for flamegraph.pl or speedscope).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from agent_anchors import ReplaceRun, StartRun, Swarm, floor_run, swarm_unavailable
from agent_observe import (
    DockerEvent,
    DockerEvents,
    PodWatch,
    all_running,
    docker_version,
    free_cluster_cidr,
    node_containers,
    pool_ready,
    remove_leftovers,
    restarted,
)
from benchlib import cpu_seconds, leaderships, memory_mb, wait_until

from raftorch.agent.runtime.base import LABEL_ATTEMPT
from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import Conflict, NotFound
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters

IMAGE = "raftorch/busybox:latest"
NAMESPACE = "default"
GRACE_SECONDS = 1  # 0 would mean the default of 30 s; httpd as PID 1 ignores SIGTERM
PY_SPY = Path(sys.executable).parent / "py-spy"

KILL_REPLICAS = 5
# Same-run ratios (issue 16): raftorch's median over Swarm's, and over the floor's.
TARGET_VS_SWARM = {10: 1.0, 50: 0.9}
TARGET_VS_FLOOR = 1.25
TARGET_RESTART_MAX_S = 2.0
TARGET_RSS_MB = 60.0
K3S_RSS = "k3s agent ~275 MB"

Row = tuple[str, str, str, str, str]  # metric, figure, target, reference, verdict


@dataclass(frozen=True, slots=True)
class Settings:
    runs: int
    agents: int
    replicas: tuple[int, ...]
    timeout_s: float
    profile_dir: Path | None
    logs_dir: Path | None
    kills: int = 10
    floor_concurrency: tuple[int, ...] = (2, 4, 8)
    swarm: bool = True
    sandbox_pool: int = 0  # the agents' --sandbox-pool
    start_concurrency: int = 0  # the agents' --start-concurrency; 0: their default


# -- small helpers -----------------------------------------------------------------------------------








def spread(samples: Sequence[float]) -> tuple[float, float, float]:
    """Median, min and max (nan for no samples)."""
    clean = [s for s in samples if math.isfinite(s)]
    if not clean:
        return math.nan, math.nan, math.nan
    return statistics.median(clean), min(clean), max(clean)


def fmt_spread(samples: Sequence[float], digits: int = 2) -> str:
    med, lo, hi = spread(samples)
    if not math.isfinite(med):
        return "n/a"
    return f"{med:.{digits}f} s ({lo:.{digits}f}-{hi:.{digits}f})"


def fmt_median(samples: Sequence[float], digits: int = 2) -> str:
    med = spread(samples)[0]
    return "n/a" if not math.isfinite(med) else f"{med:.{digits}f} s"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def deployment(name: str, replicas: int) -> objects_pb2.Deployment:
    labels = {"app": name}
    container = objects_pb2.Container(name="main", image=IMAGE,
                                      ports=[objects_pb2.ContainerPort(name="http", container_port=8080)])
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=NAMESPACE),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=GRACE_SECONDS))))


# -- profiling -------------------------------------------------------------------------------------------------


class Profiler:
    """py-spy record on the agents for one phase, idle threads included (wall-clock attribution: the
    agent mostly waits on Docker); stopped with SIGINT so it writes its file."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, pids: Mapping[str, int], label: str) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            out = self.out_dir / f"agent-{name}-{label}.txt"
            self._procs.append(subprocess.Popen(
                [str(PY_SPY), "record", "-p", str(pid), "-f", "raw", "-o", str(out), "--nonblocking", "--idle",
                 "-r", "200"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


# -- the cluster ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Bench:
    settings: Settings
    masters: LocalMasters
    agents: LocalAgents
    client: Client
    docker: Any
    events: DockerEvents
    profiler: Profiler
    swarm: Swarm | None
    delete_conflicts: int = 0

    @property
    def nodes(self) -> list[str]:
        return list(self.agents.agents)

    def agent_pids(self) -> dict[str, int]:
        return {n: a.proc.pid for n, a in self.agents.agents.items() if a.proc is not None}

    def agent_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.agent_pids().values())

    def agent_memory(self) -> dict[str, dict[str, float]]:
        return {n: memory_mb(pid) for n, pid in self.agent_pids().items()}

    def containers(self) -> int:
        return len(node_containers(self.docker, self.nodes, pods_only=True))

    def wait_pool(self) -> None:
        """With --sandbox-pool: a node at rest, its pool full (made while no pod starts), before a measurement."""
        wanted = self.settings.sandbox_pool * len(self.nodes)
        if wanted and not wait_until(lambda: pool_ready(self.docker, self.nodes) >= wanted, self.settings.timeout_s,
                                     every=0.1):
            raise TimeoutError(f"sandbox pools not full after {self.settings.timeout_s:.0f}s")

    def elections(self) -> int:
        return sum(leaderships(self.masters).values())




def nodes_ready(client: Client, names: Sequence[str]) -> bool:
    nodes, _ = client.objects.list("nodes")
    ready = {n.metadata.name for n in nodes if isinstance(n, objects_pb2.Node)
             and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)}
    return set(names) <= ready


def delete_deployment(b: Bench, name: str, attempts: int = 10) -> None:
    """Delete unconditionally. The masters answer Conflict when a controller wrote the deployment between
    their read and their commit, although no resource_version was given: retried here, and counted."""
    for attempt in range(attempts):
        try:
            b.client.objects.delete("deployment", name, NAMESPACE)
            return
        except NotFound:
            return
        except Conflict:
            b.delete_conflicts += 1
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def delete_and_wait(b: Bench, name: str, watch: PodWatch, timeout: float) -> float:
    """Delete a deployment; seconds until no bench container is left and every pod is gone."""
    started = time.time()
    delete_deployment(b, name)
    if not wait_until(lambda: b.containers() == 0 and not watch.pods, timeout, every=0.1):
        raise TimeoutError(f"deployment {name} not gone after {timeout:.0f}s: {b.containers()} containers, "
                           f"{watch.summary()}")
    return time.time() - started


# -- deployments ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeployRun:
    replicas: int
    total_s: float  # create call -> every replica Running, from the watch
    create_call_s: float
    all_created_s: float  # every replica seen by the watch
    all_bound_s: float
    first_container_create_s: float  # Docker's create event of the first container
    last_container_start_s: float  # Docker's start event of the last container
    first_running_s: float
    agent_cpu_s: float
    elections: int = 0  # leader elections between the create call and all Running
    delete_s: float = math.nan
    memory: dict[str, dict[str, float]] = field(default_factory=dict)


def docker_marks(b: Bench, uids: set[str], since: float, replicas: int) -> tuple[float, float]:
    """Times of the first container create and the last start of these pods (waits for the events)."""
    wait_until(lambda: len(b.events.select("start", uids, since=since)) >= replicas, 5.0)
    creates = [e.at for e in b.events.select("create", uids, since=since)]
    starts = [e.at for e in b.events.select("start", uids, since=since)]
    return (min(creates) - since if creates else math.nan), (max(starts) - since if starts else math.nan)


def deploy_once(b: Bench, replicas: int, run: int, profile: bool) -> DeployRun:
    name = f"bench-{replicas}-{run}"
    watch = PodWatch(b.masters.endpoints, name)
    try:
        watch.wait_synced(10.0)
        b.wait_pool()
        done = watch.expect(all_running(replicas))
        if profile:
            b.profiler.start(b.agent_pids(), f"deploy{replicas}")
        elections0, cpu0, t0 = b.elections(), b.agent_cpu(), time.time()
        b.client.objects.create(deployment(name, replicas))
        t_created = time.time()
        finished = done.done.wait(b.settings.timeout_s)
        if profile:
            b.profiler.stop()
        if not finished:
            raise TimeoutError(f"{name}: not all Running after {b.settings.timeout_s:.0f}s: {watch.summary()}")
        cpu, memory = b.agent_cpu() - cpu0, b.agent_memory()
        result = deploy_result(b, watch, replicas, t0, t_created, done.at, cpu, memory)
        result.elections = b.elections() - elections0
        result.delete_s = delete_and_wait(b, name, watch, b.settings.timeout_s)
        return result
    finally:
        watch.close()


def deploy_result(b: Bench, watch: PodWatch, replicas: int, t0: float, t_created: float, t_done: float,
                  cpu: float, memory: dict[str, dict[str, float]]) -> DeployRun:
    pods = watch.snapshot()
    first_create, last_start = docker_marks(b, set(pods), t0, replicas)
    return DeployRun(
        replicas=replicas, total_s=t_done - t0, create_call_s=t_created - t0,
        all_created_s=max(v.seen for v in pods.values()) - t0,
        all_bound_s=max((v.bound for v in pods.values() if v.bound is not None), default=math.nan) - t0,
        first_container_create_s=first_create, last_container_start_s=last_start,
        first_running_s=min(v.running or math.inf for v in pods.values()) - t0, agent_cpu_s=cpu, memory=memory)


def run_deployments(b: Bench, replicas: int, refs: References) -> list[DeployRun]:
    """Each run: raftorch, then the floor, then Swarm, so the three see the same load on this machine."""
    results = []
    for run in range(b.settings.runs):
        r = deploy_once(b, replicas, run, profile=run == 0 and replicas == max(b.settings.replicas))
        print(f"  {replicas} replicas, run {run + 1}: all Running in {r.total_s:.2f} s "
              f"(bound {r.all_bound_s:.2f} s, containers started {r.first_container_create_s:.2f}-"
              f"{r.last_container_start_s:.2f} s; agent CPU {r.agent_cpu_s:.2f} s; {r.elections} elections; "
              f"deleted in {r.delete_s:.1f} s)", flush=True)
        results.append(r)
        network = f"raftorch-{b.nodes[0]}"
        f = floor_run(b.docker, IMAGE, network, replicas, b.settings.floor_concurrency,
                      f"floor-{b.nodes[0]}-{replicas}-{run}")
        print(f"    raw Docker: all running in {f.total_s:.2f} s (first {f.first_s:.2f} s) with {f.concurrency} "
              f"threads, on {network}", flush=True)
        refs.floor.setdefault(replicas, []).append(f)
        if b.swarm is not None:
            w = b.swarm.deploy(replicas, f"{b.nodes[0]}-{replicas}-{run}")
            print(f"    Docker Swarm: all running in {w.total_s:.2f} s (first {w.first_s:.2f} s)", flush=True)
            refs.swarm.setdefault(replicas, []).append(w)
    return results


# -- killed containers ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class KillRun:
    reported_s: float  # kill call -> the watch shows restart_count + 1, running, phase Running
    runtime_s: float  # kill call -> Docker's start event of the replacement
    kill_call_s: float
    die_s: float  # kill call -> Docker's die event of the killed container
    detect_s: float  # die -> create event of the replacement
    create_start_s: float  # create -> start events of the replacement
    start_report_s: float  # start event -> the watch event
    elections: int = 0


def kill_once(b: Bench, watch: PodWatch, uid: str) -> KillRun:
    view = watch.snapshot()[uid]
    container = b.docker.containers.get(view.container_id)
    attempt = int(container.labels.get(LABEL_ATTEMPT, "0")) + 1
    done = watch.expect(restarted(uid, view.restart_count, view.container_id))
    elections0, t0 = b.elections(), time.time()
    container.kill()
    t_killed = time.time()
    if not done.done.wait(b.settings.timeout_s):
        raise TimeoutError(f"pod {view.name}: no restart seen within {b.settings.timeout_s:.0f}s: {watch.summary()}")
    wait_until(lambda: bool(b.events.select("start", {uid}, attempt=attempt, since=t0)), 5.0)
    result = kill_result(b, uid, view.container_id, attempt, t0, t_killed, done.at)
    result.elections = b.elections() - elections0
    return result


def first_at(events: Sequence[DockerEvent]) -> float:
    return min((e.at for e in events), default=math.nan)


def kill_result(b: Bench, uid: str, old_id: str, attempt: int, t0: float, t_killed: float,
                t_reported: float) -> KillRun:
    die = first_at(b.events.select("die", container_id=old_id, since=t0 - 1))
    create = first_at(b.events.select("create", {uid}, attempt=attempt, since=t0))
    start = first_at(b.events.select("start", {uid}, attempt=attempt, since=t0))
    return KillRun(reported_s=t_reported - t0, runtime_s=start - t0, kill_call_s=t_killed - t0, die_s=die - t0,
                   detect_s=create - die, create_start_s=start - create, start_report_s=t_reported - start)


def run_kills(b: Bench) -> list[KillRun]:
    name = "bench-kill"
    watch = PodWatch(b.masters.endpoints, name)
    try:
        watch.wait_synced(10.0)
        done = watch.expect(lambda pods: all_running(KILL_REPLICAS)(pods)
                            and all(v.state == "running" for v in pods.values()))
        b.client.objects.create(deployment(name, KILL_REPLICAS))
        if not done.done.wait(b.settings.timeout_s):
            raise TimeoutError(f"{name}: not all Running: {watch.summary()}")
        time.sleep(1.0)  # let the agents' status reports settle
        victims = [uid for uid, _ in sorted(watch.snapshot().items(), key=lambda item: item[1].name)]
        results = kill_all(b, watch, [victims[i % len(victims)] for i in range(b.settings.kills)])
        delete_and_wait(b, name, watch, b.settings.timeout_s)
        return results
    finally:
        watch.close()


def kill_all(b: Bench, watch: PodWatch, uids: list[str]) -> list[KillRun]:
    results = []
    b.profiler.start(b.agent_pids(), "kill")
    try:
        for i, uid in enumerate(uids):
            r = kill_once(b, watch, uid)
            print(f"  kill {i + 1}: replacement started at {r.runtime_s:.2f} s, reported Running at "
                  f"{r.reported_s:.2f} s (die {r.die_s:.2f} s, replacement created {r.detect_s:.2f} s later; "
                  f"{r.elections} elections)", flush=True)
            results.append(r)
            time.sleep(0.5 + random.random() * 0.5)  # not in step with any periodic pass
    finally:
        b.profiler.stop()
    return results


# -- the references: the floor and Swarm -----------------------------------------------------------------


@dataclass(slots=True)
class References:
    floor: dict[int, list[StartRun]] = field(default_factory=dict)
    swarm: dict[int, list[StartRun]] = field(default_factory=dict)
    swarm_kills: list[ReplaceRun] = field(default_factory=list)
    swarm_skipped: str = ""


def run_swarm_kills(b: Bench, refs: References) -> None:
    if b.swarm is None:
        return
    print(f"Docker Swarm, killed containers ({b.settings.kills}) ...", flush=True)
    for i, k in enumerate(b.swarm.kills(KILL_REPLICAS, b.settings.kills, f"{b.nodes[0]}-kill")):
        print(f"  kill {i + 1}: new task running at {k.replaced_s:.2f} s", flush=True)
        refs.swarm_kills.append(k)


# -- the report ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    settings: Settings
    nodes: list[str]
    docker: str
    cluster_cidr: str
    memory_idle: dict[str, dict[str, float]]
    deploys: dict[int, list[DeployRun]]
    kills: list[KillRun]
    memory_after_50: dict[str, dict[str, float]]
    refs: References = field(default_factory=References)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    delete_conflicts: int = 0  # Conflict answers to unconditional deletes, retried
    elections: int = 0  # leader elections over the whole bench, after the first


def peak_memory(runs: Sequence[DeployRun]) -> dict[str, dict[str, float]]:
    """Per agent, the largest VmRSS and VmHWM seen over the runs."""
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        for node, mem in r.memory.items():
            for key, value in mem.items():
                out.setdefault(node, {})[key] = max(value, out.get(node, {}).get(key, 0.0))
    return out


def deploy_rows(replicas: int, runs: Sequence[DeployRun]) -> Iterator[Row]:
    yield (f"deployment of {replicas}: create -> all Running", fmt_spread([r.total_s for r in runs]), "", "", "")
    parts = [("create call returned", [r.create_call_s for r in runs]),
             ("all pods created (watch)", [r.all_created_s for r in runs]),
             ("all pods bound (watch)", [r.all_bound_s for r in runs]),
             ("first container created (Docker)", [r.first_container_create_s for r in runs]),
             ("first pod Running (watch)", [r.first_running_s for r in runs]),
             ("last container started (Docker)", [r.last_container_start_s for r in runs])]
    for label, samples in parts:
        yield (f"  {label}, at", fmt_median(samples), "", "", "")
    starts = [r.last_container_start_s - r.first_container_create_s for r in runs]
    yield ("  first create -> last start (Docker)", fmt_median(starts), "",
           f"{replicas / spread(starts)[0]:.1f} containers/s" if spread(starts)[0] > 0 else "", "")
    yield ("  last start -> all Running (watch)", fmt_median([r.total_s - r.last_container_start_s for r in runs]),
           "", "", "")
    yield ("  agent CPU during the run", fmt_median([r.agent_cpu_s for r in runs]), "", "", "")
    yield ("  leader elections during the runs", f"{sum(r.elections for r in runs)} in "
           f"{sum(r.elections > 0 for r in runs)} of {len(runs)} runs", "0", "", "")
    yield ("  delete -> containers gone", fmt_median([r.delete_s for r in runs], 1), "", "", "")


def kill_rows(runs: Sequence[KillRun]) -> Iterator[Row]:
    reported = [r.reported_s for r in runs]
    runtime = [r.runtime_s for r in runs]
    yield ("killed container -> reported Running, restart +1", fmt_spread(reported),
           f"max <= {TARGET_RESTART_MAX_S:g} s", "", verdict(spread(reported)[2] <= TARGET_RESTART_MAX_S))
    yield ("killed container -> replacement started (Docker)", fmt_spread(runtime), "", "", "")
    parts = [("kill call returned", [r.kill_call_s for r in runs]), ("kill -> die (Docker)", [r.die_s for r in runs]),
             ("die -> replacement created", [r.detect_s for r in runs]),
             ("kill call returned -> replacement created", [r.die_s + r.detect_s - r.kill_call_s for r in runs]),
             ("create -> start (Docker)", [r.create_start_s for r in runs]),
             ("start -> reported (agent, masters, watch)", [r.start_report_s for r in runs])]
    for label, samples in parts:
        yield (f"  {label}", fmt_spread(samples), "", "", "")
    yield ("  leader elections during the runs", f"{sum(r.elections for r in runs)} in "
           f"{sum(r.elections > 0 for r in runs)} of {len(runs)} runs", "0", "", "")


def memory_rows(r: Report) -> Iterator[Row]:
    for node, mem in r.memory_after_50.items():
        rss, hwm = mem.get("VmRSS", math.nan), mem.get("VmHWM", math.nan)
        idle = r.memory_idle.get(node, {}).get("VmRSS", math.nan)
        yield (f"agent {node} RSS after 50 Running: VmRSS / VmHWM", f"{rss:.1f} / {hwm:.1f} MB",
               f"<= {TARGET_RSS_MB:g} MB", K3S_RSS, verdict(max(rss, hwm) <= TARGET_RSS_MB))
        yield ("  VmRSS before any deployment", f"{idle:.1f} MB", "", "", "")


def table_rows(r: Report) -> Iterator[Row]:
    for replicas, runs in r.deploys.items():
        yield from deploy_rows(replicas, runs)
    if r.kills:
        yield from kill_rows(r.kills)
    yield from memory_rows(r)


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    n = len(header)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(n - 1)]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row[:n - 1], widths, strict=True))
              + f"  {row[n - 1]}".rstrip())


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if math.isfinite(a) and math.isfinite(b) and b > 0 else "n/a"


def side_by_side(r: Report) -> Iterator[tuple[str, ...]]:
    """raftorch, Swarm and the floor, medians of this run, with the ratios the targets are set on."""
    refs = r.refs
    for replicas, runs in r.deploys.items():
        ours = spread([x.total_s for x in runs])[0]
        swarm = spread([x.total_s for x in refs.swarm.get(replicas, [])])[0]
        floor = spread([x.total_s for x in refs.floor.get(replicas, [])])[0]
        target_swarm = TARGET_VS_SWARM.get(replicas, 1.0)
        ok = (not math.isfinite(swarm) or ours <= target_swarm * swarm) and (
            not math.isfinite(floor) or ours <= TARGET_VS_FLOOR * floor)
        yield (f"{replicas} replicas: create -> all Running", f"{ours:.2f} s", f"{swarm:.2f} s", f"{floor:.2f} s",
               ratio(ours, swarm), ratio(ours, floor), f"<= {target_swarm:g}x Swarm, <= {TARGET_VS_FLOOR:g}x floor",
               verdict(ok))
        ours = spread([x.first_running_s for x in runs])[0]
        swarm = spread([x.first_s for x in refs.swarm.get(replicas, [])])[0]
        floor = spread([x.first_s for x in refs.floor.get(replicas, [])])[0]
        yield (f"{replicas} replicas: create -> first Running", f"{ours:.2f} s", f"{swarm:.2f} s", f"{floor:.2f} s",
               ratio(ours, swarm), ratio(ours, floor), "<= 1x Swarm", verdict(not ours > swarm))
    if r.kills:
        ours_med, _, ours_max = spread([k.reported_s for k in r.kills])
        swarm_med, _, swarm_max = spread([k.replaced_s for k in refs.swarm_kills])
        yield ("killed container -> replacement Running, median", f"{ours_med:.2f} s", f"{swarm_med:.2f} s", "-",
               ratio(ours_med, swarm_med), "", "<= 1x Swarm", verdict(not ours_med > swarm_med))
        yield (f"  max over {len(r.kills)} kills", f"{ours_max:.2f} s", f"{swarm_max:.2f} s", "-",
               ratio(ours_max, swarm_max), "", f"<= {TARGET_RESTART_MAX_S:g} s",
               verdict(ours_max <= TARGET_RESTART_MAX_S))


def print_report(r: Report) -> None:
    s = r.settings
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.1f}" for x in r.load_average)
    print()
    print(f"agent bench: 3 masters + {s.agents} agent(s) (docker runtime, --network-mode none) on this host, "
          f"{s.runs} runs each; image {IMAGE}, grace {GRACE_SECONDS} s; sandbox pool {s.sandbox_pool} per node"
          + (f"; start concurrency {s.start_concurrency}" if s.start_concurrency else ""))
    print(f"machine: {os.cpu_count()} cores ({cores} usable), {platform.python_implementation()} "
          f"{platform.python_version()}, Docker {r.docker}; load average at the end {load}")
    print(f"nodes {', '.join(r.nodes)}; cluster CIDR {r.cluster_cidr}; leader elections after the first: "
          f"{r.elections}; unconditional deletes answered Conflict (retried): {r.delete_conflicts}")
    print()
    print_table(list(table_rows(r)), ("metric", "median (min-max)", "target", "reference", ""))
    print()
    if r.refs.swarm_skipped:
        print(f"Docker Swarm not measured: {r.refs.swarm_skipped}")
    print_table(list(side_by_side(r)), ("same run, medians", "raftorch", "Swarm", "raw Docker", "vs Swarm",
                                        "vs raw", "target", ""))
    print("\nTimes in wall-clock seconds from just before the create (or kill) call; 'at' rows are medians of each "
          "step's time since then. raftorch: the pod watch; Swarm: its tasks through the API (50 ms polls); raw "
          "Docker: the SDK's start calls returning. k3s memory: ../shared/ANCHORS.md.")


def to_json(r: Report) -> dict[str, Any]:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        return x

    out: dict[str, Any] = clean(asdict(r))
    out["cores"] = os.cpu_count()
    return out


# -- main ------------------------------------------------------------------------------------------------------


def print_log_tails(root: Path, lines: int = 15) -> None:
    for log in sorted(root.rglob("*.log")):
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {log.name}, last {len(tail)} lines:", *tail, sep="\n", file=sys.stderr)


def copy_logs(root: Path, out_dir: Path | None) -> None:
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for log in root.rglob("*.log"):
        with contextlib.suppress(OSError):
            shutil.copy(log, out_dir / log.name)


def measure(b: Bench, cidr: str, refs: References) -> Report:
    memory_idle = b.agent_memory()
    deploys: dict[int, list[DeployRun]] = {}
    for replicas in b.settings.replicas:
        print(f"deployments of {replicas} replicas ...", flush=True)
        deploys[replicas] = run_deployments(b, replicas, refs)
    memory_50 = peak_memory(deploys.get(50, []))
    print(f"killed containers ({b.settings.kills}) ...", flush=True)
    kills = run_kills(b)
    run_swarm_kills(b, refs)
    return Report(b.settings, b.nodes, docker_version(b.docker), cidr, memory_idle, deploys, kills, memory_50, refs,
                  os.getloadavg(), b.delete_conflicts, max(b.elections() - 1, 0))


def start_cluster(root: Path, settings: Settings, cidr: str, masters: LocalMasters, agents: LocalAgents) -> None:
    masters.start()
    masters.wait_ready(60.0)
    agents.start()
    with masters.client() as c:
        if not wait_until(lambda: nodes_ready(c, list(agents.agents)), 60.0, every=0.2):
            raise TimeoutError(f"agents not Ready within 60s; see {root}/agents/*.log")
    print(f"masters {', '.join(masters.endpoints)}; agents {', '.join(agents.agents)} Ready; "
          f"cluster CIDR {cidr}", flush=True)


def agent_args(settings: Settings) -> list[str]:
    args = ["--sandbox-pool", str(settings.sandbox_pool)] if settings.sandbox_pool else []
    if settings.start_concurrency:
        args += ["--start-concurrency", str(settings.start_concurrency)]
    return args


def run(settings: Settings) -> Report:
    client = docker.from_env()
    suffix = secrets.token_hex(2)
    names = [f"agentbench-{suffix}-{i}" for i in range(settings.agents)]
    refs = References(swarm_skipped="--no-swarm" if not settings.swarm else swarm_unavailable(client))
    if refs.swarm_skipped:
        print(f"Docker Swarm: not measured ({refs.swarm_skipped})", flush=True)
    with tempfile.TemporaryDirectory(prefix="raftorch-agent-bench-") as tmp, contextlib.ExitStack() as stack:
        stack.callback(client.close)
        swarm = None if refs.swarm_skipped else stack.enter_context(Swarm(client, IMAGE, settings.timeout_s))
        root = Path(tmp)
        cidr = free_cluster_cidr(client)
        masters = LocalMasters(root / "masters", extra_args=["--cluster-cidr", cidr])
        agents = LocalAgents(root / "agents", masters.endpoints, names, runtime="docker", network_mode="none",
                             ca_dir=masters.pki_dir,
                             extra_args=agent_args(settings))
        events = DockerEvents(client, names)
        profiler = Profiler(settings.profile_dir)
        try:
            start_cluster(root, settings, cidr, masters, agents)
            with masters.client(timeout=10.0, retry_for=30.0) as c:
                return measure(Bench(settings, masters, agents, c, client, events, profiler, swarm), cidr, refs)
        except Exception:
            print_log_tails(root)
            raise
        finally:
            profiler.stop()
            agents.stop()
            masters.stop()
            events.close()
            removed = remove_leftovers(client, names)
            if removed:
                print(f"removed {removed} leftover containers", file=sys.stderr)
            copy_logs(root, settings.logs_dir)


@dataclass(frozen=True, slots=True)
class Options:
    settings: Settings
    json: bool


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2 runs of each")
    p.add_argument("--runs", type=int, help="runs of each measurement (default 5)")
    p.add_argument("--agents", type=int, default=1, help="agent processes, each its own node (default 1)")
    p.add_argument("--replicas", type=int, nargs="+", default=[10, 50], help="deployment sizes (default 10 50)")
    p.add_argument("--kills", type=int, default=10, help="containers killed, 5 pods round-robin (default 10)")
    p.add_argument("--floor-concurrency", type=int, nargs="+", default=[2, 4, 8],
                   help="thread counts tried for the raw Docker floor; the fastest counts (default 2 4 8)")
    p.add_argument("--sandbox-pool", type=int, default=0, metavar="N",
                   help="the agents keep N sandboxes started ahead (default 0: off, the agent's default)")
    p.add_argument("--start-concurrency", type=int, default=0, metavar="N",
                   help="the agents' --start-concurrency (default: the agent's default)")
    p.add_argument("--no-swarm", action="store_true", help="do not measure Docker Swarm")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for any one wait (default 120)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy record the agents during the first 50-replica run and the kill phase into DIR")
    p.add_argument("--logs", type=Path, metavar="DIR", help="copy the masters' and agents' logs into DIR")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    if args.start_concurrency < 0:
        p.error("--start-concurrency must not be negative")
    if runs < 1 or args.agents < 1 or min(args.replicas) < 1 or args.kills < 1 or min(args.floor_concurrency) < 1:
        p.error("--runs, --agents, --replicas, --kills and --floor-concurrency must be positive")
    settings = Settings(runs=runs, agents=args.agents, replicas=tuple(args.replicas), timeout_s=args.timeout,
                        profile_dir=args.profile, logs_dir=args.logs, kills=args.kills,
                        floor_concurrency=tuple(args.floor_concurrency), swarm=not args.no_swarm,
                        sandbox_pool=args.sandbox_pool, start_concurrency=args.start_concurrency)
    return Options(settings, bool(args.json))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        report = run(opts.settings)
    except KeyboardInterrupt:
        print("\ninterrupted; everything stopped", file=sys.stderr)
        return 130
    print_report(report)
    if opts.json:
        print()
        print(json.dumps(to_json(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
