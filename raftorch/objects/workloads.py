"""Defaults and validation of Job, CronJob and DaemonSet (batch/v1 and apps/v1 shapes)."""

from __future__ import annotations

import zoneinfo

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import Problems, quote
from raftorch.objects._podspec import validate_pod_spec
from raftorch.objects.meta import parse_int_or_percent
from raftorch.objects.selectors import matches, selector_from_match_labels

__all__ = [
    "JOB_NAME_LABEL",
    "TEST_EVERY_SECONDS_ANNOTATION",
    "cron_schedule_error",
    "job_from_cron_job",
]

JOB_NAME_LABEL = "job-name"
MAX_JOB_NAME = 63
# A job's name is the cron job's, "-" and up to ten digits of time.
MAX_CRON_JOB_NAME = MAX_JOB_NAME - 11
DEFAULT_PARALLELISM = 1
DEFAULT_COMPLETIONS = 1
DEFAULT_BACKOFF_LIMIT = 6
DEFAULT_JOB_RESTART_POLICY = "Never"
JOB_RESTART_POLICIES = ("Never", "OnFailure")
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1
DAEMONSET_STRATEGIES = ("RollingUpdate", "OnDelete")
DEFAULT_DAEMONSET_MAX_UNAVAILABLE = "1"
DEFAULT_REVISION_HISTORY_LIMIT = 10
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Test-only: makes a CronJob fire every N seconds (counted from the epoch) instead of on its
# schedule, so tests need not wait for minute boundaries. Never use it in production.
TEST_EVERY_SECONDS_ANNOTATION = "cronjob.raftorch.io/test-every-seconds"


# -- defaults -------------------------------------------------------------------------------


def default_job_spec(spec: objects_pb2.JobSpec, job_name: str) -> None:
    """`job_name` "" (a CronJob's template): the selector is filled when a job is made from it."""
    from raftorch.objects.defaults import default_pod_spec

    if not spec.HasField("parallelism"):
        spec.parallelism = DEFAULT_PARALLELISM
    if not spec.HasField("completions"):
        spec.completions = DEFAULT_COMPLETIONS
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = DEFAULT_BACKOFF_LIMIT
    template = spec.template
    template.spec.restart_policy = template.spec.restart_policy or DEFAULT_JOB_RESTART_POLICY
    if job_name and not spec.selector.match_labels:
        spec.selector.match_labels[JOB_NAME_LABEL] = job_name
        template.metadata.labels.setdefault(JOB_NAME_LABEL, job_name)
    default_pod_spec(template.spec)


def default_cron_job(spec: objects_pb2.CronJobSpec) -> None:
    spec.concurrency_policy = spec.concurrency_policy or "Allow"
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = DEFAULT_SUCCESSFUL_HISTORY
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = DEFAULT_FAILED_HISTORY
    default_job_spec(spec.job_template.spec, "")


def default_daemon_set(spec: objects_pb2.DaemonSetSpec) -> None:
    from raftorch.objects.defaults import default_pod_spec

    strategy = spec.update_strategy
    strategy.type = strategy.type or "RollingUpdate"
    if strategy.type == "RollingUpdate":
        rolling = strategy.rolling_update
        rolling.max_unavailable = rolling.max_unavailable or DEFAULT_DAEMONSET_MAX_UNAVAILABLE
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    default_pod_spec(spec.template.spec)


# -- validation -----------------------------------------------------------------------------


def _selector_and_template(problems: Problems, path: str, selector: objects_pb2.LabelSelector,
                           template: objects_pb2.PodTemplateSpec, policies: tuple[str, ...], kind: str,
                           selector_required: bool = True) -> None:
    match_labels = selector.match_labels
    if selector_required and not match_labels:
        problems.add(f"{path}.selector.matchLabels", "required: an empty selector would select every pod")
    problems.labels(f"{path}.selector.matchLabels", match_labels)
    labels = template.metadata.labels
    problems.labels(f"{path}.template.metadata.labels", labels)
    if match_labels and not matches(selector_from_match_labels(match_labels), labels):
        wanted = ",".join(f"{key}={match_labels[key]}" for key in sorted(match_labels))
        got = ",".join(f"{key}={labels[key]}" for key in sorted(labels))
        problems.add(f"{path}.template.metadata.labels", f'must include {path}.selector.matchLabels "{wanted}", '
                                                         f'got "{got}"')
    validate_pod_spec(problems, f"{path}.template.spec", template.spec)
    policy = template.spec.restart_policy
    if policy and policy not in policies:
        problems.add(f"{path}.template.spec.restartPolicy",
                     f"must be {' or '.join(policies)} for a {kind}, got {quote(policy)}")


def validate_job_spec(problems: Problems, path: str, spec: objects_pb2.JobSpec, in_template: bool = False) -> None:
    for field, value in (("parallelism", spec.parallelism), ("completions", spec.completions),
                         ("backoffLimit", spec.backoff_limit),
                         ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished)):
        problems.not_negative(f"{path}.{field}", value)
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds <= 0:
        problems.add(f"{path}.activeDeadlineSeconds", f"must be positive, got {spec.active_deadline_seconds}")
    _selector_and_template(problems, path, spec.selector, spec.template, JOB_RESTART_POLICIES, "Job",
                           selector_required=not in_template)


