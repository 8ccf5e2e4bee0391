"""The load a drill runs during a fault, and what its history says afterwards.

Client threads write unique values, read, and compare-and-swap on a few keys, recording every
operation in a HistoryRecorder: `ok` when it took effect, `fail` only when it certainly did
not (a failed compare, a rejected request), `info` when the outcome is unknown (timeouts, no
master answering). Some threads are pinned to one master each, so a master that is cut off
but still answers clients keeps getting requests, and would be caught serving stale reads or
acknowledging writes it cannot commit.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import random
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from raftorch.client import Client, Compare, Put
from raftorch.drill.linearizability import HistoryRecorder, Operation, check_history
from raftorch.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    Invalid,
    NotFound,
    PermissionDenied,
    RaftorchError,
)

# Errors that mean the request was refused before anything was applied.
DEFINITE = (Invalid, PermissionDenied, NotFound, AlreadyExists, Conflict, Compacted)


@dataclass(frozen=True, slots=True)
class WorkloadSettings:
    threads: int = 6
    keys: int = 3
    # Per attempt, then how long a client keeps trying other masters before an op is `info`.
    timeout: float = 1.0
    retry_for: float = 4.0
    # Pause between one thread's operations, so the load leaves the masters some CPU.
    think: float = 0.005
    # The first threads talk to one master each; the others follow the leader.
    pinned: bool = True
    # Shares of writes and reads; the rest are compare-and-swaps.
    writes: float = 0.4
    reads: float = 0.4
    # Reads answered from the contacted master's local state, not linearizable: only for
    # checking that a drill does catch stale reads.
    serializable_reads: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged write or successful compare-and-swap."""

    token: int
    key: str
    value: str
    revision: int


@dataclass(frozen=True, slots=True)
class Read:
    """A successful read; `revision` is the mod revision of what it returned (0: absent)."""

    token: int
    key: str
    revision: int


@dataclass
class Analysis:
    ops: int = 0
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    acked: int = 0
    lost: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    explanations: list[str] = field(default_factory=list)
    unavailable_s: float = 0.0

    @property
    def linearizable(self) -> bool:
        return all(v == "linearizable" for v in self.verdicts.values())


