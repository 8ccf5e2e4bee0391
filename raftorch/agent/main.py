"""`raftorch-agent`: run the agent of one node."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from raftorch import config as cfgload
from raftorch import logs
from raftorch.agent import certs
from raftorch.agent.certs import NodeCert
from raftorch.agent.config import AgentConfig
from raftorch.agent.runtime.base import ContainerRuntime
from raftorch.errors import Invalid, RaftorchError, Unauthenticated, Unavailable
from raftorch.stopping import stop_on_signals

DESCRIPTION = """Run a raftorch agent: register the node, heartbeat, run its pods.

Settings come from flags, then RAFTORCH_AGENT_* environment variables, then the
--config file, then defaults."""

EXAMPLE = """
Example:

  raftorch-agent --name node-1 --masters 127.0.0.1:2379,127.0.0.1:2381 \\
      --runtime docker --node-ip 10.0.0.11 --data-dir /var/lib/raftorch/agent
"""


def _requests_without_charset_detection() -> None:
    """Import `requests` (under the docker SDK) without a character-set detector.

    requests loads charset_normalizer at import to guess the encoding of a text response that
    names none, and falls back to UTF-8 without one (documented). Docker's API answers JSON, so
    the agent never needs the guess; the detector's compiled modules are ~3.5 MB of its memory.
    Blocked the documented way (a None entry in sys.modules), before anything imports requests."""
    if "requests" in sys.modules:
        return
    for name in ("charset_normalizer", "chardet"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        # requests warns once that it found no detector: expected here.
        warnings.simplefilter("ignore")
        import requests  # noqa: F401


# Seconds between returns of freed heap memory to the system (see heap_trimmer).
TRIM_PERIOD = 30.0


def heap_trimmer() -> Callable[[], None]:
    """A call that gives the heap's free pages back to the system (glibc's malloc_trim).

    glibc returns freed memory only from the top of each heap; what start-up, Docker's answers
    and pod starts free in between stays resident (measured: 1.3 MB after the imports alone).
    malloc_trim(0) releases every whole free page, in every thread's arena. Elsewhere (musl): a no-op."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0) and None


def make_runtime(config: AgentConfig) -> ContainerRuntime:
    if config.runtime == "docker":
        from raftorch.agent.runtime.docker import DockerRuntime

        return DockerRuntime(base_url=config.docker_url or None)
    if config.runtime == "process":
        from raftorch.agent.runtime.process import ProcessRuntime

        return ProcessRuntime(config.data_dir / "processes", host_ip=config.node_ip)
    from raftorch.agent.runtime.fake import FakeRuntime

    return FakeRuntime()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftorch-agent", description=DESCRIPTION, epilog=EXAMPLE, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", dest="config_file", type=Path, metavar="FILE", help="YAML file with these settings.")
    p.add_argument("--name", help="This node's name, unique in the cluster.")
    p.add_argument("--masters", help="Masters' gRPC addresses: HOST:PORT,...")
    p.add_argument("--runtime", choices=["docker", "process", "fake"],
                   help="How pods run: Docker containers, host processes, or nothing (hollow node).")
    p.add_argument("--node-ip", help="The address the masters and other nodes reach this node at.")
    p.add_argument("--data-dir", type=Path, help="Where the agent keeps its state.")
    p.add_argument("--agent-port", type=int, help="Port of the agent endpoint (logs, port-forward); 0 picks one.")
    p.add_argument("--usage-period", type=float, help="Seconds between CPU and memory samples (default 15).")
    p.add_argument("--metrics-addr", help="HOST:PORT for /metrics (default 127.0.0.1:10255; '' for none).")
    p.add_argument("--network-mode", choices=["iptables", "userspace", "none"],
                   help="How services reach pods on this node.")
    p.add_argument("--heartbeat-period", type=float, help="Seconds between heartbeats (default 1).")
    p.add_argument("--backoff-base", type=float, help="First restart delay of a crashing container, seconds.")
    p.add_argument("--sandbox-pool", type=int,
                   help="Pod sandboxes kept started ahead, for faster starts of pods of several containers "
                        "(docker; default 0). Pods in a pooled sandbox get the pool container's hostname.")
    p.add_argument("--start-concurrency", type=int, help="Pod starts under way at once (default 4).")
    p.add_argument("--cluster-cidr", help="The masters' cluster CIDR (default 10.244.0.0/16).")
    p.add_argument("--pki-dir", type=Path,
                   help="Where the node certificate, its key and the CA are kept (default DATA_DIR/pki).")
    p.add_argument("--join-token", help="Bootstrap token from `raftctl token create --join` (first start).")
    p.add_argument("--ca-hash", help="sha256:HEX of the cluster CA's public key, pinned while joining.")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="Plaintext to --insecure masters (benchmarks only).")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--uninstall", action="store_true",
                   help="Remove this node's network rules and routes (and its pod network once no pod uses it); "
                        "exit.")
    return p


