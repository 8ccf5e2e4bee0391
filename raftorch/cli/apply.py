"""raftctl apply and delete: objects from manifests, or named ones."""

from __future__ import annotations

from collections.abc import Sequence

import click
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import (
    complete_kind,
    namespace_option,
    namespace_was_given,
    plural_name,
    ref,
    resolve_kind,
    targets,
    type_name,
)
from raftorch.cli.context import get_ctx, handle_errors, one_line
from raftorch.cli.files import Manifest, load
from raftorch.client import Client
from raftorch.errors import Conflict, Invalid, NotFound
from raftorch.objects import Kind, apply_defaults, kind_of_message, validate
from raftorch.objects.meta import meta

_APPLY_ATTEMPTS = 5


def _clone(msg: Message) -> Message:
    copy = type(msg)()
    copy.CopyFrom(msg)
    return copy


def place(manifests: Sequence[Manifest], namespace: str, explicit: bool) -> None:
    """Put namespaced objects without a namespace into `namespace`; refuse a manifest whose
    namespace contradicts an explicit -n, as kubectl does."""
    for m in manifests:
        if not m.kind.namespaced:
            continue
        md = meta(m.object)
        if not md.namespace:
            md.namespace = namespace
        elif explicit and md.namespace != namespace:
            raise Invalid(f'{m.source}: the namespace of the object "{md.namespace}" does not match the '
                          f'namespace "{namespace}" given with -n; pass -n {md.namespace} or drop -n')


def check(manifests: Sequence[Manifest]) -> None:
    """Validate every object as the masters will, before anything is written."""
    for m in manifests:
        candidate = _clone(m.object)
        apply_defaults(candidate)
        try:
            validate(candidate)
        except Invalid as err:
            raise Invalid(f"{m.source}: {m.kind.name} \"{m.name}\": {err.message}") from None


def desired_from(current: Message, wanted: Message) -> Message:
    """The stored object with the manifest's labels, annotations and spec; what the masters
    manage (uid, generation, status, owners, a pod's node, a service's allocations) stays."""
    new = _clone(current)
    new_meta, wanted_meta = meta(new), meta(wanted)
    new_meta.labels.clear()
    new_meta.labels.update(wanted_meta.labels)
    new_meta.annotations.clear()
    new_meta.annotations.update(wanted_meta.annotations)
    if hasattr(new, "spec"):
        new.spec.CopyFrom(wanted.spec)  # type: ignore[attr-defined]
    if isinstance(new, objects_pb2.Pod) and isinstance(current, objects_pb2.Pod) and not new.spec.node_name:
        new.spec.node_name = current.spec.node_name
    if isinstance(new, objects_pb2.Service) and isinstance(current, objects_pb2.Service):
        _keep_allocations(new.spec, current.spec)
    apply_defaults(new)
    return new


def _keep_allocations(spec: objects_pb2.ServiceSpec, current: objects_pb2.ServiceSpec) -> None:
    spec.cluster_ip = spec.cluster_ip or current.cluster_ip
    if spec.type != "NodePort" or current.type != "NodePort":
        return
    allocated = {(p.port, p.protocol or "TCP"): p.node_port for p in current.ports}
    by_name = {p.name: p.node_port for p in current.ports if p.name}
    for port in spec.ports:
        if not port.node_port:
            port.node_port = allocated.get((port.port, port.protocol or "TCP")) or by_name.get(port.name, 0)


def apply_one(client: Client, wanted: Message) -> str:
    """created, configured or unchanged."""
    kind = kind_of_message(wanted)
    md = meta(wanted)
    namespace = md.namespace if kind.namespaced else ""
    for attempt in range(_APPLY_ATTEMPTS):
        try:
            current = client.objects.get(kind.plural, md.name, namespace)
        except NotFound:
            client.objects.create(wanted)
            return "created"
        desired = desired_from(current, wanted)
        if desired == current:
            return "unchanged"
        try:
            client.objects.update(desired)
            return "configured"
        except Conflict:
            # Someone (a controller writing status, most likely) wrote in between: read again.
            if attempt == _APPLY_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True,
              help="A manifest file, a directory of them, or - for stdin. Repeatable.")
