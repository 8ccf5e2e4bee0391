"""raftctl get: list objects as kubectl does, as tables, YAML, JSON or names; -w follows changes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import click
from google.protobuf.message import Message

from raftorch.cli import printers
from raftorch.cli.common import Duration, complete_kind, namespace_option, ref, resolve_kind
from raftorch.cli.context import get_ctx, handle_errors, one_line
from raftorch.cli.output import Rows, as_yaml, table
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound
from raftorch.objects import CRON_JOB, DAEMON_SET, DEPLOYMENT, EVENT, JOB, POD, REPLICA_SET, SERVICE, Kind
from raftorch.objects.manifest import to_manifest
from raftorch.objects.meta import meta

# What kubectl's `get all` shows, of the kinds raftorch has.
ALL_KINDS: tuple[Kind, ...] = (POD, SERVICE, DAEMON_SET, DEPLOYMENT, REPLICA_SET, JOB, CRON_JOB)
OUTPUTS = ("wide", "yaml", "json", "name")


def parse_request(args: Sequence[str]) -> list[tuple[Kind, list[str]]]:
    """`pods`, `deploy,svc web`, `deployment/web pod/web-1`, `all` as (kind, names) in order."""
    if not args:
        raise Invalid("a kind is required: raftctl get pods|deployments|replicasets|daemonsets|jobs|cronjobs|"
                      "services|nodes|endpoints|events|namespaces|all [NAME...]")
    groups: dict[str, tuple[Kind, list[str]]] = {}
    if "/" in args[0]:
        for arg in args:
            kind_text, slash, name = arg.partition("/")
            if not slash or not kind_text or not name:
                raise Invalid(f'"{arg}": expected KIND/NAME; do not mix KIND/NAME with KIND NAME')
            kind = resolve_kind(kind_text)
            groups.setdefault(kind.name, (kind, []))[1].append(name)
        return list(groups.values())
    for word in args[0].split(","):
        for kind in ALL_KINDS if word.lower() == "all" else (resolve_kind(word),):
            groups.setdefault(kind.name, (kind, list(args[1:])))
    return list(groups.values())


def _fetch(client: Client, kind: Kind, names: list[str], namespace: str, selector: str, field_selector: str,
           errors: list[str]) -> list[Message]:
    ns = namespace if kind.namespaced else ""
    if not names:
        items, _ = client.objects.list(kind.plural, ns, label_selector=selector, field_selector=field_selector)
        if kind == EVENT:
            items.sort(key=lambda e: printers.event_time(e))  # type: ignore[arg-type]
        return items
    found: list[Message] = []
    for name in names:
        try:
            found.append(client.objects.get(kind.plural, name, ns))
        except NotFound as err:
            errors.append(one_line(err))
    return found


def _empty_message(namespace: str, kinds: Sequence[Kind]) -> str:
    if namespace and any(k.namespaced for k in kinds):
        return f"No resources found in {namespace} namespace."
    return "No resources found"


def _print_tables(results: Sequence[tuple[Kind, list[Message]]], wide: bool, all_namespaces: bool,
                  show_labels: bool, prefix_kind: bool) -> None:
    now = time.time()
    first = True
    for kind, items in results:
        if not items:
            continue
        if not first:
            click.echo()
        first = False
        with_ns = all_namespaces and kind.namespaced
        headers = printers.headers(kind, wide, with_ns) + (["LABELS"] if show_labels else [])
        rows = []
        for item in items:
            cells = printers.row(kind, item, now, wide, with_ns)
            if prefix_kind:
                cells[1 if with_ns else 0] = ref(kind, cells[1 if with_ns else 0])
            if show_labels:
                cells.append(printers.labels_text(meta(item).labels.items()))
            rows.append(cells)
        table(headers, rows)


def _document(items: Sequence[Message], single: bool) -> dict[str, Any]:
    if single and len(items) == 1:
        return to_manifest(items[0])
    return {"apiVersion": "v1", "kind": "List", "items": [to_manifest(i) for i in items]}


@click.command()
@click.argument("args", nargs=-1, shell_complete=complete_kind)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Objects of every namespace (adds a NAMESPACE column).")
@click.option("-l", "--selector", default="", help="Only objects with these labels: app=web,tier!=db.")
@click.option("--field-selector", default="", help="Only objects with these fields: status.phase=Running.")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=None,
              help="wide (more columns), yaml, json or name (KIND/NAME). Default: a table.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option("-w", "--watch", is_flag=True, help="After the list, print each change as it happens.")
@click.option("--request-timeout", type=Duration(), default=0.0,
              help="With -w: stop after this long (30s, 5m); 0 watches until interrupted.")
@handle_errors
def get(args: tuple[str, ...], namespace: str, all_namespaces: bool, selector: str, field_selector: str,
        output: str | None, show_labels: bool, watch: bool, request_timeout: float) -> None:
    """List objects: pods, deployments, replicasets, services, nodes, endpoints, events,
    namespaces, or all (pods, services, deployments, replicasets). Short names work:
    po, deploy, rs, svc, no, ep, ev, ns.

    \b
    Example:
      raftctl get pods
      raftctl get po -A -o wide
      raftctl get deploy,svc -l app=web
      raftctl get deployment web -o yaml > web.yaml
      raftctl get pods --field-selector spec.nodeName=node-a
      raftctl get pods -w
    """
    request = parse_request(args)
    namespace = "" if all_namespaces else namespace
    if all_namespaces and any(names for _, names in request):
        raise Invalid("an object cannot be got by name across all namespaces; drop -A and use -n")
    client = get_ctx().client()
    if watch:
        _watch(client, request, namespace, selector, field_selector, output, request_timeout)
        return
    errors: list[str] = []
    results = [(kind, _fetch(client, kind, names, namespace, selector, field_selector, errors))
               for kind, names in request]
    items = [i for _, found in results for i in found]
    named = any(names for _, names in request)
    if output == "name":
        for kind, found in results:
            for item in found:
                click.echo(ref(kind, meta(item).name))
    elif output in ("yaml", "json"):
        if items or not named:
            doc = _document(items, single=named and len(request) == 1 and len(request[0][1]) == 1)
            click.echo(as_yaml(doc) if output == "yaml" else json.dumps(doc, indent=2), nl=output == "json")
    elif items:
        _print_tables(results, output == "wide", all_namespaces, show_labels,
                      prefix_kind=len(request) > 1 or args[0].lower() == "all")
    if not items and not named:
        click.echo(_empty_message(namespace, [k for k, _ in request]), err=True)
    for line in errors:
        click.echo(f"error: {line}", err=True)
    if errors:
        raise SystemExit(1)


def _watch(client: Client, request: list[tuple[Kind, list[str]]], namespace: str, selector: str,
           field_selector: str, output: str | None, request_timeout: float) -> None:
    if len(request) != 1 or len(request[0][1]) > 1:
        raise Invalid("-w watches one kind, and at most one object by name")
    kind, names = request[0]
    ns = namespace if kind.namespaced else ""
    if names:
        by_name = f"metadata.name={names[0]}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
    items, revision = client.objects.list(kind.plural, ns, label_selector=selector, field_selector=field_selector)
    with_ns = not namespace and kind.namespaced
    wide = output == "wide"
    rows = Rows(printers.headers(kind, wide, with_ns))

    def show(batch: Sequence[Message]) -> None:
        if output == "name":
            for item in batch:
                click.echo(ref(kind, meta(item).name))
        elif output == "yaml":
            for item in batch:
                click.echo("---\n" + as_yaml(to_manifest(item)), nl=False)
        elif output == "json":
            for item in batch:
                click.echo(json.dumps(to_manifest(item), indent=2))
        else:
            now = time.time()
            rows.print([printers.row(kind, item, now, wide, with_ns) for item in batch])

    show(items)
    stream = client.objects.watch(kind.plural, ns, label_selector=selector, field_selector=field_selector,
                                  resource_version=revision)
    timer = threading.Timer(request_timeout, stream.close) if request_timeout > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for event in stream:
            show([event.object])
    finally:
        stream.close()
        if timer is not None:
            timer.cancel()
