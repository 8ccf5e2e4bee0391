"""Benchmark of the masters' replicated key-value store, against etcd measured on this machine.

Starts three real master processes (`LocalMasters`), drives them through the client library
(`raftorch.client.Client`) and prints, per row: throughput, p50/p99 latency and the leader's CPU
use; then leader failover times (SIGKILL of the leader while one client keeps putting).

    python bench/kv_bench.py [--quick] [--duration S] [--processes N] [--only put|get|failover] [--no-etcd]
                             [--json]
    python bench/kv_bench.py --fsync-compare [--duration S] [--no-etcd]

After the masters' rows, the same rows run against a 3-member etcd cluster this script starts
itself when an `etcd` binary is installed (bench/etcd_baseline.py; `--no-etcd` skips it), on the
same machine right after, and a table gives raftorch's ops/s over etcd's (the same-run ratio).

--fsync-compare gives the put throughput at 1/8/64 threads with the Raft journal synced (the
default) and with `--unsafe-no-fsync`, each on a fresh cluster, and against a 3-member etcd
cluster this script starts itself when an `etcd` binary is installed (bench/etcd_baseline.py),
with the ratios between them.

The targets are etcd 3.4's figures on this kind of machine (the project's shared notes,
../shared/ANCHORS.md from the repository root): 3 members on 127.0.0.1, a Python gRPC client,
16-byte keys, 100-byte values, 10 s per row.

Client threads run in client processes (spawned, never forked: gRPC does not survive a fork),
each thread with its own `Client` given all three endpoints (it finds the leader itself); by
default one process up to 8 threads and two above. Every thread warms up until a common start
time, then the operations it starts in [start, start + duration) are counted and their latencies
(time.perf_counter per op) kept; percentiles are over all samples. The leader's CPU comes from
utime + stime in /proc/<pid>/stat over the same window.

Failover: one thread puts in a loop; the leader gets SIGKILL; the time is from right after
os.kill returns to the first put that succeeds after it (time.monotonic). Between runs the
killed master is restarted and the cluster waited on until ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

from benchlib import cpu_seconds, percentile, recv
from etcd_baseline import ETCD, EtcdClient, EtcdCluster, EtcdTls

from raftorch.client import Client
from raftorch.errors import RaftorchError
from raftorch.local.masters import LocalMasters
from raftorch.rpc import Credentials

KEY_BYTES = 16
VALUE_BYTES = 100
KEY_SPACE = 1000
CHILD_READY_TIMEOUT = 60.0
# A put in flight when the leader is killed that returns this soon after was answered by the
# dying leader: no election can finish this fast (the minimum election timeout is 0.15 s).
PRE_KILL_ACK_WINDOW = 0.05
FAILOVER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    op: str
    threads: int
    ops_per_s: float
    etcd_p50_ms: float
    etcd_p99_ms: float


# etcd 3.4.23, 3 members on 127.0.0.1, Python gRPC client (../shared/ANCHORS.md).
THROUGHPUT_TARGETS = (
    Target("put", 1, 841, 1.1, 2.3),
    Target("put", 8, 1645, 4.4, 13.1),
    Target("put", 64, 2971, 18.0, 71.8),
    Target("get", 8, 2233, 3.1, 11.4),
)
FAILOVER_TARGET_MEDIAN_S = 0.5
FAILOVER_TARGET_MAX_S = 1.0
ETCD_FAILOVER_MEDIAN_S = 1.34
ETCD_FAILOVER_MAX_S = 2.86

OP_LABELS = {"put": "put", "get": "get (linearizable)"}


@dataclass(slots=True)
class RowResult:
    op: str
    threads: int
    processes: int
    duration_s: float
    ops: int
    errors: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    leader: str
    leader_after: str
    terms: tuple[int, int]
    leader_cpu_pct: float
    master_cpu_pct: dict[str, float]
    client_cpu_pct: float
    target_ops_per_s: float
    met: bool

    @property
    def leader_changed(self) -> bool:
        return self.leader != self.leader_after or self.terms[0] != self.terms[1]


@dataclass(slots=True)
class FailoverRun:
    killed: str
    new_leader: str
    seconds: float | None
    failed_puts: int


@dataclass(slots=True)
class FailoverResult:
    runs: list[FailoverRun] = field(default_factory=list)

    def times(self) -> list[float]:
        return [r.seconds if r.seconds is not None else float("inf") for r in self.runs]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times())

    @property
    def max_s(self) -> float:
        return max(self.times())

    @property
    def met(self) -> bool:
        return self.median_s <= FAILOVER_TARGET_MEDIAN_S and self.max_s <= FAILOVER_TARGET_MAX_S


# -- workload ------------------------------------------------------------------------------


def bench_keys() -> list[str]:
    keys = [f"bench/{i:010d}" for i in range(KEY_SPACE)]
    assert all(len(k) == KEY_BYTES for k in keys)
    return keys


def make_op(client: Client | EtcdClient, op: str, keys: list[str], rng: random.Random) -> Callable[[], object]:
    if op == "put":
        value = rng.randbytes(VALUE_BYTES)
        return lambda: client.put(rng.choice(keys), value)
    if op == "get":
        return lambda: client.get(rng.choice(keys))
    raise ValueError(f"unknown operation {op!r}")


@dataclass(slots=True)
class ThreadTally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def drive(op: Callable[[], object], start_at: float, end_at: float, tally: ThreadTally) -> None:
    """Run `op` until `end_at`; keep the latency of each op started at or after `start_at`."""
    while True:
        began = time.monotonic()
        if began >= end_at:
            return
        t0 = time.perf_counter()
        try:
            op()
        except RaftorchError:
            if began >= start_at:
                tally.errors += 1
            continue
        if began >= start_at:
            tally.latencies.append(time.perf_counter() - t0)


def sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def load_process(endpoints: list[str], creds: Credentials | None, op: str, threads: int, seed: int,
                 conn: multiprocessing.connection.Connection, backend: str = "raftorch",
                 etcd_tls: EtcdTls | None = None) -> None:
    """One client process: `threads` threads, each with its own Client (an EtcdClient of the
    first endpoint for the etcd baseline).

    Protocol on `conn`: sends "ready" once every client has done one op, receives
    (start_at, end_at) in time.monotonic() terms, sends (latencies, errors, cpu_seconds)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent tears down on Ctrl-C
    keys = bench_keys()
    clients: list[Client | EtcdClient] = [
        EtcdClient(endpoints[0], etcd_tls) if backend == "etcd" else Client(endpoints, credentials=creds)
        for _ in range(threads)]
    try:
        ops = [make_op(c, op, keys, random.Random(seed * 1000 + i)) for i, c in enumerate(clients)]
        for fn in ops:
            fn()  # connects and finds the leader
        conn.send("ready")
        start_at, end_at = conn.recv()
        tallies = [ThreadTally() for _ in ops]
        workers = [threading.Thread(target=drive, args=(fn, start_at, end_at, t), daemon=True)
                   for fn, t in zip(ops, tallies, strict=True)]
        for w in workers:
            w.start()
        sleep_until(start_at)
        cpu0 = time.process_time()
        sleep_until(end_at)
        cpu = time.process_time() - cpu0
        for w in workers:
            w.join()
        conn.send(([x for t in tallies for x in t.latencies], sum(t.errors for t in tallies), cpu))
    except (BrokenPipeError, EOFError):
        pass  # the parent is gone (interrupted); nothing to report to
    except Exception:  # reported to the parent, which fails the row
        with contextlib.suppress(BrokenPipeError):
            conn.send(("error", traceback.format_exc()))
    finally:
        for c in clients:
            c.close()


