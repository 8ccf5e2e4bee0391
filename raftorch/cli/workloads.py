"""raftctl create job / cronjob, wait, and taint: run-to-completion work and node taints, as kubectl does."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import Duration, modify, namespace_option, ref, resolve_kind, targets
from raftorch.cli.context import fail, get_ctx, handle_errors
from raftorch.cli.create import _check, container_name, create
from raftorch.errors import Invalid
from raftorch.objects import CRON_JOB, JOB, NODE, TAINT_EFFECTS, cron_schedule_error, format_time, job_from_cron_job
from raftorch.objects.meta import meta

WAIT_POLL = 0.25


def job_manifest(name: str, namespace: str, image: str, command: Sequence[str]) -> objects_pb2.Job:
    return objects_pb2.Job(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace),
        spec=objects_pb2.JobSpec(template=objects_pb2.PodTemplateSpec(spec=objects_pb2.PodSpec(
            restart_policy="Never",
            containers=[objects_pb2.Container(name=container_name(image) or name, image=image,
                                              command=list(command))]))))


@create.command(name="job")
@click.argument("name")
@click.argument("command", nargs=-1, metavar="[-- COMMAND [ARGS...]]")
@click.option("--image", default=None, help="The container image.")
@click.option("--from", "from_", default=None, metavar="cronjob/NAME",
              help="Make the job from a cron job's template (runs it now).")
@namespace_option
@handle_errors
def create_job(name: str, command: tuple[str, ...], image: str | None, from_: str | None, namespace: str) -> None:
    """Create a job NAME that runs IMAGE (with COMMAND) once, to completion.

    \b
    Example:
      raftctl create job hello --image=busybox -- echo hello
      raftctl create job backup-now --from=cronjob/backup
    """
    client = get_ctx().client()
    if from_ is not None:
        if image or command:
            raise Invalid("--from takes the cron job's template: do not give --image or a command")
        kind_text, slash, cron_name = from_.partition("/")
        if not slash or not cron_name or resolve_kind(kind_text) != CRON_JOB:
            raise Invalid(f'--from: expected cronjob/NAME, got "{from_}"')
        cron = client.objects.get(CRON_JOB.plural, cron_name, namespace)
        assert isinstance(cron, objects_pb2.CronJob)
        job = job_from_cron_job(cron, name)
        job.metadata.annotations["cronjob.kubernetes.io/instantiate"] = "manual"
    else:
        if not image:
            raise Invalid("--image is required (or --from=cronjob/NAME)")
        job = job_manifest(name, namespace, image, command)
    _check(job)
    client.objects.create(job)
    click.echo(f"{ref(JOB, name)} created")


@create.command(name="cronjob")
@click.argument("name")
@click.argument("command", nargs=-1, metavar="[-- COMMAND [ARGS...]]")
@click.option("--image", required=True, help="The container image.")
@click.option("--schedule", required=True, help='Five-field cron schedule, e.g. "*/5 * * * *".')
@click.option("--time-zone", default="", help="IANA time zone of the schedule (default UTC).")
@click.option("--restart", type=click.Choice(["OnFailure", "Never"]), default="OnFailure", show_default=True,
              help="The pods' restart policy.")
@namespace_option
@handle_errors
def create_cronjob(name: str, command: tuple[str, ...], image: str, schedule: str, time_zone: str, restart: str,
                   namespace: str) -> None:
    """Create a cron job NAME that runs IMAGE (with COMMAND) on a schedule.

    \b
    Example:
      raftctl create cronjob tick --image=busybox --schedule="*/1 * * * *" -- date
    """
    error = cron_schedule_error(schedule)
    if error is not None:
        raise Invalid(f"--schedule: {error}")
    template = job_manifest(name, namespace, image, command).spec
    template.template.spec.restart_policy = restart
    cron = objects_pb2.CronJob(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace),
        spec=objects_pb2.CronJobSpec(schedule=schedule, time_zone=time_zone,
                                     job_template=objects_pb2.JobTemplateSpec(spec=template)))
    _check(cron)
    get_ctx().client().objects.create(cron)
    click.echo(f"{ref(CRON_JOB, name)} created")


# -- wait ---------------------------------------------------------------------------------------


def parse_for(text: str) -> tuple[str, str]:
    """`condition=Complete` -> ("complete", "true"); `condition=Ready=false`; `delete` -> ("", "")."""
    if text == "delete":
        return "", ""
    kind, eq, rest = text.partition("=")
    if kind != "condition" or not eq or not rest:
        raise Invalid(f'--for: expected condition=NAME[=VALUE] or delete, got "{text}"')
    name, _, value = rest.partition("=")
    return name.lower(), (value or "true").lower()


def condition_met(obj: Any, condition: str, value: str) -> bool:
    conditions = getattr(getattr(obj, "status", None), "conditions", None)
    if conditions is None:
        raise Invalid(f"{meta(obj).name}: a {type(obj).__name__} has no conditions to wait for")
    return any(c.type.lower() == condition and c.status.lower() == value for c in conditions)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="KIND/NAME... | KIND NAME...")
@click.option("--for", "for_", required=True, help="condition=NAME[=VALUE] (VALUE defaults to true), or delete.")
@click.option("--timeout", type=Duration(), default=30.0, show_default=True, help="Give up after this long.")
@namespace_option
@handle_errors
def wait(args: tuple[str, ...], for_: str, timeout: float, namespace: str) -> None:
    """Wait until objects meet a condition (or are deleted); exit 1 on timeout.

    \b
    Example:
      raftctl wait --for=condition=complete job/pi --timeout=60s
      raftctl wait --for=condition=available deployment/web
      raftctl wait --for=delete pod/web-1
    """
    condition, value = parse_for(for_)
    wanted = targets(args)
    if not wanted:
        raise Invalid("a name is required: KIND/NAME or KIND NAME")
    client = get_ctx().client()
    deadline = time.monotonic() + timeout
    for kind, name in wanted:
        ns = namespace if kind.namespaced else ""
        while True:
            if condition:
                obj = client.objects.get(kind.plural, name, ns)
                if condition_met(obj, condition, value):
                    click.echo(f"{ref(kind, name)} condition met")
                    break
            else:
                items, _ = client.objects.list(kind.plural, ns, field_selector=f"metadata.name={name}")
                if not items:
                    click.echo(f"{ref(kind, name)} deleted")
                    break
            if time.monotonic() >= deadline:
                fail(f"timed out waiting for the condition on {kind.plural}/{name}", 1)
            time.sleep(min(WAIT_POLL, max(0.0, deadline - time.monotonic())))


# -- taint --------------------------------------------------------------------------------------


def parse_taint(text: str) -> tuple[objects_pb2.Taint, bool]:
    """`key=value:Effect`, `key:Effect` to add; `key-`, `key:Effect-` to remove (the bool)."""
    remove = text.endswith("-")
    body = text[:-1] if remove else text
    key_value, colon, effect = body.partition(":")
    key, _, value = key_value.partition("=")
    if not key:
        raise Invalid(f'taint "{text}": the key is missing; expected KEY[=VALUE]:EFFECT or KEY[:EFFECT]-')
    if colon and effect not in TAINT_EFFECTS:
        raise Invalid(f'taint "{text}": unknown taint effect "{effect}"; expected one of {", ".join(TAINT_EFFECTS)}')
    if not remove and not colon:
        raise Invalid(f'taint "{text}": an effect is required, e.g. {key_value}:NoSchedule')
    return objects_pb2.Taint(key=key, value=value, effect=effect), remove


def _node_args(args: Sequence[str]) -> tuple[str, list[str]]:
    if args and "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
        specs = list(args[1:])
    elif len(args) >= 2:
        kind_text, name, specs = args[0], args[1], list(args[2:])
    else:
        raise Invalid("expected: raftctl taint nodes NAME KEY[=VALUE]:EFFECT ...")
    if resolve_kind(kind_text) != NODE:
        raise Invalid(f'only nodes have taints, not "{kind_text}"')
    if not specs:
        raise Invalid("at least one taint is required: KEY[=VALUE]:EFFECT, or KEY- to remove")
    return name, specs


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="nodes NAME KEY[=VALUE]:EFFECT... | KEY[:EFFECT]-")
@click.option("--overwrite", is_flag=True, help="Replace the value of a taint that is already there.")
@handle_errors
def taint(args: tuple[str, ...], overwrite: bool) -> None:
    """Add taints to a node, or remove them (a trailing "-"). Effects: NoSchedule,
    PreferNoSchedule, NoExecute (which also evicts pods that do not tolerate it).

    \b
    Example:
      raftctl taint nodes node-a dedicated=db:NoSchedule
      raftctl taint nodes node-a maintenance=yes:NoExecute
      raftctl taint nodes node-a dedicated-
    """
    name, specs = _node_args(args)
    changes = [parse_taint(s) for s in specs]
    now = format_time(time.time())

    def change(node: Any) -> bool:
        taints: list[objects_pb2.Taint] = list(node.spec.taints)
        for wanted, remove in changes:
            same = [t for t in taints if t.key == wanted.key and (not wanted.effect or t.effect == wanted.effect)]
            if remove:
                if not same:
                    raise Invalid(f'taint "{wanted.key}{":" + wanted.effect if wanted.effect else ""}" not found')
                taints = [t for t in taints if t not in same]
                continue
            if same and all(t.value == wanted.value and t.effect == wanted.effect for t in same):
                continue  # already there: keep it, and its time added
            if same and not overwrite:
                raise Invalid(f'node "{name}" already has a taint with key "{wanted.key}" and effect '
                              f'"{wanted.effect}"; use --overwrite to change it')
            taints = [t for t in taints if t not in same]
            added = objects_pb2.Taint()
            added.CopyFrom(wanted)
            if added.effect == "NoExecute":
                added.time_added = now  # tolerationSeconds count from here
            taints.append(added)
        before = [t.SerializeToString(deterministic=True) for t in node.spec.taints]
        del node.spec.taints[:]
        node.spec.taints.extend(taints)
        return before != [t.SerializeToString(deterministic=True) for t in node.spec.taints]

    modify(get_ctx().client(), NODE, "", name, change)
    removed_only = all(remove for _, remove in changes)
    click.echo(f"node/{name} {'untainted' if removed_only else 'tainted'}")
