"""raftctl: the command-line client of a raftorch cluster."""

from __future__ import annotations

from pathlib import Path

import click

from raftorch import logs
from raftorch.cli.apply import apply, delete
from raftorch.cli.auth import auth, token
from raftorch.cli.cluster import cluster
from raftorch.cli.completion import completion
from raftorch.cli.context import CliContext, default_config_path
from raftorch.cli.create import create, expose
from raftorch.cli.describe import describe
from raftorch.cli.drill import drill
from raftorch.cli.get import get
from raftorch.cli.kv import kv
from raftorch.cli.localcluster import down, up
from raftorch.cli.nodes import cordon, drain, uncordon
from raftorch.cli.pki import pki
from raftorch.cli.podlogs import logs as logs_command
from raftorch.cli.portforward import port_forward
from raftorch.cli.rollout import rollout, scale, set_group
from raftorch.cli.workloads import taint, wait


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoints", envvar=None, help="Masters to talk to: HOST:PORT,... "
              "(else RAFTORCH_ENDPOINTS, else the config file).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Client config file (default: ~/.config/raftorch/config.yaml).")
@click.option("--token", default=None, help="Bearer token to use instead of the config's credentials "
              "(else RAFTORCH_TOKEN).")
@click.version_option(package_name="raftorch")
@click.pass_context
def cli(ctx: click.Context, endpoints: str | None, config_path: Path | None, token: str | None) -> None:
    """raftctl controls a raftorch cluster, with kubectl's verbs and habits.

    \b
    Example:
      raftctl --endpoints 127.0.0.1:2379 cluster status
      raftctl create deployment web --image=nginx:1.25 --replicas=3
      raftctl get pods -o wide
      raftctl apply -f web.yaml
    """
    logs.configure(service=False, level="warning")
    ctx.obj = CliContext(endpoints, config_path or default_config_path(), token)
    ctx.call_on_close(ctx.obj.close)


for _command in (get, describe, create, apply, delete, expose, scale, set_group, rollout, cordon, uncordon, drain,
                 logs_command, port_forward, completion, up, down, drill, kv, cluster, auth, token, pki,
                 wait, taint):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="raftctl")
