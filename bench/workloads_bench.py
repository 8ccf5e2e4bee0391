"""How promptly the workload controllers act: a daemon set reaching a new node, cron jobs on time.

    python bench/workloads_bench.py [--runs N] [--heartbeat S]

Starts three real masters on 127.0.0.1 and hollow (fake-runtime) nodes, then prints:

- daemon set, new node: seconds from a new node's registration to a daemon pod bound to it, and
  to that pod Running (target: within the heartbeat period plus 2 s);
- cron job lateness: seconds from each scheduled instant (every 2 s, the test-only override) to
  the job's creation, as the masters' clocks stamp it (whole seconds, so an upper bound).

Not a test: it never fails on a slow machine; compare figures within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import percentile, wait_until

from raftorch.agent.hollow import HollowFleet
from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.local.masters import LocalMasters
from raftorch.objects import TEST_EVERY_SECONDS_ANNOTATION, parse_time


def _daemon_pod(c: Client, node: str) -> objects_pb2.Pod | None:
    items, _ = c.objects.list("pods", "default", label_selector="app=bench-ds")
    return next((p for p in items if isinstance(p, objects_pb2.Pod) and p.spec.node_name == node), None)


def daemon_set_runs(masters: LocalMasters, runs: int, heartbeat: float) -> tuple[list[float], list[float]]:
    labels = {"app": "bench-ds"}
    bound: list[float] = []
    running: list[float] = []
    with masters.client() as c:
        c.objects.create(objects_pb2.DaemonSet(
            metadata=objects_pb2.ObjectMeta(name="bench-ds", namespace="default"),
            spec=objects_pb2.DaemonSetSpec(selector=objects_pb2.LabelSelector(match_labels=labels),
                                           template=objects_pb2.PodTemplateSpec(
                                               metadata=objects_pb2.ObjectMeta(labels=labels),
                                               spec=objects_pb2.PodSpec(containers=[
                                                   objects_pb2.Container(name="d", image="d:v1")])))))
        for i in range(runs):
            name = f"late-{i}"
            fleet = HollowFleet(masters.endpoints, [name], heartbeat_period=heartbeat)
            start = time.monotonic()
            fleet.start()
            try:
                if wait_until(lambda n=name: _daemon_pod(c, n) is not None, 30, 0.02):
                    bound.append(time.monotonic() - start)
                pod_running = lambda n=name: (p := _daemon_pod(c, n)) is not None and p.status.phase == "Running"  # noqa: E731
                if wait_until(pod_running, 30, 0.02):
                    running.append(time.monotonic() - start)
            finally:
                fleet.stop()
    return bound, running


def cron_lateness(masters: LocalMasters, jobs: int) -> list[float]:
    every = 2
    with masters.client() as c:
        c.objects.create(objects_pb2.CronJob(
            metadata=objects_pb2.ObjectMeta(name="bench-cron", namespace="default",
                                            annotations={TEST_EVERY_SECONDS_ANNOTATION: str(every)}),
            spec=objects_pb2.CronJobSpec(schedule="* * * * *", successful_jobs_history_limit=1000,
                                         failed_jobs_history_limit=1000,
                                         job_template=objects_pb2.JobTemplateSpec(spec=objects_pb2.JobSpec(
                                             template=objects_pb2.PodTemplateSpec(spec=objects_pb2.PodSpec(
                                                 containers=[objects_pb2.Container(name="j", image="j:v1")])))))))

        def made() -> list[objects_pb2.Job]:
            items, _ = c.objects.list("jobs", "default")
            return [j for j in items if isinstance(j, objects_pb2.Job) and j.metadata.name.startswith("bench-cron-")]

        wait_until(lambda: len(made()) >= jobs, jobs * every + 30, 0.2)
        late = []
        for j in made():
            scheduled = int(j.metadata.name.rsplit("-", 1)[1])
            late.append(parse_time(j.metadata.creation_timestamp) - scheduled)
    return sorted(late)


def _row(label: str, samples: list[float]) -> str:
    s = sorted(samples)
    if not s:
        return f"{label:>36}: no samples"
    return (f"{label:>36}: n={len(s)}  median {percentile(s, 50):.2f} s  p90 {percentile(s, 90):.2f} s  "
            f"max {s[-1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        masters = LocalMasters(Path(tmp) / "masters")
        masters.start()
        try:
            masters.wait_ready()
            base = HollowFleet(masters.endpoints, ["base-1", "base-2", "base-3"], heartbeat_period=args.heartbeat)
            base.start()
            try:
                bound, running = daemon_set_runs(masters, args.runs, args.heartbeat)
                print(f"heartbeat period {args.heartbeat:.1f} s; target: new node's daemon within "
                      f"{args.heartbeat + 2:.1f} s")
                print(_row("daemon set, new node -> pod bound", bound))
                print(_row("daemon set, new node -> pod Running", running))
                print(_row("cron job lateness (every 2 s)", cron_lateness(masters, args.runs * 2)))
            finally:
                base.stop()
        finally:
            masters.kill()


if __name__ == "__main__":
    main()
