"""raftctl up / down: a local cluster on this host (the primer's `minikube start`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from raftorch.cli.context import default_config_path, get_ctx, handle_errors
from raftorch.local.cluster import LocalCluster, default_data_dir, docker_reachable


def _progress(message: str) -> None:
    click.echo(f"  * {message}", err=True)


@click.command()
@click.option("--masters", type=click.IntRange(1, 7), default=3, show_default=True, help="Number of masters.")
@click.option("--agents", type=click.IntRange(0, 20), default=2, show_default=True, help="Number of nodes.")
@click.option("--runtime", type=click.Choice(["docker", "process", "fake"]), default=None,
              help="How pods run (default: docker when reachable, else process).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the cluster keeps its state (default ~/.local/share/raftorch/local).")
@handle_errors
def up(masters: int, agents: int, runtime: str | None, data_dir: Path | None) -> None:
    """Start a local cluster: masters and agents as background processes.

    Waits until the cluster is ready, prints the endpoints and writes the client config so
    the next raftctl commands just work. State survives `raftctl down` and `up`.

    \b
    Example:
      raftctl up
      raftctl get pods -A
    """
    if runtime is None:
        if docker_reachable():
            runtime = "docker"
        else:
            runtime = "process"
            click.echo("warning: no Docker engine answers; pods will run as host processes "
                       "(--runtime process), and namespace default is labelled "
                       "raftorch.io/pod-security=privileged to allow them", err=True)
    cluster = LocalCluster(data_dir or default_data_dir())
    click.echo(f"Starting a local raftorch cluster in {cluster.data_dir}", err=True)
    state = cluster.up(masters, agents, runtime, _progress)
    config_path = get_ctx().config_path if get_ctx().config_path else default_config_path()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    admin = cluster.admin_files()
    # Like a kubeconfig: where the masters are, the CA to trust, and the admin's certificate.
    config_path.write_text(yaml.safe_dump({"endpoints": state.endpoints, "ca-file": str(admin.ca_file),
                                           "cert-file": str(admin.cert_file), "key-file": str(admin.key_file)},
                                          sort_keys=False))
    config_path.chmod(0o600)
    click.echo(f"Cluster ready: {len(state.masters)} masters, {len(state.agents)} nodes ({runtime} runtime).")
    click.echo(f"Endpoints: {','.join(state.endpoints)}")
    click.echo(f"Client config written to {config_path}")


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the cluster's state.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The cluster's state directory (default ~/.local/share/raftorch/local).")
@handle_errors
def down(purge: bool, data_dir: Path | None) -> None:
    """Stop the local cluster (its state stays unless --purge).

    \b
    Example:
      raftctl down --purge
    """
    cluster = LocalCluster(data_dir or default_data_dir())
    if cluster.down(purge, _progress):
        click.echo("Cluster stopped." + (" State deleted." if purge else ""))
    else:
        click.echo("No local cluster here." + (" State deleted." if purge else ""), err=not purge)
        if not purge:
            sys.exit(0)
