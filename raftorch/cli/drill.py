"""raftctl drill: fault-injection drills against a running cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.output import as_json
from raftorch.client import set_default_credentials
from raftorch.drill import report
from raftorch.drill.drills import RUNNERS, DrillOptions, DrillResult
from raftorch.drill.history import read_history
from raftorch.drill.linearizability import check_history
from raftorch.drill.operators import CommandOperator, LocalClusterOperator, Operator, named_endpoints
from raftorch.drill.workload import WorkloadSettings

F = TypeVar("F", bound=Callable[..., Any])

_COMMANDS = ("kill-master", "start-master", "isolate", "heal", "lose-worker", "restore-worker")


def _options(fn: F) -> F:
    for decorator in reversed([
        click.option("--runs", type=click.IntRange(1, 100), default=1, show_default=True, help="How many times."),
        click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table"),
        click.option("--local-cluster", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="State directory of a `raftctl up` cluster, whose processes to kill and restart."),
        click.option("--threads", type=click.IntRange(1, 64), default=6, show_default=True,
                     help="Client threads of the workload."),
        click.option("--history-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Save each run's history there (DRILL-RUN.jsonl), for `raftctl drill check`."),
        *(click.option(f"--{name}-cmd", help=f"Shell command to {name.replace('-', ' ')} {{name}} "
                                             "(for clusters on other hosts).")
          for name in _COMMANDS),
    ]):
        fn = decorator(fn)
    return fn


def _operator(local_cluster: Path | None, commands: dict[str, str | None]) -> tuple[dict[str, str], Operator]:
    if local_cluster is not None:
        local = LocalClusterOperator(local_cluster)
        return local.endpoints, local
    cfg = get_ctx().config()
    set_default_credentials(cfg.credentials())
    return named_endpoints(cfg.endpoints), CommandOperator(**commands)


def _run(drill: str, runs: int, output: str, local_cluster: Path | None, threads: int, history_dir: Path | None,
         **commands: str | None) -> None:
    endpoints, operator = _operator(local_cluster, {k.removesuffix("_cmd"): v for k, v in commands.items()})
    options = DrillOptions(workload=WorkloadSettings(threads=threads), history_dir=history_dir)
    results: list[DrillResult] = []
    for run in range(1, runs + 1):
        result = RUNNERS[drill](endpoints, operator, options, run)
        results.append(result)
        if output == "table":
            click.echo(report.format_table([result]))
            click.echo()
    totals = report.summary(results)
    if output == "json":
        as_json({"runs": [r.to_dict() for r in results], "summary": totals})
    else:
        click.echo(report.format_summary(totals))
    if totals["passed"] != totals["runs"]:
        raise SystemExit(1)


def _command(name: str, doc: str) -> click.Command:
    def callback(**kwargs: Any) -> None:
        _run(name, **kwargs)

    callback.__doc__ = doc
    return click.command(name)(_options(handle_errors(callback)))


@click.group()
def drill() -> None:
    """Inject faults under load and check what clients saw.

    \b
    Every drill runs client threads writing, reading and compare-and-swapping while the fault
    happens, then reports the failover time, the longest gap between acknowledged writes,
    acknowledged writes lost (must be 0), stale reads (must be 0) and whether every key's
    history is linearizable. Faults need a way to act on the hosts: --local-cluster for a
    `raftctl up` cluster, else the --*-cmd templates ({name} is the master or node).

    \b
    Example:
      raftctl drill failover --local-cluster ~/.local/share/raftorch/local --runs 5
      raftctl drill failover --kill-master-cmd 'ssh {name} sudo systemctl kill -s KILL raftorch-master' \\
          --start-master-cmd 'ssh {name} sudo systemctl start raftorch-master'
    """


for _name, _doc in (
    ("failover", "SIGKILL the leader; a new one must take over with nothing lost."),
    ("isolate", "Cut the leader off from the other masters; it must not answer stale reads or ack writes."),
    ("lose-worker", "Lose the worker running most of a test deployment; its pods must run elsewhere."),
    ("restart-masters", "Kill and restart every master; objects and running pods must survive."),
):
    drill.add_command(_command(_name, _doc))


@drill.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "jepsen"]), default="auto", show_default=True,
              help="jsonl: a drill's history (--history-dir); jepsen: a Jepsen/Knossos log; auto: by content.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              help="Seconds of search before giving up with verdict unknown.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def check(file: Path, fmt: str, timeout: float, output: str) -> None:
    """Check whether a recorded history is linearizable.

    \b
    Exit code: 0 linearizable, 1 not linearizable, 2 unknown (time limit) or a file that
    cannot be read as a history (the bad line is named; an empty history is an error).

    \b
    Example:
      raftctl drill failover --local-cluster DIR --history-dir /tmp/h
      raftctl drill check /tmp/h/failover-1.jsonl
      raftctl drill check etcd_000.log --format jepsen
    """
    ops = read_history(file, fmt)  # type: ignore[arg-type]
    result = check_history(ops, timeout=timeout)
    if output == "json":
        as_json({"verdict": result.verdict, "operations": len(ops), "key": result.key,
                 "explanation": result.explanation})
    else:
        click.echo(f"{result.verdict}: {result.explanation}")
    raise SystemExit(0 if result.linearizable else 1 if result.verdict == "not-linearizable" else 2)
