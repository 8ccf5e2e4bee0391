"""raftctl cluster: the masters and their Raft state."""

from __future__ import annotations

import dataclasses

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.output import as_json, table


@click.group()
def cluster() -> None:
    """Inspect the cluster's masters."""


@cluster.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@handle_errors
def status(output: str) -> None:
    """Show every master: role, term, commit index, health, store size and alarms.

    STORE is the bytes the store holds over its quota. A NOSPACE alarm means the store refused
    a write for lack of space: delete keys, then `raftctl kv compact`; the alarm clears once
    the store is back under 90% of its quota.

    \b
    Example:
      raftctl cluster status -o json
    """
    st = get_ctx().client().cluster_status()
    if output == "json":
        as_json({"leader": st.leader, "members": [dataclasses.asdict(m) for m in st.members]})
        return
    table(["member", "address", "role", "term", "commit index", "applied", "store", "alarms", "healthy"],
          [[m.name, m.client_addr or m.peer_addr, m.role, m.term, m.commit_index, m.applied_index,
            f"{_size(m.store_bytes)}/{_size(m.quota_bytes)}" if m.quota_bytes else "-",
            ",".join(m.alarms) or "-",
            "yes" if m.healthy else f"no ({m.error})" if m.error else "no"] for m in st.members])


def _size(n: int) -> str:
    """Bytes for people: 1536 -> 1.5KiB, 536870912 -> 512MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.4g}{unit}"
        size /= 1024
    return f"{size:.4g}GiB"
