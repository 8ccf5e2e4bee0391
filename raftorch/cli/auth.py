"""`raftctl auth whoami|can-i` and `raftctl token create|list|delete`."""

from __future__ import annotations

import time

import click

from raftorch.cli.common import parse_duration
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.errors import Invalid


@click.group()
def auth() -> None:
    """Who you are to the cluster, and what you may do.

    \b
    Example:
      raftctl auth whoami
      raftctl --token ID.SECRET auth can-i delete pods -n team-a
    """


@auth.command()
@handle_errors
def whoami() -> None:
    """Show the identity the masters see for your credentials.

    \b
    Example:
      raftctl auth whoami
    """
    ident = get_ctx().client().auth.whoami()
    where = f", namespace {ident.namespace}" if ident.namespace else ""
    click.echo(f"{ident.kind} {ident.name} (role {ident.role}{where})")


@auth.command("can-i")
@click.argument("verb")
@click.argument("resource")
@click.option("-n", "--namespace", default="default", show_default=True)
@handle_errors
def can_i(verb: str, resource: str, namespace: str) -> None:
    """Whether you may VERB RESOURCE: prints yes or no; exits 0 for yes, 1 for no.

    \b
    Example:
      raftctl auth can-i create deployments -n team-a
      raftctl auth can-i create pods/portforward
    """
    resp = get_ctx().client().auth.can_i(verb, resource, namespace)
    if resp.allowed:
        click.echo("yes")
        return
    click.echo(f"no ({resp.reason})")
    raise SystemExit(1)


@click.group()
def token() -> None:
    """Bearer tokens: for users (with a role) and for joining nodes.

    \b
    Example:
      raftctl token create alice --role view
      raftctl token create --join --ttl 2h
      raftctl token list
    """


@token.command("create")
@click.argument("name", required=False, default="")
@click.option("--role", type=click.Choice(["admin", "edit", "view"]), help="A user token's role.")
@click.option("--namespace", default="", help="Limit a user token to this namespace.")
@click.option("--join", is_flag=True, help="A bootstrap token for agents joining the cluster.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 24h, 30m, 0 (never; user tokens only). "
              "Default: 24h for join tokens, never for user tokens.")
@click.option("--token", "value", default="", help="Use this token (ID.SECRET) instead of a new one.")
@handle_errors
def create(name: str, role: str | None, namespace: str, join: bool, ttl: str | None, value: str) -> None:
    """Create a token and print it (the only time it is shown: the masters keep its hash).

    \b
    Example:
      raftctl token create alice --role edit --namespace team-a
      raftctl token create --join --ttl 2h
    """
    seconds = parse_duration(ttl) if ttl is not None else 0.0
    if join:
        if role or namespace:
            raise Invalid("--join tokens have no --role or --namespace")
        resp = get_ctx().client().auth.create_token(name=name, join=True, ttl=seconds, token=value)
        click.echo(resp.token)
        click.echo(f"Join a node with:\n  raftorch-agent --name NODE --masters "
                   f"{','.join(get_ctx().config().endpoints)} --join-token {resp.token} --ca-hash {resp.ca_hash}",
                   err=True)
        return
    if not name or not role:
        raise Invalid("a user token needs a NAME and --role admin|edit|view (or use --join)")
    resp = get_ctx().client().auth.create_token(name=name, role=role, namespace=namespace, ttl=seconds,
                                                token=value)
    click.echo(resp.token)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "never"


@token.command("list")
@handle_errors
def list_tokens() -> None:
    """List tokens (ids and what they grant; never their secrets).

    \b
    Example:
      raftctl token list
    """
    rows = [("ID", "KIND", "NAME", "ROLE", "NAMESPACE", "EXPIRES", "STATE")]
    now = time.time()
    for t in get_ctx().client().auth.list_tokens():
        state = "revoked" if t.revoked else ("expired" if t.expires and t.expires <= now else "valid")
        rows.append((t.id, t.kind, t.name, t.role, t.namespace or "*", _when(t.expires), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@token.command("delete")
@click.argument("token_id")
@handle_errors
def delete(token_id: str) -> None:
    """Revoke a token by its id (the part before the dot).

    \b
    Example:
      raftctl token delete abcd1234
    """
    info = get_ctx().client().auth.delete_token(token_id.partition(".")[0])
    click.echo(f"token/{info.id} revoked")