def split(total: int, parts: int) -> list[int]:
    """`total` threads over at most `parts` processes, as evenly as possible."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# -- measurement -------------------------------------------------------------------------


def master_cpu(masters: LocalMasters) -> dict[str, float]:
    return {name: cpu_seconds(m.proc.pid) for name, m in masters.masters.items()
            if m.proc is not None and m.alive}


def leader_and_term(masters: LocalMasters) -> tuple[str, int]:
    leader = masters.wait_ready()
    with masters.client(timeout=2.0, retry_for=2.0) as client:
        return leader, client.member_status(masters.masters[leader].client_addr).term


@dataclass(slots=True)
class Load:
    """What the client processes of one row measured."""

    latencies: list[float]
    errors: int
    client_cpu: float
    processes: int
    cpu_before: dict[str, float]
    cpu_after: dict[str, float]


def run_load(endpoints: list[str], backend: str, op: str, threads: int, processes: int, duration: float,
             warmup: float, server_cpu: Callable[[], dict[str, float]], creds: Credentials | None = None,
             window: Callable[[bool], None] | None = None, etcd_tls: EtcdTls | None = None) -> Load:
    """Client processes drive `op` against `endpoints` for `duration` after `warmup`; `window` is
    told when the measured window opens (True) and closes (False)."""
    ctx = multiprocessing.get_context("spawn")
    children: list[tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]] = []
    try:
        for i, n in enumerate(split(threads, processes)):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=load_process, args=(endpoints, creds, op, n, i + 1, child_end, backend, etcd_tls),
                               daemon=True)
            proc.start()
            child_end.close()
            children.append((proc, parent_end))
        for _, conn in children:
            recv(conn, CHILD_READY_TIMEOUT, "ready message")
        start_at = time.monotonic() + warmup
        end_at = start_at + duration
        for _, conn in children:
            conn.send((start_at, end_at))
        sleep_until(start_at)
        cpu0 = server_cpu()
        if window is not None:
            window(True)
        sleep_until(end_at)
        cpu1 = server_cpu()
        if window is not None:
            window(False)
        latencies: list[float] = []
        errors = 0
        client_cpu = 0.0
        for _, conn in children:
            lat, errs, cpu = cast(tuple[list[float], int, float], recv(conn, 60.0, "results"))
            latencies.extend(lat)
            errors += errs
            client_cpu += cpu
    finally:
        for child, conn in children:
            conn.close()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
    latencies.sort()
    return Load(latencies, errors, client_cpu, len(children), cpu0, cpu1)


def row_result(target: Target, load: Load, duration: float, leader: str, leader_after: str,
               terms: tuple[int, int]) -> RowResult:
    latencies = load.latencies
    ops_per_s = len(latencies) / duration
    cpu0, cpu1 = load.cpu_before, load.cpu_after
    per_master = {n: 100 * (cpu1[n] - cpu0[n]) / duration for n in cpu0 if n in cpu1}
    return RowResult(
        op=target.op, threads=target.threads, processes=load.processes, duration_s=duration,
        ops=len(latencies), errors=load.errors, ops_per_s=ops_per_s,
        p50_ms=1000 * percentile(latencies, 50), p99_ms=1000 * percentile(latencies, 99),
        leader=leader, leader_after=leader_after, terms=terms,
        leader_cpu_pct=per_master.get(leader, float("nan")), master_cpu_pct=per_master,
        client_cpu_pct=100 * load.client_cpu / duration, target_ops_per_s=target.ops_per_s,
        met=ops_per_s >= target.ops_per_s)


def run_row(masters: LocalMasters, target: Target, processes: int, duration: float, warmup: float,
            profile: Path | None = None, gil: bool = False) -> RowResult:
    leader, term = leader_and_term(masters)
    window = None
    if profile is not None:
        proc = masters.masters[leader].proc
        assert proc is not None
        window = LeaderProfile(profile / f"{target.op}-{target.threads}-{leader}.txt", proc.pid, gil).window
    load = run_load(masters.endpoints, "raftorch", target.op, target.threads, processes, duration, warmup,
                    lambda: master_cpu(masters), creds=masters.credentials, window=window)
    leader_after, term_after = leader_and_term(masters)
    return row_result(target, load, duration, leader, leader_after, (term, term_after))


class LeaderProfile:
    """py-spy record (raw, idle threads included) of one process over a row's measured window;
    bench/kv_profile.py folds the output per thread."""

    def __init__(self, out: Path, pid: int, gil: bool = False) -> None:
        self.out = out
        self.pid = pid
        self.gil = gil
        self._proc: subprocess.Popen[bytes] | None = None

    def window(self, opening: bool) -> None:
        if opening:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            self._proc = subprocess.Popen(
                [py_spy, "record", "--pid", str(self.pid), "--rate", "100", "--idle", "--nonblocking",
                 "--threads", "--function", "--format", "raw", "--output", str(self.out),
                 *(["--gil"] if self.gil else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            return
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_etcd_row(etcd: EtcdCluster, target: Target, processes: int, duration: float, warmup: float
                 ) -> RowResult:
    leader = etcd.leader_endpoint()
    load = run_load([leader], "etcd", target.op, target.threads, processes, duration, warmup,
                    lambda: {n: cpu_seconds(pid) for n, pid in etcd.pids().items()}, etcd_tls=etcd.tls)
    name = next((n for n, e in zip(etcd.names, etcd.endpoints, strict=True) if e == leader), leader)
    after = etcd.leader_endpoint()
    return row_result(target, load, duration, name, name if after == leader else after, (0, 0))


def preload(masters: LocalMasters) -> None:
    """Write every key once, so that gets find a value."""
    value = random.Random(0).randbytes(VALUE_BYTES)
    with masters.client() as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put(k, value), bench_keys()))


# -- failover ---------------------------------------------------------------------------


class Writer:
    """One thread putting in a loop; records (began, finished) of each successful put."""

    def __init__(self, endpoints: list[str]) -> None:
        self._client = Client(endpoints)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-writer", daemon=True)
        self.successes: list[tuple[float, float]] = []
        self.failures = 0

    def _run(self) -> None:
        keys = bench_keys()
        rng = random.Random(7)
        value = rng.randbytes(VALUE_BYTES)
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._client.put(rng.choice(keys), value)
            except RaftorchError:
                self.failures += 1
                continue
            self.successes.append((began, time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def first_success_after(self, killed_at: float) -> float | None:
        for began, finished in self.successes:
            if finished <= killed_at:
                continue
            if began < killed_at and finished - killed_at < PRE_KILL_ACK_WINDOW:
                continue  # acknowledged by the old leader before it died
            return finished
        return None


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def failover_once(masters: LocalMasters) -> FailoverRun:
    leader = masters.wait_ready()
    proc = masters.masters[leader].proc
    assert proc is not None
    writer = Writer(masters.endpoints)
    writer.start()
    try:
        if not wait_for(lambda: len(writer.successes) >= 20, 10.0):
            raise RuntimeError("the failover writer could not put before the kill")
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: writer.first_success_after(killed_at) is not None, FAILOVER_TIMEOUT)
        first = writer.first_success_after(killed_at)
    finally:
        writer.stop()
    failures = writer.failures
    masters.kill(leader)  # reaps the process
    new_leader = masters.wait_ready(60.0)
    masters.start(leader)
    masters.wait_ready(60.0)
    return FailoverRun(killed=leader, new_leader=new_leader,
                       seconds=None if first is None else first - killed_at, failed_puts=failures)


def run_failover(masters: LocalMasters, runs: int) -> FailoverResult:
    result = FailoverResult()
    for i in range(runs):
        run = failover_once(masters)
        result.runs.append(run)
        shown = "no successful put" if run.seconds is None else f"{run.seconds:.3f} s"
        print(f"  failover run {i + 1}/{runs}: killed {run.killed}, new leader {run.new_leader}: "
              f"first put after {shown}" + (f" ({run.failed_puts} puts failed)" if run.failed_puts else ""),
              flush=True)
    return result


# -- output -----------------------------------------------------------------------------

HEADER = (f"{'operation':<20}{'threads':>8}{'procs':>6}{'ops/s':>9}{'target':>9}{'':>5}"
          f"{'p50 ms':>8}{'p99 ms':>8}{'etcd p50/p99':>14}{'leader CPU':>12}{'client CPU':>12}{'errors':>8}"
          f"{'CPU ms/op':>11}")


def cpu_ms_per_op(row: RowResult) -> float:
    """CPU time of all the cluster's members (leader and followers) per operation."""
    return 10 * sum(row.master_cpu_pct.values()) / row.ops_per_s if row.ops_per_s else float("nan")


