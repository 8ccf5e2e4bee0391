"""Job controller, pure: run pods to completion, `parallelism` at a time, until `completions` succeed.

A job fails when more pods failed than `backoffLimit` allows (with restartPolicy OnFailure,
container restarts count as failures, as in Kubernetes), or when it has been active for
`activeDeadlineSeconds`; its running pods are then deleted. A finished job is deleted
`ttlSecondsAfterFinished` after it finished, its pods with it (by the garbage collector).

Pods count from what is stored: a finished pod deleted by hand is forgotten (Kubernetes keeps
the counts with finalizers; raftorch does not have them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Internal
from raftorch.master.controllers._util import (
    FAILED,
    PENDING,
    SUCCEEDED,
    controller_owner,
    find_condition,
    is_controlled_by,
    parse_time,
    pod_is_ready,
    pod_is_terminal,
    pod_is_terminating,
)
from raftorch.objects import format_time

COMPLETE = "Complete"
DEADLINE_EXCEEDED = "DeadlineExceeded"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
_MAX_SUFFIX_TRIES = 100


@dataclass(frozen=True, slots=True)
class JobPlan:
    create: tuple[objects_pb2.Pod, ...]
    delete: tuple[str, ...]  # pod names
    status: objects_pb2.JobStatus
    delete_job: bool = False
    # POSIX time at which the plan changes with time alone (deadline, TTL); None = never.
    wake_at: float | None = None


def job_finished(job: objects_pb2.Job) -> str:
    """"Complete", "Failed" or "" while the job runs."""
    for type_ in (COMPLETE, FAILED):
        cond = find_condition(job.status.conditions, type_)
        if cond is not None and cond.status == "True":
            return type_
    return ""


def plan_job(job: objects_pb2.Job, pods: Sequence[objects_pb2.Pod], now: float,
             new_suffix: Callable[[], str]) -> JobPlan:
    """`pods`: at least those the job controls; the names of the others are avoided."""
    spec = job.spec
    own = [p for p in pods if p.metadata.namespace == job.metadata.namespace
           and is_controlled_by(p.metadata, "Job", job.metadata)]
    # A terminating pod still runs: it counts against parallelism until it is gone.
    running = [p for p in own if not pod_is_terminal(p)]
    alive = [p for p in running if not pod_is_terminating(p)]
    succeeded = sum(1 for p in own if p.status.phase == SUCCEEDED)
    failed = sum(1 for p in own if p.status.phase == FAILED)
    if spec.template.spec.restart_policy == "OnFailure":
        failed += sum(c.restart_count for p in own for c in p.status.container_statuses)
    now_text = format_time(now)

    status = objects_pb2.JobStatus()
    status.CopyFrom(job.status)
    status.start_time = status.start_time or now_text
    status.succeeded, status.failed = succeeded, failed
    status.ready = sum(1 for p in alive if pod_is_ready(p))
    status.active = len(alive)
    if job.metadata.deletion_timestamp:
        return JobPlan((), (), status)

    finished = job_finished(job)
    if finished:
        return _finished(job, alive, status, now)

    start = parse_time(status.start_time)
    deadline = (start + spec.active_deadline_seconds
                if start is not None and spec.HasField("active_deadline_seconds") else None)
    completions = spec.completions if spec.HasField("completions") else 1
    parallelism = spec.parallelism if spec.HasField("parallelism") else 1
    backoff_limit = spec.backoff_limit if spec.HasField("backoff_limit") else 6
    verdict: tuple[str, str, str] | None = None
    if deadline is not None and now >= deadline:
        verdict = (FAILED, DEADLINE_EXCEEDED, "Job was active longer than specified deadline")
    elif failed > backoff_limit:
        verdict = (FAILED, BACKOFF_LIMIT_EXCEEDED, "Job has reached the specified backoff limit")
    elif succeeded >= completions:
        verdict = (COMPLETE, "CompletionsReached", "Reached expected number of succeeded pods")
    if verdict is not None:
        type_, reason, message = verdict
        del status.conditions[:]
        status.conditions.extend([c for c in job.status.conditions if c.type not in (COMPLETE, FAILED)])
        status.conditions.add(type=type_, status="True", reason=reason, message=message,
                              last_transition_time=now_text)
        if type_ == COMPLETE:
            status.completion_time = now_text
        status.active = status.ready = 0
        return JobPlan((), tuple(sorted(p.metadata.name for p in alive)), status,
                       wake_at=now + spec.ttl_seconds_after_finished
                       if spec.HasField("ttl_seconds_after_finished") else None)

    want = max(0, min(parallelism, completions - succeeded))
    created: list[objects_pb2.Pod] = []
    doomed: list[str] = []
    if want > len(running):
        taken = {p.metadata.name for p in pods if p.metadata.namespace == job.metadata.namespace}
        for _ in range(want - len(running)):
            pod = _new_pod(job, _free_name(job.metadata.name, taken, new_suffix))
            taken.add(pod.metadata.name)
            created.append(pod)
    elif want < len(alive):
        # Parallelism went down: stop the newest pods, the not-ready ones first.
        newest = sorted(alive, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name), reverse=True)
        ranked = sorted(newest, key=pod_is_ready)
        doomed = [p.metadata.name for p in ranked[:len(alive) - want]]
    status.active = len(alive) - len(doomed) + len(created)
    return JobPlan(tuple(created), tuple(doomed), status, wake_at=deadline)


def _finished(job: objects_pb2.Job, alive: Sequence[objects_pb2.Pod], status: objects_pb2.JobStatus,
              now: float) -> JobPlan:
    status.active = status.ready = 0
    doomed = tuple(sorted(p.metadata.name for p in alive))
    if not job.spec.HasField("ttl_seconds_after_finished"):
        return JobPlan((), doomed, status)
    cond = find_condition(job.status.conditions, job_finished(job))
    ended = parse_time(cond.last_transition_time) if cond is not None else None
    due = (ended if ended is not None else now) + job.spec.ttl_seconds_after_finished
    if now >= due:
        return JobPlan((), doomed, status, delete_job=True)
    return JobPlan((), doomed, status, wake_at=due)


def _free_name(job_name: str, taken: set[str], new_suffix: Callable[[], str]) -> str:
    for _ in range(_MAX_SUFFIX_TRIES):
        name = f"{job_name}-{new_suffix()}"
        if name not in taken:
            return name
    raise Internal(f"job {job_name}: no free pod name after {_MAX_SUFFIX_TRIES} suffixes")


def _new_pod(job: objects_pb2.Job, name: str) -> objects_pb2.Pod:
    template = job.spec.template
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name=name,
            namespace=job.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations=dict(template.metadata.annotations),
            owner_references=[controller_owner("Job", job.metadata)],
        ),
        status=objects_pb2.PodStatus(phase=PENDING),
    )
    pod.spec.CopyFrom(template.spec)
    return pod
