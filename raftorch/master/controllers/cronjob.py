"""CronJob controller, pure: create a job at each time of the schedule, in the cron job's time zone.

Exactly once per scheduled time, across leader changes, by two means:

* a job's name is `<cron job>-<scheduled time in minutes since the epoch>` (seconds with the
  test override), so two leaders deciding the same run write the same name and the store
  refuses the second create;
* `status.lastScheduleTime` records the last time handled (created, or skipped by Forbid); it
  is written with the fenced controller writes, and a time at or before it is never run again.

Only the most recent missed time runs (as in Kubernetes), and not at all when it is more than
`startingDeadlineSeconds` late. `concurrencyPolicy`: Allow runs jobs side by side; Forbid skips
a time while a job is active; Replace deletes the active jobs and runs the new one. Finished jobs
beyond the history limits are deleted, oldest first.

`cronjob.raftorch.io/test-every-seconds: N` replaces the schedule by "every N seconds" for tests
that cannot wait for minute boundaries; it is not meant for real work.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from croniter import croniter

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.master.controllers._util import FAILED, is_controlled_by, parse_time
from raftorch.master.controllers.job import COMPLETE, job_finished
from raftorch.objects import TEST_EVERY_SECONDS_ANNOTATION, format_time, job_from_cron_job


@dataclass(frozen=True, slots=True)
class CronJobPlan:
    create: objects_pb2.Job | None
    delete: tuple[str, ...]  # job names
    status: objects_pb2.CronJobStatus
    wake_at: float | None  # the next scheduled time
    skipped: str = ""  # why a due time did not run, for an event
    skipped_reason: str = ""  # the event's reason: MissSchedule or JobAlreadyActive


def _zone(cron: objects_pb2.CronJob) -> tzinfo:
    if not cron.spec.time_zone:
        return UTC
    try:
        return zoneinfo.ZoneInfo(cron.spec.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise Invalid(f"cron job {cron.metadata.name}: spec.timeZone: unknown time zone "
                      f"{cron.spec.time_zone!r}") from exc


def schedule_times(cron: objects_pb2.CronJob, now: float) -> tuple[float, float, int]:
    """(the latest scheduled time at or before `now`, the next one after it, the naming unit in seconds)."""
    every = cron.metadata.annotations.get(TEST_EVERY_SECONDS_ANNOTATION, "")
    if every.isdigit() and int(every) > 0:
        period = int(every)
        start = math.floor(now / period) * period
        return float(start), float(start + period), 1
    if not croniter.is_valid(cron.spec.schedule):
        raise Invalid(f"cron job {cron.metadata.name}: spec.schedule: invalid cron expression {cron.spec.schedule!r}")
    zone = _zone(cron)
    # The schedule has minute granularity: from the start of the next second, get_prev finds a
    # time equal to `now` itself.
    base = datetime.fromtimestamp(math.floor(now) + 1, zone)
    latest = croniter(cron.spec.schedule, base).get_prev(float)
    following = croniter(cron.spec.schedule, datetime.fromtimestamp(now, zone)).get_next(float)
    return float(latest), float(following), 60


def job_name(cron: objects_pb2.CronJob, scheduled: float, unit: int) -> str:
    return f"{cron.metadata.name}-{int(scheduled // unit)}"


def plan_cronjob(cron: objects_pb2.CronJob, jobs: Sequence[objects_pb2.Job], now: float) -> CronJobPlan:
    spec = cron.spec
    own = [j for j in jobs if j.metadata.namespace == cron.metadata.namespace
           and is_controlled_by(j.metadata, "CronJob", cron.metadata)]
    active = [j for j in own if not job_finished(j) and not j.metadata.deletion_timestamp]
    succeeded = [j for j in own if job_finished(j) == COMPLETE]
    failed = [j for j in own if job_finished(j) == FAILED]

    status = objects_pb2.CronJobStatus()
    status.CopyFrom(cron.status)
    done_times = [t for t in (parse_time(j.status.completion_time) for j in succeeded) if t is not None]
    if done_times:
        status.last_successful_time = format_time(max(done_times))

    delete: list[str] = []
    for group, limit in ((succeeded, spec.successful_jobs_history_limit if spec.HasField(
            "successful_jobs_history_limit") else 3),
                         (failed, spec.failed_jobs_history_limit if spec.HasField("failed_jobs_history_limit") else 1)):
        ordered = sorted(group, key=_started)
        delete.extend(j.metadata.name for j in ordered[:max(0, len(ordered) - limit)])

    create: objects_pb2.Job | None = None
    skipped = skipped_reason = ""
    latest, following, unit = schedule_times(cron, now)
    last = parse_time(status.last_schedule_time) or parse_time(cron.metadata.creation_timestamp)
    due = not spec.suspend and not cron.metadata.deletion_timestamp and (last is None or latest > last)
    # The creation time is floored to the second: a time in its very second is before the cron job.
    if due and last is None:
        due = False
    if due:
        name = job_name(cron, latest, unit)
        late = now - latest
        if any(j.metadata.name == name for j in own):
            status.last_schedule_time = format_time(latest)  # made by an earlier leader; record it
        elif spec.HasField("starting_deadline_seconds") and late > spec.starting_deadline_seconds:
            skipped = f"missed the schedule at {format_time(latest)} by more than {spec.starting_deadline_seconds}s"
            skipped_reason = "MissSchedule"
        elif active and spec.concurrency_policy == "Forbid":
            skipped = f"a job is still active; skipped the schedule at {format_time(latest)}"
            skipped_reason = "JobAlreadyActive"
            status.last_schedule_time = format_time(latest)
        else:
            if active and spec.concurrency_policy == "Replace":
                delete.extend(j.metadata.name for j in active)
                active = []
            create = job_from_cron_job(cron, name)
            status.last_schedule_time = format_time(latest)

    gone = set(delete)
    del status.active[:]
    for j in sorted(active, key=lambda j: j.metadata.name):
        if j.metadata.name not in gone:
            status.active.add(kind="Job", namespace=j.metadata.namespace, name=j.metadata.name, uid=j.metadata.uid)
    if create is not None:
        status.active.add(kind="Job", namespace=create.metadata.namespace, name=create.metadata.name)
    return CronJobPlan(create, tuple(sorted(gone)), status, None if spec.suspend else following, skipped,
                       skipped_reason)


def _started(job: objects_pb2.Job) -> tuple[float, str]:
    when = parse_time(job.status.start_time) or parse_time(job.metadata.creation_timestamp)
    return (when if when is not None else float("-inf"), job.metadata.name)