def format_row(row: RowResult, target: Target) -> str:
    verdict = "ok" if row.met else "MISS"
    etcd = f"{target.etcd_p50_ms:.1f}/{target.etcd_p99_ms:.1f}"
    return (f"{OP_LABELS[row.op]:<20}{row.threads:>8}{row.processes:>6}{row.ops_per_s:>9,.0f}"
            f"{'>=' + format(target.ops_per_s, ',.0f'):>9}{verdict:>5}{row.p50_ms:>8.1f}{row.p99_ms:>8.1f}"
            f"{etcd:>14}{row.leader_cpu_pct:>11.0f}%{'*' if row.leader_changed else ' '}"
            f"{row.client_cpu_pct:>10.0f}%{row.errors:>8}{cpu_ms_per_op(row):>11.2f}")


def format_failover(result: FailoverResult) -> list[str]:
    times = ", ".join("none" if r.seconds is None else f"{r.seconds:.3f}" for r in result.runs)
    verdict = "ok" if result.met else "MISS"
    return [
        f"failover (SIGKILL leader -> first successful put), {len(result.runs)} runs: {times} s",
        f"  median {result.median_s:.3f} s (target <= {FAILOVER_TARGET_MEDIAN_S} s; etcd {ETCD_FAILOVER_MEDIAN_S} s)"
        f"   max {result.max_s:.3f} s (target <= {FAILOVER_TARGET_MAX_S} s; etcd {ETCD_FAILOVER_MAX_S} s)"
        f"   {verdict}",
    ]


