"""plan_job: parallelism, completions, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from controller_sim import rfc3339

from raftorch.api.v1 import objects_pb2
from raftorch.master.controllers import job_finished, plan_job
from raftorch.master.controllers._util import parse_time
from raftorch.objects import apply_defaults, validate

T0 = parse_time(rfc3339(0)) or 0.0


def _job(completions: int = 1, parallelism: int = 1, backoff: int = 6, deadline: int | None = None,
         ttl: int | None = None, policy: str = "Never") -> objects_pb2.Job:
    job = objects_pb2.Job(
        metadata=objects_pb2.ObjectMeta(name="pi", namespace="default", uid="job-uid"),
        spec=objects_pb2.JobSpec(completions=completions, parallelism=parallelism, backoff_limit=backoff,
                                 template=objects_pb2.PodTemplateSpec(spec=objects_pb2.PodSpec(
                                     restart_policy=policy,
                                     containers=[objects_pb2.Container(name="pi", image="busybox")]))))
    if deadline is not None:
        job.spec.active_deadline_seconds = deadline
    if ttl is not None:
        job.spec.ttl_seconds_after_finished = ttl
    apply_defaults(job)
    validate(job)
    return job


def _suffixes() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"{next(counter):05d}"


class JobSim:
    """Applies plans to an in-memory job and its pods; `finish` makes running pods end."""

    def __init__(self, job: objects_pb2.Job) -> None:
        self.job = job
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.suffix = _suffixes()
        self.max_running = 0
        self.deleted_job = False

    def step(self, now: float) -> None:
        plan = plan_job(self.job, list(self.pods.values()), now, self.suffix)
        if plan.delete_job:
            self.deleted_job = True
            return
        for pod in plan.create:
            pod.metadata.creation_timestamp = rfc3339(int(now - T0))
            pod.status.phase = "Running"
            self.pods[pod.metadata.name] = pod
        for name in plan.delete:
            del self.pods[name]
        self.job.status.CopyFrom(plan.status)
        running = sum(1 for p in self.pods.values() if p.status.phase == "Running")
        self.max_running = max(self.max_running, running)

    def finish(self, phase: str, count: int | None = None) -> None:
        running = [p for p in self.pods.values() if p.status.phase == "Running"]
        for pod in running[:count]:
            pod.status.phase = phase


def test_completions_with_parallelism_never_exceeds_parallelism() -> None:
    sim = JobSim(_job(completions=5, parallelism=2))
    for i in range(10):
        sim.step(T0 + i)
        if job_finished(sim.job):
            break
        sim.finish("Succeeded")
    assert job_finished(sim.job) == "Complete"
    assert sim.job.status.succeeded == 5
    assert sim.max_running == 2
    assert len(sim.pods) == 5
    assert sim.job.status.completion_time


def test_last_round_only_starts_what_is_still_needed() -> None:
    sim = JobSim(_job(completions=3, parallelism=2))
    sim.step(T0)
    sim.finish("Succeeded")
    sim.step(T0 + 1)
    running = [p for p in sim.pods.values() if p.status.phase == "Running"]
    assert len(running) == 1


def test_failing_pods_fail_the_job_after_backoff_limit_plus_one() -> None:
    sim = JobSim(_job(backoff=2))
    for i in range(10):
        sim.step(T0 + i)
        if job_finished(sim.job):
            break
        sim.finish("Failed")
    assert job_finished(sim.job) == "Failed"
    assert len(sim.pods) == 3
    cond = sim.job.status.conditions[-1]
    assert (cond.type, cond.status, cond.reason) == ("Failed", "True", "BackoffLimitExceeded")


def test_on_failure_counts_container_restarts() -> None:
    sim = JobSim(_job(backoff=1, policy="OnFailure"))
    sim.step(T0)
    (pod,) = sim.pods.values()
    pod.status.container_statuses.add(name="pi", restart_count=2)
    sim.step(T0 + 1)
    assert job_finished(sim.job) == "Failed"


def test_active_deadline_kills_pods_and_fails_the_job() -> None:
    sim = JobSim(_job(completions=2, parallelism=2, deadline=5))
    sim.step(T0)
    assert len(sim.pods) == 2
    plan = plan_job(sim.job, list(sim.pods.values()), T0 + 3, sim.suffix)
    assert plan.wake_at == T0 + 5 and not plan.delete
    sim.step(T0 + 5)
    assert sim.pods == {}
    cond = sim.job.status.conditions[-1]
    assert (cond.type, cond.reason) == ("Failed", "DeadlineExceeded")


def test_ttl_after_finished_deletes_the_job() -> None:
    sim = JobSim(_job(ttl=10))
    sim.step(T0)
    sim.finish("Succeeded")
    sim.step(T0 + 1)
    assert job_finished(sim.job) == "Complete"
    finished_at = parse_time(sim.job.status.conditions[-1].last_transition_time) or 0.0
    plan = plan_job(sim.job, list(sim.pods.values()), finished_at + 5, sim.suffix)
    assert not plan.delete_job and plan.wake_at == finished_at + 10
    sim.step(finished_at + 10)
    assert sim.deleted_job


def test_lower_parallelism_stops_extra_pods() -> None:
    sim = JobSim(_job(completions=4, parallelism=3))
    sim.step(T0)
    sim.job.spec.parallelism = 1
    plan = plan_job(sim.job, list(sim.pods.values()), T0 + 1, sim.suffix)
    assert len(plan.delete) == 2 and not plan.create


def test_pods_carry_the_template_and_the_owner() -> None:
    job = _job()
    plan = plan_job(job, [], T0, _suffixes())
    (pod,) = plan.create
    assert pod.metadata.name == "pi-00000"
    assert pod.metadata.labels["job-name"] == "pi"
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.metadata.owner_references[0].uid == "job-uid"
    assert pod.spec.restart_policy == "Never"
    assert plan.status.start_time == rfc3339(0)
