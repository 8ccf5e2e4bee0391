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
    """Show every master: role, term, commit index, health.

    \b
    Example:
      raftctl cluster status -o json
    """
    st = get_ctx().client().cluster_status()
    if output == "json":
        as_json({"leader": st.leader, "members": [dataclasses.asdict(m) for m in st.members]})
        return
    table(["member", "address", "role", "term", "commit index", "applied", "healthy"],
          [[m.name, m.client_addr or m.peer_addr, m.role, m.term, m.commit_index, m.applied_index,
            "yes" if m.healthy else f"no ({m.error})" if m.error else "no"] for m in st.members])