def finite(x: float) -> float | None:
    """JSON has no infinity: a failover without a successful put becomes null."""
    return x if x != float("inf") else None


def machine_note() -> str:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0))
    return (f"machine: {cores} cores ({usable} usable), {platform.python_implementation()} "
            f"{platform.python_version()}; client processes and the 3 masters share these {usable} cores, "
            "so client CPU is taken from the masters")


# -- fsync on and off, and etcd, side by side ---------------------------------------------

FSYNC_COMPARE_THREADS = (1, 8, 64)


def put_targets() -> list[Target]:
    by_threads = {t.threads: t for t in THROUGHPUT_TARGETS if t.op == "put"}
    return [by_threads[n] for n in FSYNC_COMPARE_THREADS]


def masters_put_rows(args: argparse.Namespace, label: str, extra_args: list[str]) -> list[RowResult]:
    rows: list[RowResult] = []
    with tempfile.TemporaryDirectory(prefix="raftorch-kv-bench-") as tmp:
        masters = LocalMasters(root=Path(tmp), extra_args=extra_args)
        try:
            masters.start()
            print(f"{label}: masters {', '.join(masters.endpoints)}; leader {masters.wait_ready(60.0)}", flush=True)
            for target in put_targets():
                procs = args.processes or default_processes(target.threads)
                profile = args.profile / label if args.profile is not None else None
                rows.append(run_row(masters, target, procs, args.duration, args.warmup, profile, args.profile_gil))
                print(f"  done: {label} put x{target.threads}", flush=True)
        except Exception:
            print_log_tails(masters)
            raise
        finally:
            masters.stop()
    return rows


