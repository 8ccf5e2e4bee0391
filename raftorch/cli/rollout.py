"""raftctl rollout (status, history, undo, pause, resume), scale and set image."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import click
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import Duration, modify, namespace_option, one_target, ref
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.describe import REVISION_ANNOTATION, Doc, _template
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound, RaftorchError
from raftorch.objects import DEPLOYMENT, POD, REPLICA_SET, controller_of, get_condition

HASH_LABEL = "pod-template-hash"


class RolloutFailed(RaftorchError):
    """The rollout will not finish by itself."""


def rollout_state(d: objects_pb2.Deployment) -> tuple[str, bool]:
    """kubectl's progress line for a deployment, and whether the rollout is done.
    Raises RolloutFailed when the deployment says it stopped progressing."""
    name = d.metadata.name
    if d.metadata.generation > d.status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    progressing = get_condition(d.status.conditions, "Progressing")
    if progressing is not None and progressing.status == "False":
        if progressing.reason == "ProgressDeadlineExceeded":
            raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
        raise RolloutFailed(f'deployment "{name}" rollout failed: {progressing.reason}: {progressing.message}')
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    st = d.status
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if st.updated_replicas < desired:
        return f"{waiting}{st.updated_replicas} out of {desired} new replicas have been updated...", False
    if st.replicas > st.updated_replicas:
        return f"{waiting}{st.replicas - st.updated_replicas} old replicas are pending termination...", False
    if st.available_replicas < st.updated_replicas:
        return f"{waiting}{st.available_replicas} of {st.updated_replicas} updated replicas are available...", False
    return f'deployment "{name}" successfully rolled out', True


def _deployment(client: Client, namespace: str, name: str) -> objects_pb2.Deployment:
    d = client.objects.get(DEPLOYMENT.plural, name, namespace)
    assert isinstance(d, objects_pb2.Deployment)
    return d


def _wait(client: Client, namespace: str, name: str, timeout: float) -> None:
    d = _deployment(client, namespace, name)
    last, done = rollout_state(d)
    click.echo(last)
    if done:
        return
    stream = client.objects.watch(DEPLOYMENT.plural, namespace, field_selector=f"metadata.name={name}",
                                  resource_version=d.metadata.resource_version)
    timer = threading.Timer(timeout, stream.close) if timeout > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for event in stream:
            if event.type == "DELETED":
                raise NotFound(f'deployment "{name}" was deleted during the rollout')
            assert isinstance(event.object, objects_pb2.Deployment)
            line, done = rollout_state(event.object)
            if line != last:
                click.echo(line)
                last = line
            if done:
                return
    finally:
        stream.close()
        if timer is not None:
            timer.cancel()
    raise RolloutFailed(f"timed out waiting for the rollout of deployment \"{name}\" after {timeout:g}s")


def history(client: Client, d: objects_pb2.Deployment) -> list[objects_pb2.ReplicaSet]:
    """The deployment's replica sets by revision, oldest first."""
    items, _ = client.objects.list(REPLICA_SET.plural, d.metadata.namespace)
    owned = [rs for rs in items if isinstance(rs, objects_pb2.ReplicaSet)
             and (owner := controller_of(rs.metadata)) is not None and owner.uid == d.metadata.uid]
    return sorted(owned, key=revision)


def revision(rs: objects_pb2.ReplicaSet) -> int:
    value = rs.metadata.annotations.get(REVISION_ANNOTATION, "")
    return int(value) if value.isdigit() else 0


def template_of(rs: objects_pb2.ReplicaSet) -> objects_pb2.PodTemplateSpec:
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(rs.spec.template)
    if HASH_LABEL in template.metadata.labels:
        del template.metadata.labels[HASH_LABEL]
    return template


@click.group()
def rollout() -> None:
    """Follow, list and undo the rollouts of a deployment.

    \b
    Example:
      raftctl rollout status deployment/web
      raftctl rollout history deployment/web
      raftctl rollout undo deployment/web --to-revision=2
    """


@rollout.command()
@click.argument("target", metavar="deployment/NAME")
@click.argument("name", required=False)
@click.option("--timeout", type=Duration(), default=0.0, help="Give up after this long (30s, 5m); 0 waits forever.")
@click.option("-w", "--watch", type=bool, default=True, show_default=True,
              help="Wait for the rollout to finish; false prints the state once.")
