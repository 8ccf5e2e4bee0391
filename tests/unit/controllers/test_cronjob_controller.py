"""plan_cronjob with a test clock: on time, once per scheduled time, policies, deadlines, history."""

from __future__ import annotations

from datetime import UTC, datetime

from raftorch.api.v1 import objects_pb2
from raftorch.master.controllers import plan_cronjob
from raftorch.master.controllers.cronjob import schedule_times
from raftorch.objects import TEST_EVERY_SECONDS_ANNOTATION, apply_defaults, format_time, validate

# 2026-03-01 12:00:00 UTC, a minute boundary.
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


def _cron(schedule: str = "* * * * *", policy: str = "Allow", created: float = T0 - 30,
          **spec: object) -> objects_pb2.CronJob:
    cron = objects_pb2.CronJob(
        metadata=objects_pb2.ObjectMeta(name="tick", namespace="default", uid="cj-uid",
                                        creation_timestamp=format_time(created)),
        spec=objects_pb2.CronJobSpec(
            schedule=schedule, concurrency_policy=policy, job_template=objects_pb2.JobTemplateSpec(
            spec=objects_pb2.JobSpec(template=objects_pb2.PodTemplateSpec(spec=objects_pb2.PodSpec(
                containers=[objects_pb2.Container(name="t", image="busybox")]))))))
    for key, value in spec.items():
        setattr(cron.spec, key, value)
    apply_defaults(cron)
    validate(cron)
    return cron


class Sim:
    def __init__(self, cron: objects_pb2.CronJob) -> None:
        self.cron = cron
        self.jobs: dict[str, objects_pb2.Job] = {}
        self.created: list[tuple[float, str]] = []

    def step(self, now: float) -> None:
        plan = plan_cronjob(self.cron, list(self.jobs.values()), now)
        for name in plan.delete:
            del self.jobs[name]
        if plan.create is not None:
            assert plan.create.metadata.name not in self.jobs, "the same run twice"
            job = plan.create
            job.metadata.uid = f"uid-{job.metadata.name}"
            job.status.start_time = format_time(now)
            self.jobs[job.metadata.name] = job
            self.created.append((now, job.metadata.name))
        self.cron.status.CopyFrom(plan.status)

    def finish(self, name: str, type_: str = "Complete", at: float = 0.0) -> None:
        job = self.jobs[name]
        job.status.conditions.add(type=type_, status="True")
        if type_ == "Complete":
            job.status.completion_time = format_time(at)


def test_every_minute_creates_one_job_at_each_minute() -> None:
    sim = Sim(_cron())
    for second in range(0, 181, 5):  # three minutes, polled every 5 s
        sim.step(T0 + second)
    assert [when for when, _ in sim.created] == [T0, T0 + 60, T0 + 120, T0 + 180]
    assert sim.created[0][1] == f"tick-{int(T0 // 60)}"
    job = sim.jobs[sim.created[0][1]]
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert job.spec.selector.match_labels["job-name"] == job.metadata.name
    assert sim.cron.status.last_schedule_time == format_time(T0 + 180)


def test_next_wake_is_the_next_scheduled_time() -> None:
    plan = plan_cronjob(_cron("*/5 * * * *"), [], T0 + 61)
    assert plan.wake_at == T0 + 300


def test_time_zone_shifts_the_schedule() -> None:
    # 13:00 in Paris (UTC+1 in March) is 12:00 UTC.
    cron = _cron("0 13 * * *", time_zone="Europe/Paris", created=T0 - 3600)
    latest, _, _ = schedule_times(cron, T0 + 10)
    assert latest == T0


def test_a_new_leader_after_the_job_was_made_records_it_and_makes_no_second() -> None:
    sim = Sim(_cron())
    sim.step(T0 + 1)
    # The status write was lost with the old leader: the next one sees only the job.
    sim.cron.status.Clear()
    plan = plan_cronjob(sim.cron, list(sim.jobs.values()), T0 + 2)
    assert plan.create is None
    assert plan.status.last_schedule_time == format_time(T0)


def test_missed_times_run_once_and_only_the_latest() -> None:
    sim = Sim(_cron(created=T0 - 600))
    sim.step(T0 + 10)
    assert [name for _, name in sim.created] == [f"tick-{int(T0 // 60)}"]


def test_starting_deadline_skips_late_runs() -> None:
    cron = _cron(starting_deadline_seconds=5)
    plan = plan_cronjob(cron, [], T0 + 20)
    assert plan.create is None and "missed" in plan.skipped
    assert plan_cronjob(cron, [], T0 + 3).create is not None


def test_forbid_skips_while_a_job_is_active() -> None:
    sim = Sim(_cron(policy="Forbid"))
    sim.step(T0)
    sim.step(T0 + 60)
    assert len(sim.created) == 1
    sim.finish(sim.created[0][1], at=T0 + 70)
    sim.step(T0 + 90)
    assert len(sim.created) == 1  # the skipped time stays skipped
    sim.step(T0 + 120)
    assert len(sim.created) == 2


def test_replace_deletes_the_active_job() -> None:
    sim = Sim(_cron(policy="Replace"))
    sim.step(T0)
    first = sim.created[0][1]
    sim.step(T0 + 60)
    assert first not in sim.jobs and len(sim.jobs) == 1


def test_allow_runs_side_by_side() -> None:
    sim = Sim(_cron())
    sim.step(T0)
    sim.step(T0 + 60)
    assert len(sim.jobs) == 2
    assert len(sim.cron.status.active) == 2


def test_history_limits_keep_the_newest_finished_jobs() -> None:
    sim = Sim(_cron(successful_jobs_history_limit=2, failed_jobs_history_limit=1))
    for minute in range(5):
        sim.step(T0 + 60 * minute)
        sim.finish(sim.created[-1][1], "Complete" if minute != 2 else "Failed", at=T0 + 60 * minute + 1)
    sim.step(T0 + 60 * 4 + 30)
    names = sorted(sim.jobs)
    minutes = [int(T0 // 60) + m for m in (2, 3, 4)]
    assert names == [f"tick-{m}" for m in minutes]
    assert sim.cron.status.last_successful_time == format_time(T0 + 241)


def test_suspend_creates_nothing() -> None:
    assert plan_cronjob(_cron(suspend=True), [], T0 + 1).create is None


def test_seconds_override_for_tests() -> None:
    cron = _cron(created=T0 - 1)
    cron.metadata.annotations[TEST_EVERY_SECONDS_ANNOTATION] = "2"
    sim = Sim(cron)
    for tenth in range(0, 61):
        sim.step(T0 + tenth / 10)
    assert [when for when, _ in sim.created] == [T0, T0 + 2, T0 + 4, T0 + 6]
    assert sim.created[1][1] == f"tick-{int(T0) + 2}"
