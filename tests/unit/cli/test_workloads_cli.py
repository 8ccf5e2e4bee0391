"""raftctl create job / cronjob, wait and taint without a cluster: parsing, bad input, and columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_offline import one_error, run

from raftorch.api.v1 import objects_pb2
from raftorch.cli import printers
from raftorch.cli.workloads import condition_met, job_manifest, parse_for, parse_taint
from raftorch.errors import Invalid
from raftorch.objects import CRON_JOB, DAEMON_SET, JOB, apply_defaults, parse_time, validate

NOW = parse_time("2026-03-01T12:00:00Z")


def test_parse_taint() -> None:
    t, remove = parse_taint("dedicated=db:NoSchedule")
    assert (t.key, t.value, t.effect, remove) == ("dedicated", "db", "NoSchedule", False)
    t, remove = parse_taint("gpu:NoExecute")
    assert (t.key, t.value, t.effect, remove) == ("gpu", "", "NoExecute", False)
    t, remove = parse_taint("dedicated-")
    assert (t.key, t.effect, remove) == ("dedicated", "", True)
    t, remove = parse_taint("dedicated:NoSchedule-")
    assert (t.key, t.effect, remove) == ("dedicated", "NoSchedule", True)


@pytest.mark.parametrize(("text", "needle"), [
    ("a=b:NoRun", 'unknown taint effect "NoRun"; expected one of NoSchedule, PreferNoSchedule, NoExecute'),
    ("a=b", "an effect is required"),
    ("=b:NoSchedule", "the key is missing"),
])
def test_bad_taints(text: str, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_taint(text)
    assert needle in str(info.value)


def test_taint_with_an_unknown_effect_is_one_error_line(tmp_path: Path) -> None:
    line = one_error(run(tmp_path, "taint", "nodes", "node-a", "key=value:Sometimes"))
    assert 'unknown taint effect "Sometimes"' in line


def test_create_cronjob_with_a_bad_schedule_is_refused_before_any_call(tmp_path: Path) -> None:
    result = run(tmp_path, "create", "cronjob", "tick", "--image=busybox", "--schedule=99 * * * *")
    assert result.exit_code == 2
    assert 'invalid cron expression "99 * * * *"' in one_error(result)


def test_create_job_needs_an_image_or_from(tmp_path: Path) -> None:
    assert "--image is required" in one_error(run(tmp_path, "create", "job", "pi"))
    assert "expected cronjob/NAME" in one_error(run(tmp_path, "create", "job", "pi", "--from=deploy/web"))


def test_wait_for_parsing() -> None:
    assert parse_for("condition=Complete") == ("complete", "true")
    assert parse_for("condition=Ready=False") == ("ready", "false")
    assert parse_for("delete") == ("", "")
    with pytest.raises(Invalid):
        parse_for("jsonpath={.status}")


def test_condition_met_is_case_insensitive() -> None:
    job = objects_pb2.Job()
    job.status.conditions.add(type="Complete", status="True")
    assert condition_met(job, "complete", "true")
    assert not condition_met(job, "failed", "true")


def test_job_manifest_from_flags_is_valid() -> None:
    job = job_manifest("pi", "default", "busybox:latest", ["sh", "-c", "echo 3.14"])
    apply_defaults(job)
    validate(job)
    assert job.spec.template.spec.restart_policy == "Never"
    assert job.spec.template.spec.containers[0].command == ["sh", "-c", "echo 3.14"]


def test_job_columns() -> None:
    job = objects_pb2.Job(metadata=objects_pb2.ObjectMeta(name="pi", creation_timestamp="2026-03-01T11:59:00Z"))
    job.spec.completions = 5
    job.status.succeeded = 5
    job.status.start_time = "2026-03-01T11:59:00Z"
    job.status.completion_time = "2026-03-01T11:59:42Z"
    job.status.conditions.add(type="Complete", status="True")
    assert printers.headers(JOB) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert printers.row(JOB, job, NOW) == ["pi", "Complete", "5/5", "42s", "60s"]


def test_cronjob_and_daemonset_columns() -> None:
    cron = objects_pb2.CronJob(metadata=objects_pb2.ObjectMeta(name="tick", creation_timestamp="2026-03-01T11:00:00Z"),
                               spec=objects_pb2.CronJobSpec(schedule="*/5 * * * *"),
                               status=objects_pb2.CronJobStatus(last_schedule_time="2026-03-01T11:55:00Z"))
    cron.status.active.add(name="tick-1")
    assert printers.headers(CRON_JOB) == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    assert printers.row(CRON_JOB, cron, NOW) == ["tick", "*/5 * * * *", "<none>", "False", "1", "5m", "60m"]
    ds = objects_pb2.DaemonSet(metadata=objects_pb2.ObjectMeta(name="logs", creation_timestamp="2026-03-01T11:59:30Z"),
                               status=objects_pb2.DaemonSetStatus(desired_number_scheduled=3,
                                                                  current_number_scheduled=3, number_ready=2,
                                                                  updated_number_scheduled=3, number_available=2))
    ds.spec.template.spec.node_selector["role"] = "edge"
    assert printers.headers(DAEMON_SET) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                            "NODE SELECTOR", "AGE"]
    assert printers.row(DAEMON_SET, ds, NOW) == ["logs", "3", "3", "2", "3", "2", "role=edge", "30s"]