@namespace_option
@handle_errors
def status(target: str, name: str | None, timeout: float, watch: bool, namespace: str) -> None:
    """Wait until the deployment's rollout has finished (exit 0) or failed (exit 1), printing
    its progress.

    \b
    Example:
      raftctl rollout status deployment/web --timeout=2m
    """
    _, object_name = one_target(target, (DEPLOYMENT,), name)
    client = get_ctx().client()
    if not watch:
        click.echo(rollout_state(_deployment(client, namespace, object_name))[0])
        return
    _wait(client, namespace, object_name, timeout)


@rollout.command(name="history")
@click.argument("target", metavar="deployment/NAME")
@click.argument("name", required=False)
@click.option("--revision", "wanted", type=click.IntRange(min=1), default=None, help="Show this revision's template.")
@namespace_option
@handle_errors
def history_command(target: str, name: str | None, wanted: int | None, namespace: str) -> None:
    """List the deployment's revisions (from its replica sets), or show one.

    \b
    Example:
      raftctl rollout history deployment/web
      raftctl rollout history deployment/web --revision=2
    """
    _, object_name = one_target(target, (DEPLOYMENT,), name)
    client = get_ctx().client()
    rss = history(client, _deployment(client, namespace, object_name))
    if wanted is not None:
        match = next((rs for rs in rss if revision(rs) == wanted), None)
        if match is None:
            raise NotFound(f"unable to find the specified revision {wanted} of deployment \"{object_name}\"")
        click.echo(f"{ref(DEPLOYMENT, object_name)} with revision #{wanted}")
        doc = Doc()
        _template(doc, template_of(match))
        click.echo(doc.render(), nl=False)
        return
    click.echo(ref(DEPLOYMENT, object_name))
    rows = [[str(revision(rs)), rs.metadata.annotations.get("kubernetes.io/change-cause", "<none>")] for rs in rss]
    widths = [max(len("REVISION"), *(len(r[0]) for r in rows))]
    click.echo(f"{'REVISION'.ljust(widths[0])}  CHANGE-CAUSE")
    for r in rows:
        click.echo(f"{r[0].ljust(widths[0])}  {r[1]}")


@rollout.command()
@click.argument("target", metavar="deployment/NAME")
@click.argument("name", required=False)
@click.option("--to-revision", type=click.IntRange(min=0), default=0, show_default=True,
              help="The revision to go back to; 0 is the previous one.")
@namespace_option
@handle_errors
def undo(target: str, name: str | None, to_revision: int, namespace: str) -> None:
    """Roll the deployment back to an earlier revision's pod template.

    \b
    Example:
      raftctl rollout undo deployment/web
      raftctl rollout undo deployment/web --to-revision=1
    """
    _, object_name = one_target(target, (DEPLOYMENT,), name)
    client = get_ctx().client()
    d = _deployment(client, namespace, object_name)
    rss = history(client, d)
    if to_revision:
        match = next((rs for rs in rss if revision(rs) == to_revision), None)
        if match is None:
            raise NotFound(f"unable to find the specified revision {to_revision} of deployment \"{object_name}\"")
    else:
        match = next((rs for rs in reversed(rss) if template_of(rs) != d.spec.template), None)
        if match is None:
            raise NotFound(f'no previous revision of deployment "{object_name}" to roll back to')
    if template_of(match) == d.spec.template:
        click.echo(f"{ref(DEPLOYMENT, object_name)} skipped rollback "
                   f"(current template already matches revision {revision(match)})")
        return

    def set_rollback(obj: Any) -> bool:
        obj.spec.rollback_to = to_revision
        return True

    modify(client, DEPLOYMENT, namespace, object_name, set_rollback)
    click.echo(f"{ref(DEPLOYMENT, object_name)} rolled back")


def _set_paused(target: str, name: str | None, namespace: str, paused: bool) -> None:
    _, object_name = one_target(target, (DEPLOYMENT,), name)

    def change(obj: Any) -> bool:
        if obj.spec.paused == paused:
            return False
        obj.spec.paused = paused
        return True

    _, written = modify(get_ctx().client(), DEPLOYMENT, namespace, object_name, change)
    verb = "paused" if paused else "resumed"
    click.echo(f"{ref(DEPLOYMENT, object_name)} {verb if written else 'already ' + verb}")


