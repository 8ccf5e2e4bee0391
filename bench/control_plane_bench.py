"""Benchmark of the whole control plane: scheduling throughput with hollow nodes, against Kubernetes.

    python bench/control_plane_bench.py [--quick] [--nodes N] [--pods P] [--deployments D] [--fleets K]
                                        [--profile DIR] [--logs DIR] [--json]

Starts three real masters (`LocalMasters`, in a temporary directory, always torn down) and N
hollow nodes (`HollowFleet`: fake runtimes, 4 cores / 16Gi / 110 pods each, one heartbeat per
second) spread over K fleet processes (spawned). Once every node is registered and Ready, it
creates D deployments of P/D replicas (each pod asks for 100m cpu and 64Mi memory) from a pool of
client threads, and measures, from one Resources watch on all pods in this process:

- pods bound per second: bound pods / (last bind seen - first pod seen), and per pod the time
  from its first event to the first event with spec.node_name set (p50, p99);
- the time from the first deployment create to every pod bound, and to every pod Running (as
  the hollow nodes report it).

While the pods are scheduled and started, a separate process creates Event objects at a steady
rate (default 20/s, paced, one call at a time) and records each call's latency: Events are small,
need no scheduling, and no controller reacts to them, so the probe measures the write path without
disturbing what is measured (a pending pod would be re-tried by every scheduler pass).

Then two idle windows (no writes from the benchmark): one after the nodes are Ready and before any
deployment, one after every pod is Running (and the store has settled: no new revision for 2 s).
For each it reads the leader's Raft commit index and store revision at both ends and counts the
keys changed by kind (a KV watch on every key): heartbeats alone should cause no log entries at
all. The fleets report how many heartbeats they sent. At the end: peak (VmHWM) and current (VmRSS)
memory of each master, also before the pods; the CPU of every master and of the fleets over the
pods phase (utime + stime from /proc, in % of one core); the elections during the pods phase (the
leader's term, and how often each master became leader, from the role_changed lines of its log);
and a check of the pod watch against a linearizable list at the end (pods listed but never seen).

Node registration: the fleets register concurrently, and two registrations can pick the same free
pod CIDR; the master retries with another one, and the fleets here would retry an AlreadyExists
too (after a short random pause); the number of such collisions is shown.
The cluster CIDR is widened to fit a /24 per node.

`--profile DIR` runs `py-spy record --idle --format raw` on every master and fleet for the pods phase (one
file per process, for flamegraph.pl or speedscope); `--logs DIR` keeps the masters' logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from benchlib import child_pids, cpu_seconds, leaderships, memory_mb, percentile, recv, wait_until
from cpb_children import HEARTBEAT_PERIOD, Child, fleet_main, probe_main, spawn
from cpb_watch import BENCH_LABEL, KeyCounter, NodeTracker, PodTracker

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import RaftorchError
from raftorch.local.masters import LocalMasters

NAMESPACE = "default"
POD_CPU, POD_MEMORY = "100m", "64Mi"
CHILD_TIMEOUT = 30.0
PROGRESS_EVERY = 5.0
SETTLE_QUIET = 2.0
SETTLE_MAX = 30.0

TARGET_PODS_PER_S = 1000.0
TARGET_CREATE_P99_MS = 100.0
TARGET_IDLE_ENTRIES_PER_S = 0.0
TARGET_RSS_MB = 500.0
K8S_NOTE = "Kubernetes: ~100/s end to end at 5,000 nodes; 800-900/s in its integration benchmark"


@dataclass(frozen=True, slots=True)
class Settings:
    nodes: int
    pods: int
    deployments: int
    fleets: int
    creators: int
    probe_rate: float
    idle_s: float
    timeout_s: float


# -- small helpers ---------------------------------------------------------------------------








def node_names(count: int) -> list[str]:
    return [f"hollow-{i:05d}" for i in range(count)]


def cluster_cidr(nodes: int) -> str:
    """A cluster CIDR with room for a /24 per node (at least the default /16)."""
    bits = max(8, math.ceil(math.log2(max(nodes, 2))))
    return f"10.0.0.0/{max(8, 24 - bits)}"


def split(items: Sequence[str], parts: int) -> list[list[str]]:
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


def replicas_per_deployment(pods: int, deployments: int) -> list[int]:
    base, extra = divmod(pods, deployments)
    return [base + (1 if i < extra else 0) for i in range(deployments)]






# -- the cluster ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Cluster:
    masters: LocalMasters
    client: Client
    leader: str = ""
    term: int = 0
    fleets: list[Child] = field(default_factory=list)

    def refresh(self) -> str:
        """Ask who leads now; remembers and returns the leader's name."""
        status = self.client.cluster_status()
        self.leader = status.leader
        self.term = max((m.term for m in status.members if m.name == status.leader), default=self.term)
        return self.leader

    def pid(self, name: str) -> int:
        proc = self.masters.masters[name].proc
        assert proc is not None
        return proc.pid

    def pids(self) -> dict[str, int]:
        return {name: m.proc.pid for name, m in self.masters.masters.items() if m.proc is not None}

    def master_cpu(self) -> dict[str, float]:
        """Each master's CPU seconds, and its controller-manager process's (as "NAME/cm") if it has one."""
        out = {}
        for name, pid in self.pids().items():
            out[name] = cpu_seconds(pid)
            children = child_pids(pid)
            if children:
                out[f"{name}/cm"] = sum(cpu_seconds(c) for c in children)
        return out

    def memory(self) -> dict[str, dict[str, float]]:
        return {name: memory_mb(pid) for name, pid in self.pids().items()}

    def leader_status(self) -> tuple[int, int, int]:
        """(commit index, store revision, term) as the remembered leader reports them."""
        status = self.client.member_status(self.masters.masters[self.leader].client_addr)
        return status.commit_index, status.revision, status.term

    def heartbeats_sent(self) -> int:
        total = 0
        for fleet in self.fleets:
            fleet.conn.send("stats")
            total += cast(int, recv(fleet.conn, CHILD_TIMEOUT, "stats")[1])
        return total

    def fleet_pids(self) -> dict[str, int]:
        return {f"fleet{i}": f.proc.pid for i, f in enumerate(self.fleets) if f.proc.pid is not None}

    def fleet_cpu(self) -> float:
        return sum(cpu_seconds(f.proc.pid) for f in self.fleets if f.proc.pid is not None)