def etcd_put_rows(args: argparse.Namespace) -> list[RowResult]:
    return etcd_rows(args, put_targets())


def etcd_rows(args: argparse.Namespace, targets: list[Target]) -> list[RowResult]:
    """The rows of `targets` against a fresh 3-member etcd cluster (keys preloaded for gets)."""
    rows: list[RowResult] = []
    with tempfile.TemporaryDirectory(prefix="raftorch-kv-bench-etcd-") as tmp:
        etcd = EtcdCluster(Path(tmp), tls=args.etcd_tls)
        try:
            etcd.start()
            leader = etcd.wait_ready()
            print(f"etcd ({'TLS, client certificates' if etcd.tls else 'plaintext'}): members "
                  f"{', '.join(etcd.endpoints)}; leader {leader}", flush=True)
            if any(t.op == "get" for t in targets):
                preload_etcd(leader, etcd.tls)
            for target in targets:
                procs = args.processes or default_processes(target.threads)
                rows.append(run_etcd_row(etcd, target, procs, args.duration, args.warmup))
                print(f"  done: etcd {OP_LABELS[target.op]} x{target.threads}", flush=True)
        finally:
            etcd.stop()
    return rows


def preload_etcd(endpoint: str, tls: EtcdTls | None) -> None:
    value = random.Random(0).randbytes(VALUE_BYTES)
    client = EtcdClient(endpoint, tls)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: client.put(k, value), bench_keys()))
    finally:
        client.close()


