"""`raftorch-master`: run one master."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from raftorch import config as cfgload
from raftorch import logs
from raftorch.errors import RaftorchError
from raftorch.master import gcstats
from raftorch.master.config import MasterConfig
from raftorch.master.server import Master

EXAMPLE = """
Example (three masters on one host):

\b
  raftorch-master --name m1 --client-addr 127.0.0.1:2379 --peer-addr 127.0.0.1:2380 \\
      --peers m2=127.0.0.1:2382,m3=127.0.0.1:2384 --data-dir /tmp/m1 --secret-file secret
"""


@click.command(epilog=EXAMPLE, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML file with these settings.")
@click.option("--name", help="This master's name, unique in the cluster.")
@click.option("--client-addr", help="HOST:PORT for the gRPC API.")
@click.option("--peer-addr", help="HOST:PORT for Raft traffic from the other masters.")
@click.option("--http-addr", help="HOST:PORT for /metrics and the dashboard (default 127.0.0.1:2381; '' for none).")
@click.option("--peers", help="The other masters: NAME=HOST:PORT,... (their peer addresses).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the Raft journal and snapshot live.")
@click.option("--secret-file", type=click.Path(path_type=Path), help="File holding the cluster secret.")
@click.option("--node-grace", type=float, help="Seconds without heartbeats before a node is NotReady.")
@click.option("--eviction-timeout", type=float, help="Seconds NotReady before a node's pods are replaced.")
@click.option("--election-min", type=float, help="Shortest election timeout, seconds (default 0.15).")
@click.option("--election-max", type=float, help="Longest election timeout, seconds (default 0.4).")
@click.option("--unsafe-no-fsync", is_flag=True, default=None,
              help="Do not sync the Raft journal to disk before acknowledging writes (faster; a power "
                   "loss on a majority of masters can lose acknowledged writes).")
@click.option("--compaction-entries", type=int, help="Raft log entries kept before a snapshot (default 20000).")
@click.option("--quota-bytes", type=int, help="Byte quota of the store; writes past it get NOSPACE (default 512 MiB).")
@click.option("--service-cidr", help="Range of ClusterIPs (default 10.96.0.0/16).")
@click.option("--cluster-cidr", help="Range of pod addresses, a /24 per node (default 10.244.0.0/16).")
@click.option("--max-watches-per-client", type=int, help="Watches one client may hold open (default 256).")
@click.option("--max-streams-per-client", type=int,
              help="Heartbeat, log and port-forward streams one client may hold open (default 64).")
@click.option("--record-events", type=bool, default=None, help="Record events (default true).")
@click.option("--event-ttl", type=float, help="Seconds an event is kept after it was last seen (default 3600).")
@click.option("--pki-dir", type=click.Path(path_type=Path),
              help="Where the cluster CA is (ca.crt, ca.key; created when missing).")
@click.option("--tls-sans", help="Extra names and addresses for this master's certificate: A,B,...")
@click.option("--node-cert-ttl", type=float, help="Lifetime of node certificates, seconds (default 30 days).")
@click.option("--bootstrap-token-file", type=click.Path(path_type=Path),
              help="Join tokens (one per line) to register when leading, for scripted installs.")
@click.option("--bootstrap-token-ttl", type=float, help="Lifetime of those join tokens, seconds (default 24 h).")
@click.option("--encryption-key-file", type=click.Path(path_type=Path),
              help="YAML key file that encrypts Secrets at rest, the same on every master (see README).")
@click.option("--audit-log", type=click.Path(path_type=Path), help="Audit log file (default DATA_DIR/audit.log).")
@click.option("--audit-log-max-size-mb", type=click.IntRange(min=1), default=None,
              help="Rotate the audit log past this size in MiB (default 100).")
@click.option("--audit-log-max-backups", type=click.IntRange(min=0), default=None,
              help="Rotated audit logs kept (audit.log.1 is the newest; default 5).")
@click.option("--reflection/--no-reflection", default=None, help="Serve gRPC reflection (off by default).")
@click.option("--insecure", is_flag=True, default=None,
              help="Plaintext, no authentication: only to measure what TLS costs. Never for a cluster.")
@click.option("--controllers", type=click.Choice(["thread", "process"]), default=None,
              help="Run the scheduler and controllers in a child process (process, the default) or in the "
                   "master (thread).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def main(config_file: Path | None, **flags: Any) -> None:
    """Run a raftorch master: a store replica and the gRPC API.

    Settings come from flags, then RAFTORCH_MASTER_* environment variables, then the
    --config file, then defaults.
    """
    logs.configure(service=True, level=flags.get("log_level") or "info")
    try:
        config = cfgload.load(MasterConfig, config_file, "RAFTORCH_MASTER", flags)
        config.validate()
        secret = config.read_secret()
    except RaftorchError as err:
        click.echo(f"raftorch-master: {err}", err=True)
        sys.exit(2)
    logs.configure(service=True, level=config.log_level)
    # The Raft tick thread, the gRPC threads and the event loop hand work to each other for
    # every request; a short GIL switch interval keeps that hand-off from waiting 5 ms.
    sys.setswitchinterval(float(os.environ.get("RAFTORCH_SWITCH_INTERVAL", "0.0005")))
    try:
        asyncio.run(_serve(config, secret))
    except RaftorchError as err:
        click.echo(f"raftorch-master: {err}", err=True)
        sys.exit(1)
    except OSError as err:
        click.echo(f"raftorch-master: {err}", err=True)
        sys.exit(1)


async def _serve(config: MasterConfig, secret: str) -> None:
    master = Master(config, secret)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await master.start()
    gcstats.tune()
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(master.failed.wait())
    await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    await master.stop()
    if master.failure is not None:
        raise master.failure