@rollout.command()
@click.argument("target", metavar="deployment/NAME")
@click.argument("name", required=False)
@namespace_option
@handle_errors
def pause(target: str, name: str | None, namespace: str) -> None:
    """Pause the deployment: template changes roll out only once it is resumed.

    \b
    Example:
      raftctl rollout pause deployment/web
    """
    _set_paused(target, name, namespace, True)


@rollout.command()
@click.argument("target", metavar="deployment/NAME")
@click.argument("name", required=False)
@namespace_option
@handle_errors
def resume(target: str, name: str | None, namespace: str) -> None:
    """Resume a paused deployment.

    \b
    Example:
      raftctl rollout resume deployment/web
    """
    _set_paused(target, name, namespace, False)


@click.command()
@click.argument("target", metavar="KIND NAME | KIND/NAME")
@click.argument("name", required=False)
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="The new number of replicas.")
@namespace_option
@handle_errors
def scale(target: str, name: str | None, replicas: int, namespace: str) -> None:
    """Set the number of replicas of a deployment or replica set.

    \b
    Example:
      raftctl scale deployment web --replicas=5
      raftctl scale deployment/web --replicas=0
    """
    kind, object_name = one_target(target, (DEPLOYMENT, REPLICA_SET), name)

    def change(obj: Any) -> bool:
        obj.spec.replicas = replicas
        return True

    modify(get_ctx().client(), kind, namespace, object_name, change)
    click.echo(f"{ref(kind, object_name)} scaled")


def _containers(obj: Message) -> Sequence[objects_pb2.Container]:
    if isinstance(obj, objects_pb2.Pod):
        return obj.spec.containers
    if isinstance(obj, objects_pb2.Deployment | objects_pb2.ReplicaSet):
        return obj.spec.template.spec.containers
    raise Invalid(f"{obj.DESCRIPTOR.name} has no containers")  # pragma: no cover


def split_image_args(args: Sequence[str]) -> tuple[str, str | None, dict[str, str]]:
    """(target, name, {container: image}) of `deployment/web web=nginx:2` or `deployment web web=nginx:2`."""
    objects = [a for a in args if "=" not in a]
    pairs = [a for a in args if "=" in a]
    if not objects or len(objects) > 2 or not pairs:
        raise Invalid("expected KIND/NAME CONTAINER=IMAGE..., e.g. deployment/web web=nginx:1.26")
    images: dict[str, str] = {}
    for pair in pairs:
        container, _, image = pair.partition("=")
        if not container or not image:
            raise Invalid(f'"{pair}": expected CONTAINER=IMAGE')
        images[container] = image
    return objects[0], objects[1] if len(objects) == 2 else None, images


@click.group(name="set")
def set_group() -> None:
    """Change one aspect of an object.

    \b
    Example:
      raftctl set image deployment/web web=nginx:1.26
    """


@set_group.command()
@click.argument("args", nargs=-1, required=True, metavar="KIND/NAME CONTAINER=IMAGE...")
@namespace_option
@handle_errors
def image(args: tuple[str, ...], namespace: str) -> None:
    """Change the image of containers; the container "*" means all of them. A deployment rolls
    out the change.

    \b
    Example:
      raftctl set image deployment/web web=nginx:1.26
      raftctl set image deployment web '*=nginx:1.26'
    """
    target, name, images = split_image_args(args)
    kind, object_name = one_target(target, (DEPLOYMENT, REPLICA_SET, POD), name)

    def change(obj: Any) -> bool:
        containers = _containers(obj)
        names = {c.name for c in containers}
        for container in images:
            if container != "*" and container not in names:
                raise NotFound(f'unable to find container named "{container}" in {ref(kind, object_name)} '
                               f"(containers: {', '.join(sorted(names))})")
        changed = False
        for c in containers:
            new = images.get(c.name) or images.get("*")
            if new and c.image != new:
                c.image = new
                changed = True
        return changed

    _, written = modify(get_ctx().client(), kind, namespace, object_name, change)
    click.echo(f"{ref(kind, object_name)} image {'updated' if written else 'unchanged'}")