def format_same_run(rows: list[RowResult], etcd: list[RowResult]) -> list[str]:
    lines = [f"{'operation':<20}{'threads':>8}{'raftorch ops/s':>16}{'etcd ops/s':>12}{'ratio':>8}"
             f"{'raftorch p50/p99 ms':>21}{'etcd p50/p99 ms':>17}{'leader CPU r/e':>16}{'CPU ms/op r/e':>15}"]
    for row, base in zip(rows, etcd, strict=True):
        lines.append(f"{OP_LABELS[row.op]:<20}{row.threads:>8}{row.ops_per_s:>16,.0f}{base.ops_per_s:>12,.0f}"
                     f"{_ratio(row, base)}{f'{row.p50_ms:.1f}/{row.p99_ms:.1f}':>21}"
                     f"{f'{base.p50_ms:.1f}/{base.p99_ms:.1f}':>17}"
                     f"{f'{row.leader_cpu_pct:.0f}%/{base.leader_cpu_pct:.0f}%':>16}"
                     f"{f'{cpu_ms_per_op(row):.2f}/{cpu_ms_per_op(base):.2f}':>15}")
    return lines


def _cell(row: RowResult | None) -> str:
    if row is None:
        return f"{'-':>9}{'-':>13}{'':>6}"
    changed = "*" if row.leader_changed else " "
    return f"{row.ops_per_s:>9,.0f}{f'{row.p50_ms:.1f}/{row.p99_ms:.1f}':>13}{row.leader_cpu_pct:>5.0f}%{changed}"


def _ratio(a: RowResult | None, b: RowResult | None) -> str:
    if a is None or b is None or not b.ops_per_s:
        return f"{'-':>8}"
    return f"{a.ops_per_s / b.ops_per_s:>7.2f}x"


def format_fsync_compare(synced: list[RowResult], unsynced: list[RowResult], etcd: list[RowResult] | None
                         ) -> list[str]:
    head = f"{'ops/s':>9}{'p50/p99 ms':>13}{'ldr':>6} "
    lines = [
        f"{'':<8}{'fsync (default)':^29}{'unsafe-no-fsync':^29}{'':>8}" + (f"{'etcd 3-member':^29}" if etcd else ""),
        f"{'threads':<8}{head}{head}{'on/off':>8}" + (f"{head}{'on/etcd':>8}{'off/etcd':>9}" if etcd else ""),
    ]
    for i, target in enumerate(put_targets()):
        on, off = synced[i], unsynced[i]
        line = f"{target.threads:<8}{_cell(on)}{_cell(off)}{_ratio(on, off)}"
        if etcd:
            line += f"{_cell(etcd[i])}{_ratio(on, etcd[i])}{_ratio(off, etcd[i]):>9}"
        lines.append(line)
    return lines


def run_fsync_compare(args: argparse.Namespace) -> dict[str, object]:
    """Puts at 1/8/64 threads with the journal synced, then with `--unsafe-no-fsync`, then etcd."""
    synced = masters_put_rows(args, "fsync", [])
    unsynced = masters_put_rows(args, "unsafe-no-fsync", ["--unsafe-no-fsync"])
    etcd: list[RowResult] | None = None
    if args.no_etcd:
        print("etcd baseline skipped (--no-etcd)")
    elif ETCD is None:
        print("etcd baseline skipped: no etcd binary (Debian: apt-get install etcd-server etcd-client)")
    else:
        etcd = etcd_put_rows(args)
    print()
    print(machine_note())
    print(f"put rows of {args.duration:g} s after {args.warmup:g} s warm-up; keys {KEY_BYTES} B, values "
          f"{VALUE_BYTES} B; ldr = leader CPU in % of one core (* the leader changed during the row); "
          "on/off = fsync ops/s over unsafe-no-fsync ops/s")
    print()
    print("\n".join(format_fsync_compare(synced, unsynced, etcd)))
    return {
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup},
        "fsync": [asdict(r) for r in synced],
        "unsafe_no_fsync": [asdict(r) for r in unsynced],
        "etcd": None if etcd is None else [asdict(r) for r in etcd],
    }


# -- main -------------------------------------------------------------------------------