def _run_without_docstrings() -> None:
    """Run this program again under `python -OO` (same process, same arguments) unless it is.

    Docstrings are constants of the code objects of every module the agent imports (~590): without
    them the agent holds 1.8 MB less for as long as it runs. -OO also drops `assert` statements;
    the agent's are type narrowings only. RAFTORCH_AGENT_KEEP_DOCSTRINGS=1 keeps them (debugging)."""
    if sys.flags.optimize >= 2 or os.environ.get("RAFTORCH_AGENT_KEEP_DOCSTRINGS") == "1":
        return
    try:
        os.execv(sys.executable, [sys.executable, "-OO", "-m", "raftorch.agent", *sys.argv[1:]])
    except OSError:
        return  # no interpreter to run again: go on as is


def main(argv: Sequence[str] | None = None) -> None:
    """`raftorch-agent [OPTIONS]` (argparse rather than click: click's ~0.7 MB would stay in the
    agent's memory for as long as it runs, for a parse done once). Run as a program (`argv`
    None), it first runs itself again without docstrings."""
    if argv is None:
        _run_without_docstrings()
    flags: dict[str, Any] = vars(parser().parse_args(argv))
    config_file: Path | None = flags.pop("config_file")
    uninstall: bool = flags.pop("uninstall")
    _requests_without_charset_detection()
    logs.configure(service=True, level=flags.get("log_level") or "info")
    try:
        config = cfgload.load(AgentConfig, config_file, "RAFTORCH_AGENT", flags)
        config.validate()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        runtime = make_runtime(config)
    except (RaftorchError, OSError) as err:
        print(f"raftorch-agent: {err}", file=sys.stderr)
        sys.exit(2)
    logs.configure(service=True, level=config.log_level)
    if uninstall:
        _uninstall(config, runtime)
        return
    from raftorch.agent.agent import Agent

    try:
        cert = node_certificate(config)
        if cert is not None:
            certs.check_signer(cert)
    except RaftorchError as err:
        print(f"raftorch-agent: {err}", file=sys.stderr)
        sys.exit(1)
    agent = Agent(config, runtime, cert)
    stop_on_signals(agent._stop)
    try:
        agent.start()
    except (RaftorchError, OSError) as err:
        print(f"raftorch-agent: {err}", file=sys.stderr)
        sys.exit(1)
    trim = heap_trimmer()
    trim()
    while not agent._stop.wait(TRIM_PERIOD):
        trim()
    agent.stop()


def node_certificate(config: AgentConfig) -> NodeCert | None:
    """The kept certificate, else one obtained by joining with the token."""
    if config.insecure:
        return None
    pki_dir = config.pki_dir or config.data_dir / "pki"
    cert = certs.load(pki_dir, config.name)
    if cert is not None:
        return cert
    if not config.join_token or not config.ca_hash:
        raise Invalid(f"no node certificate in {pki_dir}: give --join-token and --ca-hash "
                      "(from `raftctl token create --join` on a master) to join the cluster")
    deadline = time.monotonic() + 60
    while True:
        try:
            cert = certs.join(config.masters, config.name, config.node_ip, config.join_token, config.ca_hash)
            break
        except (Unavailable, Unauthenticated) as err:
            # Masters still starting, or a bootstrap token the new leader has not registered yet.
            retry = isinstance(err, Unavailable) or "unknown token" in str(err)
            if not retry or time.monotonic() > deadline:
                raise type(err)(f"cannot join the cluster: {err}") from None
            time.sleep(1.0)
        except RaftorchError as err:
            raise type(err)(f"cannot join the cluster: {err}") from None
    certs.save(pki_dir, cert)
    print(f"raftorch-agent: joined; node certificate for {config.name} kept in {pki_dir}", file=sys.stderr)
    return cert


def _uninstall(config: AgentConfig, runtime: ContainerRuntime) -> None:
    from raftorch.net import IptablesApplier, RouteApplier, remove_docker_network

    problems: list[str] = []
    try:
        IptablesApplier().cleanup()
    except RaftorchError as err:
        problems.append(f"iptables rules: {err}")
    try:
        RouteApplier(config.cluster_cidr).cleanup()
    except RaftorchError as err:
        problems.append(f"routes: {err}")
    client = getattr(runtime, "client", None)
    remove_pool = getattr(runtime, "remove_sandbox_pool", None)
    if remove_pool is not None:
        try:
            remove_pool(config.name)
        except RaftorchError as err:
            problems.append(f"sandbox pool: {err}")
    if client is not None:
        try:
            remove_docker_network(client, f"raftorch-{config.name}")
        except RaftorchError as err:
            # Pods outlive a stopped agent by design; their network goes with the last of them.
            print(f"raftorch-agent: kept the pod network raftorch-{config.name}: {err}", file=sys.stderr)
    if problems:
        print("raftorch-agent: uninstall incomplete: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"raftorch-agent: removed the network rules, routes and pod network of {config.name}")


if __name__ == "__main__":
    main()