def start_fleets(cluster: Cluster, settings: Settings) -> dict[str, float]:
    """Spawn the fleet processes and wait until every node is registered."""
    started = time.monotonic()
    for names in split(node_names(settings.nodes), settings.fleets):
        cluster.fleets.append(spawn(fleet_main, cluster.masters.endpoints, names))
    timeout = CHILD_TIMEOUT + settings.nodes * 0.2
    infos = [cast(dict[str, float], recv(f.conn, timeout, "registration")[1]) for f in cluster.fleets]
    return {"register_s": time.monotonic() - started,
            "collisions": sum(i["collisions"] for i in infos)}


def wait_nodes_ready(nodes: NodeTracker, count: int, timeout: float) -> float:
    started = time.monotonic()
    if not wait_until(lambda: len(nodes.ready) >= count, timeout, 0.2):
        raise TimeoutError(f"only {len(nodes.ready)} of {count} nodes Ready after {timeout:.0f}s "
                           f"({len(nodes.seen)} registered)")
    return time.monotonic() - started


def deployment(name: str, replicas: int) -> objects_pb2.Deployment:
    labels = {BENCH_LABEL: name}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=NAMESPACE),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
                    name="web", image="web:v1",
                    resources=objects_pb2.ResourceRequirements(requests={"cpu": POD_CPU, "memory": POD_MEMORY}))]))))


def create_deployments(endpoints: list[str], settings: Settings) -> list[float]:
    """Create every deployment from a pool of threads (one Client each); returns call latencies."""
    local = threading.local()
    clients: list[Client] = []

    def create(item: tuple[int, int]) -> float:
        if not hasattr(local, "client"):
            local.client = Client(endpoints, timeout=10.0, retry_for=30.0)
            clients.append(local.client)
        t0 = time.perf_counter()
        local.client.objects.create(deployment(f"bench-{item[0]:04d}", item[1]))
        return time.perf_counter() - t0

    items = list(enumerate(replicas_per_deployment(settings.pods, settings.deployments)))
    try:
        with ThreadPoolExecutor(settings.creators) as pool:
            return list(pool.map(create, items))
    finally:
        for c in clients:
            c.close()


# -- profiling (optional) ---------------------------------------------------------------------------


