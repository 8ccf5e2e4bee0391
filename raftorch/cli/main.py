"""raftctl: the command-line client of a raftorch cluster."""

from __future__ import annotations

from pathlib import Path

import click

from raftorch import logs
from raftorch.cli.cluster import cluster
from raftorch.cli.context import CliContext, default_config_path
from raftorch.cli.kv import kv


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", envvar=None, help="Masters to talk to: HOST:PORT,... "
              "(else RAFTORCH_ENDPOINTS, else the config file).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Client config file (default: ~/.config/raftorch/config.yaml).")
@click.version_option(package_name="raftorch")
@click.pass_context
def cli(ctx: click.Context, endpoints: str | None, config_path: Path | None) -> None:
    """raftctl controls a raftorch cluster.

    \b
    Example:
      raftctl --endpoints 127.0.0.1:2379 cluster status
    """
    logs.configure(service=False, level="warning")
    ctx.obj = CliContext(endpoints, config_path or default_config_path())


cli.add_command(kv)
cli.add_command(cluster)


def main() -> None:
    cli(prog_name="raftctl")