class Workload:
    def __init__(self, endpoints: Mapping[str, str], settings: WorkloadSettings | None = None,
                 prefix: str | None = None) -> None:
        self.endpoints = dict(endpoints)
        self.settings = settings or WorkloadSettings()
        self.prefix = prefix or f"drill/{secrets.token_hex(4)}"
        self.keys = [f"k{i}" for i in range(self.settings.keys)]
        self.recorder = HistoryRecorder()
        self.acks: list[Ack] = []
        self.reads: list[Read] = []
        self.errors: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_ns = 0
        self.stopped_ns = 0

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    @property
    def pinned(self) -> dict[str, int]:
        """Master name -> the thread that talks to it alone."""
        if not self.settings.pinned:
            return {}
        return {name: tid for tid, name in enumerate(list(self.endpoints)[: self.settings.threads])}

    def _client(self, tid: int) -> Client:
        s = self.settings
        for name, pinned in self.pinned.items():
            if pinned == tid:
                return Client([self.endpoints[name]], s.timeout, s.retry_for, pin=True)
        return Client(list(self.endpoints.values()), s.timeout, s.retry_for)

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()
        for tid in range(self.settings.threads):
            t = threading.Thread(target=self._run, args=(tid,), name=f"drill-load-{tid}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stopped_ns = time.monotonic_ns()
        self._stop.set()
        limit = time.monotonic() + self.settings.timeout + self.settings.retry_for + 5
        for t in self._threads:
            t.join(max(0.1, limit - time.monotonic()))

    def _run(self, tid: int) -> None:
        rng = random.Random(f"{self.prefix}/{tid}")
        last: dict[str, str | None] = {}
        seq = 0
        with self._client(tid) as client:
            while not self._stop.is_set():
                key = rng.choice(self.keys)
                dice = rng.random()
                seq += 1
                value = f"{tid}.{seq}"
                if dice < self.settings.writes:
                    self._write(client, tid, key, value, last)
                elif dice < self.settings.writes + self.settings.reads:
                    self._read(client, tid, key, last)
                else:
                    self._cas(client, tid, key, value, last)
                self._stop.wait(self.settings.think)

    def _failed(self, token: int, err: Exception) -> None:
        with self._lock:
            self.errors[type(err).__name__] += 1
        if isinstance(err, DEFINITE):
            self.recorder.fail(token)
        else:
            self.recorder.info(token)

    def _write(self, client: Client, tid: int, key: str, value: str, last: dict[str, str | None]) -> None:
        token = self.recorder.invoke(tid, "write", key, value)
        try:
            result = client.put(self.full_key(key), value.encode())
        except Exception as err:
            self._failed(token, err)
            return
        self.recorder.ok(token)
        last[key] = value
        with self._lock:
            self.acks.append(Ack(token, key, value, result.revision))

    def _read(self, client: Client, tid: int, key: str, last: dict[str, str | None]) -> None:
        token = self.recorder.invoke(tid, "read", key)
        try:
            kv = client.get_one(self.full_key(key), serializable=self.settings.serializable_reads)
        except Exception as err:
            self._failed(token, err)
            return
        value = kv.value.decode() if kv is not None else None
        self.recorder.ok(token, value)
        last[key] = value
        with self._lock:
            self.reads.append(Read(token, key, kv.mod_revision if kv is not None else 0))

    def _cas(self, client: Client, tid: int, key: str, new: str, last: dict[str, str | None]) -> None:
        old = last.get(key)
        full = self.full_key(key)
        compare = Compare(full, "version", "==", 0) if old is None else Compare(full, "value", "==", old.encode())
        token = self.recorder.invoke(tid, "cas", key, (old, new))
        try:
            result = client.txn([compare], success=[Put(full, new.encode())])
        except Exception as err:
            self._failed(token, err)
            return
        if not result.succeeded:
            self.recorder.fail(token)
            return
        self.recorder.ok(token)
        last[key] = new
        with self._lock:
            self.acks.append(Ack(token, key, new, result.revision))

    # -- afterwards -----------------------------------------------------------------------------

    def analyze(self, client: Client, check_timeout: float = 60.0) -> Analysis:
        """Count outcomes, find lost writes and stale reads, check linearizability per key."""
        ops = self.recorder.operations()
        out = Analysis(ops=len(ops), ok=sum(op.status == "ok" for op in ops),
                       failed=sum(op.status == "fail" for op in ops), unknown=sum(op.status == "info" for op in ops),
                       acked=len(self.acks))
        out.lost = self.lost_writes(client)
        out.stale = stale_reads(ops, self.acks, self.reads)
        out.unavailable_s = unavailable_window(ops, self.acks, self.started_ns, self.stopped_ns)
        deadline = time.monotonic() + check_timeout
        by_key: dict[str, list[Operation]] = defaultdict(list)
        for op in ops:
            by_key[op.key].append(op)
        for key in self.keys:
            result = check_history(by_key.get(key, []), timeout=max(1.0, deadline - time.monotonic()))
            out.verdicts[key] = result.verdict
            if not result.linearizable:
                out.explanations.append(result.explanation)
        return out

    def lost_writes(self, client: Client) -> list[str]:
        """Every acknowledged write must be in the store's history at the revision it was given."""
        lost: list[str] = []
        for ack in sorted(self.acks, key=lambda a: a.revision):
            try:
                found = client.get(self.full_key(ack.key), revision=ack.revision).kvs
            except Compacted:
                continue
            except RaftorchError as err:
                lost.append(f"{ack.key}={ack.value}@{ack.revision}: cannot read back ({err})")
                continue
            if not found or found[0].value.decode() != ack.value or found[0].mod_revision != ack.revision:
                got = f"{found[0].value.decode()}@{found[0].mod_revision}" if found else "nothing"
                lost.append(f"{ack.key}={ack.value}@{ack.revision} acknowledged, store has {got}")
        return lost

    def cleanup(self, client: Client) -> None:
        with contextlib.suppress(RaftorchError):
            client.delete(self.prefix + "/", prefix=True)


def stale_reads(ops: list[Operation], acks: list[Ack], reads: list[Read]) -> list[str]:
    """Reads that returned something older than a write acknowledged before the read began."""
    acked_by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for ack in acks:
        ret = ops[ack.token].ret
        assert ret is not None
        acked_by_key[ack.key].append((int(ret), ack.revision))
    newest: dict[str, tuple[list[int], list[int]]] = {}
    for key, items in acked_by_key.items():
        items.sort()
        times, best = [], []
        top = 0
        for ret, revision in items:
            top = max(top, revision)
            times.append(ret)
            best.append(top)
        newest[key] = (times, best)
    found: list[str] = []
    for read in reads:
        op = ops[read.token]
        times, best = newest.get(read.key, ([], []))
        # The newest revision acknowledged strictly before this read was sent.
        index = bisect.bisect_left(times, int(op.call)) - 1
        if index >= 0 and best[index] > read.revision:
            found.append(f"{op.describe()} saw revision {read.revision}, "
                         f"but revision {best[index]} was acknowledged before the read began")
    return found


def unavailable_window(ops: list[Operation], acks: list[Ack], start_ns: int, stop_ns: int) -> float:
    """The longest time, in seconds, without an acknowledged write while the load ran."""
    times = sorted(int(t) for t in (ops[a.token].ret for a in acks) if t is not None)
    points = [start_ns, *times, max(stop_ns, times[-1] if times else start_ns)]
    return max(b - a for a, b in itertools.pairwise(points)) / 1e9