class Profiler:
    """py-spy record (raw, idle threads included) of every master (with its controller manager)
    and every hollow fleet, from start() until stop()."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, pids: dict[str, int], label: str) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        for name, pid in pids.items():
            out = self.out_dir / f"{label}-{name}-{pid}.txt"
            self._procs.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--rate", "50", "--idle", "--nonblocking",
                 "--subprocesses",
                 "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


# -- phases ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Idle:
    leader: str
    seconds: float
    raft_entries: int
    store_revisions: int
    heartbeats: int
    changed_keys: dict[str, int]
    leader_cpu_pct: float
    term_changed: bool

    @property
    def entries_per_s(self) -> float:
        return self.raft_entries / self.seconds

    @property
    def heartbeats_per_s(self) -> float:
        return self.heartbeats / self.seconds


def settle(cluster: Cluster) -> float:
    """Wait until the store revision has not moved for SETTLE_QUIET s (at most SETTLE_MAX s)."""
    started = time.monotonic()
    cluster.refresh()
    last_rev, last_change = cluster.leader_status()[1], started
    while time.monotonic() - started < SETTLE_MAX:
        time.sleep(0.25)
        rev = cluster.leader_status()[1]
        if rev != last_rev:
            last_rev, last_change = rev, time.monotonic()
        elif time.monotonic() - last_change >= SETTLE_QUIET:
            break
    return time.monotonic() - started


def measure_idle(cluster: Cluster, seconds: float) -> Idle:
    leader = cluster.refresh()
    pid = cluster.pid(leader)
    commit0, rev0, term0 = cluster.leader_status()
    counter = KeyCounter(cluster.masters.endpoints, rev0 + 1)
    try:
        beats0, cpu0, t0 = cluster.heartbeats_sent(), cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        commit1, rev1, term1 = cluster.leader_status()
        beats1, cpu1, t1 = cluster.heartbeats_sent(), cpu_seconds(pid), time.monotonic()
        wait_until(lambda: counter.revisions(rev1) >= rev1 - rev0, 5.0)
        changed = counter.by_kind(rev1)
    finally:
        counter.close()
    return Idle(leader, t1 - t0, commit1 - commit0, rev1 - rev0, beats1 - beats0, changed,
                100 * (cpu1 - cpu0) / (t1 - t0), term1 != term0 or cluster.refresh() != leader)


@dataclass(slots=True)
class PodsPhase:
    pods: int
    seen: int = 0
    bound: int = 0
    running: int = 0
    finished: bool = False
    create_calls_s: float = 0.0
    pods_per_s: float = float("nan")
    bind_p50_ms: float = float("nan")
    bind_p99_ms: float = float("nan")
    run_p50_ms: float = float("nan")
    run_p99_ms: float = float("nan")
    all_bound_s: float = float("nan")
    all_running_s: float = float("nan")
    master_cpu_pct: dict[str, float] = field(default_factory=dict)
    fleet_cpu_pct: float = float("nan")
    terms: tuple[int, int] = (0, 0)
    leaderships: dict[str, int] = field(default_factory=dict)
    listed: int = 0
    unseen_by_watch: int = 0
    deleted_seen: int = 0
    probe_calls: int = 0
    probe_errors: int = 0
    probe_p50_ms: float = float("nan")
    probe_p99_ms: float = float("nan")
    probe_max_ms: float = float("nan")
    progress: list[str] = field(default_factory=list)


def progress_line(cluster: Cluster, tracker: PodTracker, elapsed: float, leader_pct: float, fleet_pct: float
                  ) -> str:
    return (f"  {elapsed:6.1f} s: pods seen {len(tracker.pods):>6}, bound {tracker.bound:>6}, "
            f"running {tracker.running:>6}; leader {cluster.leader} (term {cluster.term}) CPU {leader_pct:4.0f}%, "
            f"fleets CPU {fleet_pct:4.0f}%")


def follow(cluster: Cluster, tracker: PodTracker, result: PodsPhase, started: float, timeout: float) -> None:
    """Print progress until every pod runs or the timeout passes."""
    last_t, last_cpu, last_fleet = time.monotonic(), cluster.master_cpu(), cluster.fleet_cpu()
    while tracker.running < result.pods and time.monotonic() - started < timeout:
        time.sleep(min(PROGRESS_EVERY, max(0.05, started + timeout - time.monotonic())))
        if tracker.error:
            raise RuntimeError(f"pod watch failed: {tracker.error}")
        with contextlib.suppress(RaftorchError):
            cluster.refresh()
        now, cpu, fleet = time.monotonic(), cluster.master_cpu(), cluster.fleet_cpu()
        leader_cpu = cpu.get(cluster.leader, 0.0) - last_cpu.get(cluster.leader, 0.0)
        line = progress_line(cluster, tracker, now - started, 100 * leader_cpu / (now - last_t),
                             100 * (fleet - last_fleet) / (now - last_t))
        result.progress.append(line)
        print(line, flush=True)
        last_t, last_cpu, last_fleet = now, cpu, fleet


def summarize_pods(tracker: PodTracker, result: PodsPhase, started: float) -> None:
    times = list(tracker.pods.values())
    bound = sorted(t.bound for t in times if t.bound is not None)
    running = [t.running for t in times if t.running is not None]
    result.seen, result.bound, result.running = len(times), len(bound), len(running)
    result.deleted_seen = tracker.deleted
    result.finished = result.running >= result.pods
    if bound and times:
        first_seen = min(t.seen for t in times)
        span = bound[-1] - first_seen
        result.pods_per_s = len(bound) / span if span > 0 else float("nan")
        lat = sorted(t.bound - t.seen for t in times if t.bound is not None)
        result.bind_p50_ms, result.bind_p99_ms = 1000 * percentile(lat, 50), 1000 * percentile(lat, 99)
        ran = sorted(t.running - t.bound for t in times if t.bound is not None and t.running is not None)
        if ran:
            result.run_p50_ms, result.run_p99_ms = 1000 * percentile(ran, 50), 1000 * percentile(ran, 99)
        if len(bound) >= result.pods:
            result.all_bound_s = bound[-1] - started
    if result.finished:
        result.all_running_s = max(running) - started


def check_watch(cluster: Cluster, tracker: PodTracker, result: PodsPhase) -> None:
    """Compare the pods a (linearizable) list returns with those the watch reported."""
    items, _ = cluster.client.objects.list("pods", label_selector=BENCH_LABEL)
    uids = {p.metadata.uid for p in items if isinstance(p, objects_pb2.Pod)}
    result.listed = len(uids)
    result.unseen_by_watch = len(uids - tracker.pods.keys())


def summarize_probe(probe: Child, result: PodsPhase) -> None:
    probe.conn.send("stop")
    _, latencies, errors = recv(probe.conn, CHILD_TIMEOUT, "probe results")
    lat = sorted(cast(list[float], latencies))
    result.probe_calls, result.probe_errors = len(lat), cast(int, errors)
    result.probe_p50_ms, result.probe_p99_ms = 1000 * percentile(lat, 50), 1000 * percentile(lat, 99)
    result.probe_max_ms = 1000 * lat[-1] if lat else float("nan")


def run_pods(cluster: Cluster, settings: Settings, profiler: Profiler) -> PodsPhase:
    result = PodsPhase(settings.pods)
    tracker = PodTracker(cluster.masters.endpoints)
    probe = spawn(probe_main, cluster.masters.endpoints, settings.probe_rate)
    try:
        recv(probe.conn, CHILD_TIMEOUT, "probe ready message")
        cluster.refresh()
        term0, leaderships0 = cluster.term, leaderships(cluster.masters)
        profiler.start({**cluster.pids(), **cluster.fleet_pids()}, "pods")
        cpu0, fleet0, started = cluster.master_cpu(), cluster.fleet_cpu(), time.monotonic()
        create_lat = create_deployments(cluster.masters.endpoints, settings)
        result.create_calls_s = time.monotonic() - started
        print(f"  {len(create_lat)} deployments created in {result.create_calls_s:.2f} s "
              f"(slowest call {1000 * max(create_lat):.0f} ms)", flush=True)
        follow(cluster, tracker, result, started, settings.timeout_s)
        elapsed, cpu1 = time.monotonic() - started, cluster.master_cpu()
        profiler.stop()
        result.master_cpu_pct = {n: 100 * (cpu1[n] - cpu0.get(n, 0.0)) / elapsed for n in cpu1}
        result.fleet_cpu_pct = 100 * (cluster.fleet_cpu() - fleet0) / elapsed
        cluster.refresh()
        result.terms = (term0, cluster.term)
        after = leaderships(cluster.masters)
        result.leaderships = {n: after[n] - leaderships0.get(n, 0) for n in after}
        summarize_probe(probe, result)
        summarize_pods(tracker, result, started)
        check_watch(cluster, tracker, result)
    finally:
        profiler.stop()
        probe.stop()
        tracker.close()
    return result


# -- output ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    settings: Settings
    register_s: float
    cidr_collisions: int
    ready_s: float
    idle_nodes: Idle
    memory_before_pods: dict[str, dict[str, float]]
    pods: PodsPhase
    settle_s: float
    idle_after: Idle | None
    memory: dict[str, dict[str, float]]
    leader_at_end: str


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def fmt_idle(idle: Idle | None) -> str:
    if idle is None:
        return "n/a (pods did not all run)"
    changed = " (leader changed!)" if idle.term_changed else ""
    return f"{idle.entries_per_s:.2f}/s ({idle.raft_entries} in {idle.seconds:.1f} s){changed}"


def fmt_changes(idle: Idle) -> str:
    if not idle.changed_keys:
        return "none"
    return ", ".join(f"{k} x{n}" for k, n in idle.changed_keys.items())


def idle_rows(label: str, idle: Idle | None) -> Iterator[tuple[str, str, str, str]]:
    yield (f"idle Raft entries/s ({label})", fmt_idle(idle), "0/s",
           "" if idle is None else verdict(idle.entries_per_s <= TARGET_IDLE_ENTRIES_PER_S))
    if idle is None:
        return
    yield ("  store revisions; keys changed", f"{idle.store_revisions}; {fmt_changes(idle)}", "", "")
    yield ("  heartbeats sent/s; leader CPU", f"{idle.heartbeats_per_s:,.0f}/s; {idle.leader_cpu_pct:.0f}% "
           f"({idle.leader})", "", "")


def memory_rows(r: Report) -> Iterator[tuple[str, str, str, str]]:
    nan = float("nan")
    for name, mem in r.memory.items():
        mark = " (leader)" if name == r.leader_at_end else ""
        peak, before = mem.get("VmHWM", nan), r.memory_before_pods.get(name, {}).get("VmRSS", nan)
        yield (f"master {name}{mark} RSS peak / now / before pods",
               f"{peak:,.0f} / {mem.get('VmRSS', nan):,.0f} / {before:,.0f} MB",
               f"<= {TARGET_RSS_MB:.0f} MB", verdict(peak <= TARGET_RSS_MB))


def table_rows(r: Report) -> Iterator[tuple[str, str, str, str]]:
    p = r.pods
    yield ("pods bound per second", f"{p.pods_per_s:,.0f}/s ({p.bound:,}/{p.pods:,} bound)",
           f">= {TARGET_PODS_PER_S:,.0f}/s", verdict(p.pods_per_s >= TARGET_PODS_PER_S and p.bound >= p.pods))
    yield ("pod first event -> bound, p50 / p99", f"{p.bind_p50_ms:,.0f} / {p.bind_p99_ms:,.0f} ms", "", "")
    yield ("pod bound -> Running, p50 / p99", f"{p.run_p50_ms:,.0f} / {p.run_p99_ms:,.0f} ms", "", "")
    yield ("deployments created -> all pods bound", f"{p.all_bound_s:,.1f} s", "", "")
    yield ("deployments created -> all pods Running", f"{p.all_running_s:,.1f} s ({p.running:,} Running)", "", "")
    yield (f"create call (Event, {r.settings.probe_rate:g}/s) p50 / p99",
           f"{p.probe_p50_ms:,.1f} / {p.probe_p99_ms:,.1f} ms (max {p.probe_max_ms:,.0f}; "
           f"{p.probe_calls} calls, {p.probe_errors} errors)",
           f"p99 <= {TARGET_CREATE_P99_MS:.0f} ms", verdict(p.probe_p99_ms <= TARGET_CREATE_P99_MS))
    yield from idle_rows("nodes only", r.idle_nodes)
    yield from idle_rows("after pods", r.idle_after)
    yield from memory_rows(r)
    cpu = ", ".join(f"{n} {v:.0f}%" for n, v in p.master_cpu_pct.items())
    yield ("CPU during pods phase: masters; fleets", f"{cpu}; {p.fleet_cpu_pct:.0f}%", "", "")
    elections = ", ".join(f"{n} x{v}" for n, v in p.leaderships.items() if v)
    yield ("elections during pods phase", f"term {p.terms[0]} -> {p.terms[1]}; became leader: {elections or 'none'}",
           "0", verdict(p.terms[0] == p.terms[1]))
    yield ("watch check: listed / seen / unseen / deleted",
           f"{p.listed:,} / {p.seen:,} / {p.unseen_by_watch} / {p.deleted_seen}", "", "")


def print_report(r: Report) -> None:
    s = r.settings
    cores = len(os.sched_getaffinity(0))
    print()
    print(f"control plane: 3 masters, {s.nodes:,} hollow nodes in {min(s.fleets, s.nodes)} processes "
          f"(heartbeat every {HEARTBEAT_PERIOD:g} s), {s.deployments} deployments, {s.pods:,} pods "
          f"({POD_CPU} cpu, {POD_MEMORY} each)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores ({cores} usable), {platform.python_implementation()} "
          f"{platform.python_version()}; masters, fleets and this process share them; CPU in % of one core; "
          f"load average at the end {load}")
    print(f"nodes registered in {r.register_s:.1f} s ({r.cidr_collisions} pod CIDR collisions retried), "
          f"all Ready {r.ready_s:.1f} s later; store settled {r.settle_s:.1f} s after the last pod ran")
    if not r.pods.finished:
        print(f"NOTE: timed out after {s.timeout_s:.0f} s: {r.pods.seen:,} pods seen, {r.pods.bound:,} bound, "
              f"{r.pods.running:,} Running of {r.pods.pods:,}")
    print()
    rows = list(table_rows(r))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    header = ("metric", "figure", "target")
    print(f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())
    print(f"\npods/s target: {K8S_NOTE}")


def to_json(r: Report) -> dict[str, Any]:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    out = asdict(r)
    for key, idle in (("idle_nodes", r.idle_nodes), ("idle_after", r.idle_after)):
        if idle is not None:
            out[key].update(entries_per_s=idle.entries_per_s, heartbeats_per_s=idle.heartbeats_per_s)
    return cast(dict[str, Any], clean(out))


def print_log_tails(masters: LocalMasters, lines: int = 15) -> None:
    for name, m in masters.masters.items():
        try:
            tail = m.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        print(f"--- {name} log, last {len(tail)} lines:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


def copy_logs(masters: LocalMasters, out_dir: Path | None) -> None:
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for m in masters.masters.values():
        with contextlib.suppress(OSError):
            shutil.copy(m.log_path, out_dir / m.log_path.name)


# -- main -------------------------------------------------------------------------------------------


def register_nodes(cluster: Cluster, settings: Settings) -> tuple[dict[str, float], float]:
    nodes = NodeTracker(cluster.masters.endpoints)
    try:
        print(f"registering {settings.nodes:,} hollow nodes in {settings.fleets} processes ...", flush=True)
        reg = start_fleets(cluster, settings)
        ready_s = wait_nodes_ready(nodes, settings.nodes, 60.0 + settings.nodes * 0.1)
    finally:
        nodes.close()
    print(f"  registered in {reg['register_s']:.1f} s, all Ready {ready_s:.1f} s later; "
          f"idle {settings.idle_s:g} s (nodes only) ...", flush=True)
    return reg, ready_s


def run_cluster(cluster: Cluster, settings: Settings, profiler: Profiler) -> Report:
    reg, ready_s = register_nodes(cluster, settings)
    settle(cluster)
    idle_nodes = measure_idle(cluster, settings.idle_s)
    memory_before = cluster.memory()
    print(f"creating {settings.deployments} deployments, {settings.pods:,} pods ...", flush=True)
    pods = run_pods(cluster, settings, profiler)
    settle_s, idle_after = float("nan"), None
    if pods.finished:
        settle_s = settle(cluster)
        print(f"idle {settings.idle_s:g} s (after pods) ...", flush=True)
        idle_after = measure_idle(cluster, settings.idle_s)
    return Report(settings, reg["register_s"], int(reg["collisions"]), ready_s, idle_nodes, memory_before, pods,
                  settle_s, idle_after, cluster.memory(), cluster.refresh())


def run(settings: Settings, profile_dir: Path | None, logs_dir: Path | None,
        extra_master_args: Sequence[str] = ()) -> Report:
    with tempfile.TemporaryDirectory(prefix="raftorch-cp-bench-") as tmp:
        masters = LocalMasters(Path(tmp), extra_args=["--cluster-cidr", cluster_cidr(settings.nodes),
                                                      *os.environ.get("RAFTORCH_BENCH_MASTER_ARGS", "").split(),
                                                      *extra_master_args])
        cluster: Cluster | None = None
        profiler = Profiler(profile_dir)
        try:
            masters.start()
            masters.wait_ready(60.0)
            cluster = Cluster(masters, masters.client(timeout=10.0, retry_for=30.0))
            print(f"masters {', '.join(masters.endpoints)}; leader {cluster.refresh()}", flush=True)
            return run_cluster(cluster, settings, profiler)
        except Exception:
            print_log_tails(masters)
            raise
        finally:
            profiler.stop()
            if cluster is not None:
                for fleet in cluster.fleets:
                    fleet.stop()
                cluster.client.close()
            masters.stop()
            copy_logs(masters, logs_dir)


@dataclass(frozen=True, slots=True)
class Options:
    settings: Settings
    json: bool
    events_compare: bool
    profile_dir: Path | None
    logs_dir: Path | None


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="100 nodes, 1,000 pods, 10 deployments")
    p.add_argument("--events-compare", action="store_true",
                   help="run twice, events recorded and not (--record-events false), and compare side by side")
    p.add_argument("--nodes", type=int, help="hollow nodes (default 1,000)")
    p.add_argument("--pods", type=int, help="pods in all (default 10,000)")
    p.add_argument("--deployments", type=int, help="deployments sharing the pods (default 100)")
    p.add_argument("--fleets", type=int, default=4, help="hollow fleet processes (default 4)")
    p.add_argument("--creators", type=int, default=8, help="client threads creating deployments (default 8)")
    p.add_argument("--probe-rate", type=float, default=20.0, help="probe creates per second (default 20)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of each idle window (default 10)")
    p.add_argument("--timeout", type=float, help="seconds for every pod to run (default 600, 180 with --quick)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy record every master and fleet during the pods phase into DIR (raw, idle threads)")
    p.add_argument("--logs", type=Path, metavar="DIR", help="copy the masters' logs into DIR at the end")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args(argv)
    quick = args.quick
    settings = Settings(
        nodes=args.nodes or (100 if quick else 1000), pods=args.pods or (1000 if quick else 10000),
        deployments=args.deployments or (10 if quick else 100), fleets=max(1, args.fleets),
        creators=max(1, args.creators), probe_rate=args.probe_rate, idle_s=args.idle,
        timeout_s=args.timeout or (180.0 if quick else 600.0))
    if min(settings.nodes, settings.pods, settings.deployments) < 1 or settings.probe_rate <= 0:
        p.error("--nodes, --pods, --deployments and --probe-rate must be positive")
    return Options(settings, bool(args.json), bool(args.events_compare), args.profile, args.logs)


def compare_events(settings: Settings) -> None:
    """The same run with events on and off; metrics are served in both."""
    reports = {}
    for label, args in (("events on", []), ("events off", ["--record-events", "false"])):
        print(f"\n== {label} ==", flush=True)
        reports[label] = run(settings, None, None, args)
        print_report(reports[label])
    rows = [("pods bound per second", lambda r: f"{r.pods.pods_per_s:.0f}"),
            ("pod bind p99", lambda r: f"{r.pods.bind_p99_ms:.0f} ms"),
            ("create (Event write probe) p99", lambda r: f"{r.pods.probe_p99_ms:.1f} ms"),
            ("all pods Running", lambda r: f"{r.pods.all_running_s:.1f} s"),
            ("leader CPU over the pods phase",
             lambda r: f"{r.pods.master_cpu_pct.get(r.leader_at_end, math.nan):.0f}%"),
            ("elections (term at start, end)", lambda r: f"{r.pods.terms}")]
    print("\nevents and metrics on vs events off (metrics on in both), one run each:")
    print(f"{'':34}{'events on':>14}{'events off':>14}")
    for name, cell in rows:
        print(f"{name:34}{cell(reports['events on']):>14}{cell(reports['events off']):>14}")
    on, off = reports["events on"].pods.pods_per_s, reports["events off"].pods.pods_per_s
    if off > 0:
        print(f"throughput with events: {100 * on / off:.0f}% of without (target: at least 90%)")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.events_compare:
        try:
            compare_events(opts.settings)
        except KeyboardInterrupt:
            return 130
        return 0
    try:
        report = run(opts.settings, opts.profile_dir, opts.logs_dir)
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
