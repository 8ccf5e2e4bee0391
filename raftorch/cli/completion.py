"""raftctl completion: the shell completion script, from click."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from raftorch.cli.context import handle_errors
from raftorch.errors import Invalid

SHELLS = ("bash", "zsh", "fish")
PROG = "raftctl"
COMPLETE_VAR = "_RAFTCTL_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@handle_errors
def completion(shell: str) -> None:
    """Print the completion script for a shell; load it to complete commands, kinds and flags.

    \b
    Example:
      source <(raftctl completion bash)
      raftctl completion zsh > "${fpath[1]}/_raftctl"
      raftctl completion fish > ~/.config/fish/completions/raftctl.fish
    """
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click knows the three shells offered
        raise Invalid(f"no completion for {shell}")
    root = click.get_current_context().find_root().command
    click.echo(cls(root, {}, PROG, COMPLETE_VAR).source())
