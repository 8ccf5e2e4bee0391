"""raftctl kv: the replicated key-value store."""

from __future__ import annotations

import dataclasses

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.output import as_json, show_bytes, table
from raftorch.client import KeyValue
from raftorch.errors import Compacted


@click.group()
def kv() -> None:
    """Read and write the masters' key-value store.

    \b
    Example:
      raftctl kv put greeting hello
      raftctl kv get greeting
      raftctl kv watch --prefix app/
    """


def _kv_json(item: KeyValue) -> dict[str, object]:
    data = dataclasses.asdict(item)
    data["value"] = show_bytes(item.value)
    return data


@kv.command()
@click.argument("key")
@click.argument("value")
@click.option("--lease", type=int, default=0, help="Attach the key to this lease id.")
@handle_errors
def put(key: str, value: str, lease: int) -> None:
    """Set KEY to VALUE.

    \b
    Example:
      raftctl kv put config/mode fast
    """
    result = get_ctx().client().put(key, value.encode(), lease=lease)
    click.echo(f"OK (revision {result.revision})")


@kv.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key that starts with KEY.")
@click.option("--rev", type=int, default=0, help="Read as of this revision.")
@click.option("--limit", type=int, default=0, help="At most this many keys.")
@click.option("--serializable", is_flag=True, help="Answer from the contacted master without a read barrier.")
@click.option("-o", "--output", type=click.Choice(["plain", "json", "table"]), default="plain")
@handle_errors
def get(key: str, prefix: bool, rev: int, limit: int, serializable: bool, output: str) -> None:
    """Show KEY's value (or every key under a prefix).

    \b
    Example:
      raftctl kv get config/ --prefix -o json
    """
    result = get_ctx().client().get(key, prefix=prefix, revision=rev, limit=limit, serializable=serializable)
    if output == "json":
        as_json({"revision": result.revision, "count": result.count, "more": result.more,
                 "kvs": [_kv_json(item) for item in result.kvs]})
        return
    if not result.kvs and not prefix:
        raise SystemExit(_not_found(key))
    if output == "table":
        table(["key", "value", "mod revision", "version"],
              [[i.key, show_bytes(i.value), i.mod_revision, i.version] for i in result.kvs])
        return
    for item in result.kvs:
        if prefix:
            click.echo(item.key)
        click.echo(show_bytes(item.value))


def _not_found(key: str) -> int:
    click.echo(f"error: key {key!r} not found", err=True)
    return 1


@kv.command()
@click.argument("revision", type=int, required=False)
@handle_errors
def compact(revision: int | None) -> None:
    """Drop history before REVISION (default: the current revision), freeing the space of
    deleted and overwritten values. Watches and reads of older revisions then fail.

    \b
    Example:
      raftctl kv compact
    """
    client = get_ctx().client()
    if revision is not None:
        client.compact(revision)
        click.echo(f"compacted to revision {revision}")
        return
    # Any read: its header carries the current revision.
    current = client.get("/", count_only=True).revision
    try:
        client.compact(current)
    except Compacted:
        # The store compacted up to here by itself (its history is bounded by bytes too).
        click.echo(f"history already compacted to revision {current}")
        return
    click.echo(f"compacted to revision {current}")


@kv.command(name="del")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key that starts with KEY.")
@handle_errors
def delete(key: str, prefix: bool) -> None:
    """Delete KEY (or every key under a prefix).

    \b
    Example:
      raftctl kv del config/ --prefix
    """
    result = get_ctx().client().delete(key, prefix=prefix)
    click.echo(f"deleted {result.deleted}")


@kv.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key that starts with KEY.")
@click.option("--rev", type=int, default=0, help="Start from this revision (older changes are replayed).")
@click.option("-o", "--output", type=click.Choice(["plain", "json"]), default="plain")
@handle_errors
def watch(key: str, prefix: bool, rev: int, output: str) -> None:
    """Print each change to KEY as it happens, until interrupted.

    \b
    Example:
      raftctl kv watch app/ --prefix --rev 1
    """
    stream = get_ctx().client().watch(key, prefix=prefix, start_revision=rev)
    try:
        for event in stream:
            if output == "json":
                click.echo(__import__("json").dumps({"type": event.type, "revision": event.revision,
                                                     **_kv_json(event.kv)}))
            else:
                click.echo(f"{event.type} {event.kv.key} {show_bytes(event.kv.value)} (revision {event.revision})")
    finally:
        stream.close()
