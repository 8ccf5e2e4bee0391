"""The drills: a fault under load, then what clients saw and whether the cluster kept its word.

Each drill waits for a healthy cluster, starts the workload, injects its fault, measures the
recovery, undoes the fault, and checks the history: no acknowledged write lost, no stale read,
every key's history linearizable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raftorch.client import Client
from raftorch.drill import pods, probe
from raftorch.drill.history import write_jsonl
from raftorch.drill.operators import Operator
from raftorch.drill.workload import Workload, WorkloadSettings

DRILLS = ("failover", "isolate", "lose-worker", "restart-masters")


@dataclass
class DrillResult:
    drill: str
    run: int = 1
    target: str = ""
    old_leader: str = ""
    new_leader: str = ""
    # Seconds from the fault to a new leader with a quorum.
    failover_s: float | None = None
    # Longest stretch without an acknowledged write while the load ran.
    unavailable_s: float | None = None
    ops: int = 0
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    acked_writes: int = 0
    lost_writes: int = 0
    stale_reads: int = 0
    verdicts: dict[str, str] = field(default_factory=dict)
    pods_moved: int | None = None
    pods_moved_s: float | None = None
    objects_intact: bool | None = None
    # Operations the isolated master completed for its pinned client while cut off.
    answered_while_isolated: int | None = None
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def linearizable(self) -> bool:
        return bool(self.verdicts) and all(v == "linearizable" for v in self.verdicts.values())

    @property
    def passed(self) -> bool:
        return (self.lost_writes == 0 and self.stale_reads == 0 and self.linearizable
                and self.objects_intact is not False and not self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "linearizable": self.linearizable, "passed": self.passed}


@dataclass(frozen=True, slots=True)
class DrillOptions:
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    # Seconds of load before the fault, and after recovery before the fault is undone.
    before: float = 0.5
    after: float = 1.0
    # Give up waiting for a leader, or for a healthy cluster, after this long.
    recovery_timeout: float = 30.0
    check_timeout: float = 60.0
    # Where each run's history goes as JSON lines (NAME-RUN.jsonl), for `raftctl drill check`.
    history_dir: Path | None = None


Fault = Callable[[DrillResult], None]


def _drill(name: str, endpoints: Mapping[str, str], options: DrillOptions, run: int, fault: Fault, undo: Fault,
           *, prepare: Fault | None = None, settle: Fault | None = None,
           judge: Callable[[DrillResult, Workload], None] | None = None) -> DrillResult:
    """The frame every drill shares: `prepare`, then load around `fault` and its `undo`, then
    `settle` (without load: slow recoveries would only make the history long), then judge."""
    result = DrillResult(name, run)
    started = time.monotonic()
    probe.wait_healthy(endpoints, timeout=options.recovery_timeout)
    if prepare is not None:
        prepare(result)
    load = Workload(endpoints, options.workload, prefix=f"drill/{name}-{run}-{secrets.token_hex(3)}")
    load.start()
    try:
        time.sleep(options.before)
        try:
            fault(result)
            time.sleep(options.after)
        finally:
            undo(result)
    finally:
        load.stop()
    if settle is not None:
        settle(result)
    probe.wait_healthy(endpoints, timeout=options.recovery_timeout)
    with Client(list(endpoints.values()), timeout=5.0, retry_for=options.recovery_timeout) as c:
        found = load.analyze(c, options.check_timeout)
        load.cleanup(c)
    if options.history_dir is not None:
        options.history_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(load.recorder.operations(), options.history_dir / f"{name}-{run}.jsonl")
    result.ops, result.ok, result.failed, result.unknown = found.ops, found.ok, found.failed, found.unknown
    result.acked_writes = found.acked
    result.lost_writes = len(found.lost)
    result.stale_reads = len(found.stale)
    result.verdicts = found.verdicts
    result.unavailable_s = round(found.unavailable_s, 3)
    result.errors = dict(load.errors)
    result.problems += found.lost[:5] + found.stale[:5] + found.explanations
    if judge is not None:
        judge(result, load)
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def failover(endpoints: Mapping[str, str], operator: Operator, options: DrillOptions | None = None,
             run: int = 1) -> DrillResult:
    """SIGKILL the leader; a new one must take over, and nothing acknowledged may be lost."""
    def fault(result: DrillResult) -> None:
        old, term = probe.wait_leader(endpoints, timeout=opts.recovery_timeout)
        result.old_leader = result.target = old
        started = time.monotonic()
        operator.kill_master(old)
        others = [n for n in endpoints if n != old]
        result.new_leader, _ = probe.wait_leader(endpoints, others, term + 1, opts.recovery_timeout)
        result.failover_s = round(time.monotonic() - started, 3)

    def undo(result: DrillResult) -> None:
        if result.target:
            operator.start_master(result.target)

    opts = options or DrillOptions()
    return _drill("failover", endpoints, opts, run, fault, undo)


def isolate(endpoints: Mapping[str, str], operator: Operator, options: DrillOptions | None = None,
            run: int = 1) -> DrillResult:
    """Cut the leader off from the other masters while clients still reach it."""
    window: dict[str, int] = {}

    def fault(result: DrillResult) -> None:
        old, term = probe.wait_leader(endpoints, timeout=opts.recovery_timeout)
        result.old_leader = result.target = old
        started = time.monotonic()
        operator.isolate(old)
        window["from"] = time.monotonic_ns()
        others = [n for n in endpoints if n != old]
        result.new_leader, _ = probe.wait_leader(endpoints, others, term + 1, opts.recovery_timeout)
        result.failover_s = round(time.monotonic() - started, 3)

    def undo(result: DrillResult) -> None:
        if result.target:
            window["to"] = time.monotonic_ns()
            operator.heal(result.target)

    def judge(result: DrillResult, load: Workload) -> None:
        # What the cut-off master answered its pinned client while it could not reach a quorum:
        # only reads and writes it could prove current are allowed, so this should stay 0.
        tid = load.pinned.get(result.target)
        if tid is None or "from" not in window:
            return
        result.answered_while_isolated = sum(
            1 for op in load.recorder.operations()
            if op.process == tid and op.status == "ok" and op.call >= window["from"]
            and op.ret is not None and op.ret <= window.get("to", op.ret))

    opts = options or DrillOptions()
    return _drill("isolate", endpoints, opts, run, fault, undo, judge=judge)


def restart_masters(endpoints: Mapping[str, str], operator: Operator, options: DrillOptions | None = None,
                    run: int = 1, replicas: int = 2) -> DrillResult:
    """Kill every master at once and start them again: objects and running pods must survive.

    With Ready nodes, a deployment of `replicas` pods is placed first, so running pods are checked."""
    before: dict[str, Any] = {}
    app = f"drill-{secrets.token_hex(3)}"

    def prepare(result: DrillResult) -> None:
        with Client(list(endpoints.values()), timeout=5.0, retry_for=opts.recovery_timeout) as c:
            if replicas and pods.ready_nodes(c):
                pods.place_deployment(c, app, replicas, opts.recovery_timeout)
            before.update(pods.snapshot(c))

    def fault(result: DrillResult) -> None:
        old, _ = probe.wait_leader(endpoints, timeout=opts.recovery_timeout)
        result.old_leader, result.target = old, "all masters"
        started = time.monotonic()
        for name in endpoints:
            operator.kill_master(name)
        for name in endpoints:
            operator.start_master(name)
        result.new_leader, _ = probe.wait_leader(endpoints, timeout=opts.recovery_timeout)
        result.failover_s = round(time.monotonic() - started, 3)

    def undo(result: DrillResult) -> None:
        for name in endpoints:
            operator.start_master(name)
        probe.wait_healthy(endpoints, timeout=opts.recovery_timeout)
        with Client(list(endpoints.values()), timeout=5.0, retry_for=opts.recovery_timeout) as c:
            if before:
                result.problems += pods.compare_snapshots(before, pods.snapshot(c))
                result.objects_intact = not result.problems
            pods.delete_deployment(c, app)

    opts = options or DrillOptions()
    return _drill("restart-masters", endpoints, opts, run, fault, undo, prepare=prepare)


def lose_worker(endpoints: Mapping[str, str], operator: Operator, options: DrillOptions | None = None,
                run: int = 1, replicas: int = 4, move_timeout: float = 60.0) -> DrillResult:
    """Lose the worker host running most of a deployment's pods; they must run elsewhere."""
    app = f"drill-{secrets.token_hex(3)}"
    lost_at: list[float] = []

    def prepare(result: DrillResult) -> None:
        with Client(list(endpoints.values()), timeout=5.0, retry_for=opts.recovery_timeout) as c:
            result.target, result.pods_moved = pods.place_deployment(c, app, replicas, opts.recovery_timeout)

    def fault(result: DrillResult) -> None:
        lost_at.append(time.monotonic())
        operator.lose_worker(result.target)

    def settle(result: DrillResult) -> None:
        try:
            with Client(list(endpoints.values()), timeout=5.0, retry_for=opts.recovery_timeout) as c:
                if lost_at:
                    pods.wait_moved(c, app, replicas, result.target, move_timeout)
                    result.pods_moved_s = round(time.monotonic() - lost_at[0], 3)
                pods.delete_deployment(c, app)
        finally:
            if lost_at:
                operator.restore_worker(result.target)

    opts = options or DrillOptions()
    return _drill("lose-worker", endpoints, opts, run, fault, lambda _: None, prepare=prepare, settle=settle)


RUNNERS: dict[str, Callable[[Mapping[str, str], Operator, DrillOptions | None, int], DrillResult]] = {
    "failover": failover,
    "isolate": isolate,
    "lose-worker": lose_worker,
    "restart-masters": restart_masters,
}