def print_log_tails(masters: LocalMasters, lines: int = 15) -> None:
    """The masters' last log lines, before the work dir (and the logs) is removed."""
    for name, m in masters.masters.items():
        try:
            tail = m.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        print(f"--- {name} log ({m.log_path.name}), last {len(tail)} lines:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="3 s rows and 2 failover runs")
    p.add_argument("--duration", type=float, default=None, help="seconds per throughput row (default 10)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each row (default 1)")
    p.add_argument("--failover-runs", type=int, default=None, help="default 5 (2 with --quick)")
    p.add_argument("--processes", type=int, default=None,
                   help="client processes per row (default: 1 up to 8 threads, 2 above)")
    p.add_argument("--only", choices=["put", "get", "failover"], action="append",
                   help="run only these benchmarks (repeatable)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.add_argument("--fsync-compare", action="store_true",
                   help="only puts at 1/8/64 threads: journal synced, then --unsafe-no-fsync, then etcd "
                        "(3 members started here when an etcd binary is installed), side by side")
    p.add_argument("--no-etcd", action="store_true", help="skip the etcd baseline (same rows on etcd)")
    p.add_argument("--etcd-tls", action="store_true",
                   help="etcd with TLS on client and peer ports and client certificates required, as "
                        "raftorch's masters run (default: etcd's defaults, plaintext, as in the anchors)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy record the leader during each row's measured window into DIR "
                        "(raw, idle threads included; fold with bench/kv_profile.py)")
    p.add_argument("--profile-gil", action="store_true",
                   help="with --profile: only samples of the thread holding the GIL (where the CPU goes)")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.failover_runs = args.failover_runs or (2 if args.quick else 5)
    return args


def default_processes(threads: int) -> int:
    return 1 if threads <= 8 else 2


def run(args: argparse.Namespace) -> dict[str, object]:
    only = set(args.only or ["put", "get", "failover"])
    targets = [t for t in THROUGHPUT_TARGETS if t.op in only]
    rows: list[RowResult] = []
    failover: FailoverResult | None = None
    with tempfile.TemporaryDirectory(prefix="raftorch-kv-bench-") as tmp:
        masters = LocalMasters(root=Path(tmp))
        try:
            masters.start()
            print(f"masters {', '.join(masters.endpoints)}; leader {masters.wait_ready(60.0)}", flush=True)
            preload(masters)
            for target in targets:
                procs = args.processes or default_processes(target.threads)
                rows.append(run_row(masters, target, procs, args.duration, args.warmup, args.profile,
                                    args.profile_gil))
                print(f"  done: {OP_LABELS[target.op]} x{target.threads}", flush=True)
            if "failover" in only:
                failover = run_failover(masters, args.failover_runs)
        except Exception:
            print_log_tails(masters)
            raise
        finally:
            masters.stop()
    etcd: list[RowResult] | None = None
    if not targets or args.no_etcd:
        pass
    elif ETCD is None:
        print("etcd baseline skipped: no etcd binary (Debian: apt-get install etcd-server etcd-client)")
    else:
        etcd = etcd_rows(args, targets)
    print()
    print(machine_note())
    print(f"rows of {args.duration:g} s after {args.warmup:g} s warm-up; keys {KEY_BYTES} B, values "
          f"{VALUE_BYTES} B; targets: etcd 3.4 on this machine; CPU in % of one core; "
          "CPU ms/op = CPU time of all members (leader and followers) per operation")
    print()
    print(HEADER)
    by_key = {(t.op, t.threads): t for t in THROUGHPUT_TARGETS}
    for row in rows:
        print(format_row(row, by_key[(row.op, row.threads)]))
    for row in rows:
        if row.leader_changed:
            print(f"* {OP_LABELS[row.op]} x{row.threads}: the leader changed during the row ({row.leader} term "
                  f"{row.terms[0]} -> {row.leader_after} term {row.terms[1]}); CPU is that of {row.leader}")
    if etcd is not None:
        print()
        print("same run, etcd 3-member cluster started here (ratio = raftorch ops/s over etcd's):")
        print("\n".join(format_same_run(rows, etcd)))
    if failover is not None:
        print()
        print("\n".join(format_failover(failover)))
    return {
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))},
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "key_bytes": KEY_BYTES,
                     "value_bytes": VALUE_BYTES, "key_space": KEY_SPACE},
        "rows": [{**asdict(r), "leader_changed": r.leader_changed} for r in rows],
        "failover": None if failover is None else {
            "runs": [asdict(r) for r in failover.runs], "median_s": finite(failover.median_s),
            "max_s": finite(failover.max_s), "met": failover.met},
        "etcd": None if etcd is None else [asdict(r) for r in etcd],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run_fsync_compare(args) if args.fsync_compare else run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; masters stopped", file=sys.stderr)
        return 130
    if args.json:
        print()
        print(json.dumps(results, indent=2, default=lambda x: None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