def validate_job(problems: Problems, job: objects_pb2.Job) -> None:
    if len(job.metadata.name) > MAX_JOB_NAME:
        # The name is the value of the pods' job-name label.
        problems.add("metadata.name", f"must be at most {MAX_JOB_NAME} characters for a Job (it labels the "
                                      f"job's pods), got {len(job.metadata.name)}")
    validate_job_spec(problems, "spec", job.spec)


def cron_schedule_error(schedule: str) -> str | None:
    text = schedule.strip()
    if not text:
        return "required"
    if text.startswith("@"):
        if text not in CRON_MACROS:
            return f"unknown macro {quote(text)}; known: {', '.join(CRON_MACROS)}"
        return None
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "must not carry a time zone; use spec.timeZone"
    fields = text.split()
    if len(fields) != 5:
        return f"must have five fields (minute hour day-of-month month day-of-week), got {len(fields)}: {quote(text)}"
    # Imported here: processes that never validate a CronJob (the agent) do without its ~1 MB.
    from croniter import croniter

    if not croniter.is_valid(text):
        return f"invalid cron expression {quote(text)}"
    return None


# IANA zone names are short ("America/Argentina/ComodRivadavia" is among the longest); a longer
# one would only reach the file system as a path that is too long.
MAX_TIME_ZONE = 64


def time_zone_error(name: str) -> str | None:
    if len(name) > MAX_TIME_ZONE:
        return f"must be at most {MAX_TIME_ZONE} characters, an IANA name such as Europe/Paris; got {quote(name)}"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {quote(name)}; use an IANA name such as Europe/Paris"
    return None


def validate_cron_job(problems: Problems, cron: objects_pb2.CronJob) -> None:
    spec = cron.spec
    if len(cron.metadata.name) > MAX_CRON_JOB_NAME:
        problems.add("metadata.name", f"must be at most {MAX_CRON_JOB_NAME} characters for a CronJob (its jobs "
                                      f"are named after it and a time), got {len(cron.metadata.name)}")
    problems.check("spec.schedule", cron_schedule_error(spec.schedule))
    if spec.time_zone:
        problems.check("spec.timeZone", time_zone_error(spec.time_zone))
    problems.one_of("spec.concurrencyPolicy", spec.concurrency_policy, CONCURRENCY_POLICIES)
    for field, value in (("startingDeadlineSeconds", spec.starting_deadline_seconds),
                         ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
                         ("failedJobsHistoryLimit", spec.failed_jobs_history_limit)):
        problems.not_negative(f"spec.{field}", value)
    validate_job_spec(problems, "spec.jobTemplate.spec", spec.job_template.spec, in_template=True)
    every = cron.metadata.annotations.get(TEST_EVERY_SECONDS_ANNOTATION)
    if every is not None and (not every.isdigit() or int(every) < 1):
        problems.add(f"metadata.annotations[{TEST_EVERY_SECONDS_ANNOTATION}]",
                     f"must be a positive number of seconds, got {quote(every)}")


def validate_daemon_set(problems: Problems, ds: objects_pb2.DaemonSet) -> None:
    spec = ds.spec
    _selector_and_template(problems, "spec", spec.selector, spec.template, ("Always",), "DaemonSet")
    strategy = spec.update_strategy
    problems.one_of("spec.updateStrategy.type", strategy.type, DAEMONSET_STRATEGIES)
    unavailable = strategy.rolling_update.max_unavailable
    path = "spec.updateStrategy.rollingUpdate.maxUnavailable"
    if strategy.type == "OnDelete" and unavailable:
        problems.add("spec.updateStrategy.rollingUpdate", "must not be set when spec.updateStrategy.type is OnDelete")
    elif unavailable:
        try:
            number, percent = parse_int_or_percent(unavailable)
        except Invalid as exc:
            problems.add(path, exc.message)
        else:
            if number == 0:
                problems.add(path, "must not be 0: the update could never replace a pod")
            elif percent and number > 100:
                problems.add(path, f"must not be more than 100%, got {unavailable}")
    problems.not_negative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        problems.not_negative("spec.revisionHistoryLimit", spec.revision_history_limit)


def job_from_cron_job(cron: objects_pb2.CronJob, name: str) -> objects_pb2.Job:
    """A job made from a cron job's template, owned by the cron job (the controller and
    `raftctl create job --from=cronjob/NAME` both use it)."""
    template = cron.spec.job_template
    job = objects_pb2.Job(metadata=objects_pb2.ObjectMeta(
        name=name, namespace=cron.metadata.namespace, labels=dict(template.metadata.labels),
        annotations=dict(template.metadata.annotations)))
    if cron.metadata.uid:
        job.metadata.owner_references.add(kind="CronJob", name=cron.metadata.name, uid=cron.metadata.uid,
                                          controller=True)
    job.spec.CopyFrom(template.spec)
    default_job_spec(job.spec, name)
    return job