@click.option("-R", "--recursive", is_flag=True, help="Also read the directories under a -f directory.")
@namespace_option
@handle_errors
def apply(paths: tuple[str, ...], recursive: bool, namespace: str) -> None:
    """Create or update objects from YAML or JSON manifests, as kubectl apply.

    Each object is created if absent, else updated to the manifest's labels, annotations
    and spec (what the masters manage is kept); an object that already matches is left
    alone and reported "unchanged". Every document is read and validated first: a bad one
    anywhere changes nothing. Manifests written for Kubernetes work as they are.

    \b
    Example:
      raftctl apply -f web.yaml
      raftctl apply -f manifests/ -n staging
      raftctl get deployment web -o yaml | raftctl apply -f -
    """
    manifests = load(paths, recursive)
    place(manifests, namespace, namespace_was_given())
    check(manifests)
    client = get_ctx().client()
    for m in manifests:
        result = apply_one(client, m.object)
        click.echo(f"{ref(m.kind, m.name)} {result}")


def _delete_one(client: Client, kind: Kind, name: str, namespace: str, cascade: str, ignore_missing: bool) -> bool:
    try:
        client.objects.delete(kind.plural, name, namespace if kind.namespaced else "",
                              propagation="Orphan" if cascade == "orphan" else "Background")
    except NotFound:
        if ignore_missing:
            return True
        click.echo(f'error: {plural_name(kind)} "{name}" not found', err=True)
        return False
    click.echo(f'{type_name(kind)} "{name}" deleted')
    return True


@click.command()
@click.argument("args", nargs=-1, shell_complete=complete_kind)
@click.option("-f", "--filename", "paths", multiple=True, help="Delete the objects in these manifests.")
@click.option("-R", "--recursive", is_flag=True, help="Also read the directories under a -f directory.")
@click.option("-l", "--selector", default="", help="Delete the objects of KIND with these labels: app=web.")
@click.option("--all", "all_", is_flag=True, help="Delete every object of KIND in the namespace.")
@click.option("--ignore-not-found", is_flag=True, help="An object that does not exist is no error.")
@click.option("--cascade", type=click.Choice(["background", "orphan"]), default="background", show_default=True,
              help="Delete what the objects own too (background) or leave it (orphan).")
@namespace_option
@handle_errors
def delete(args: tuple[str, ...], paths: tuple[str, ...], recursive: bool, selector: str, all_: bool,
           ignore_not_found: bool, cascade: str, namespace: str) -> None:
    """Delete objects by name, by label selector, or as listed in manifests.

    \b
    Example:
      raftctl delete deployment web
      raftctl delete pod/web-6d4b9c-x7k2p pod/web-6d4b9c-q9w8e
      raftctl delete pods -l app=web
      raftctl delete -f web.yaml
    """
    client = get_ctx().client()
    wanted: list[tuple[Kind, str, str]] = []
    if paths:
        if args or selector or all_:
            raise Invalid("give either -f or KIND NAME..., not both")
        manifests = load(paths, recursive)
        place(manifests, namespace, namespace_was_given())
        wanted = [(m.kind, m.name, meta(m.object).namespace) for m in manifests]
    else:
        pairs = targets(args)
        if pairs and (selector or all_):
            raise Invalid("give names or a selector (-l / --all), not both")
        if not pairs:
            kind = resolve_kind(args[0])
            if not selector and not all_:
                raise Invalid(f"no name given: raftctl delete {args[0]} NAME, or -l SELECTOR, or --all")
            items, _ = client.objects.list(kind.plural, namespace if kind.namespaced else "", label_selector=selector)
            if not items:
                click.echo("No resources found", err=True)
                return
            wanted = [(kind, meta(i).name, meta(i).namespace) for i in items]
        else:
            wanted = [(kind, name, namespace) for kind, name in pairs]
    ok = True
    for kind, name, ns in wanted:
        try:
            ok = _delete_one(client, kind, name, ns, cascade, ignore_not_found) and ok
        except Conflict as err:
            click.echo(f"error: {one_line(err)}", err=True)
            ok = False
    if not ok:
        raise SystemExit(1)
