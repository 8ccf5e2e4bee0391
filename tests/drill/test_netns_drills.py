"""Drills against a real cluster in network namespaces, set up by the deploy/ scripts and units."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.drill import drills, probe
from raftorch.drill.drills import DrillResult
from raftorch.drill.report import format_table
from raftorch.local.netns import CLIENT_PORT, NetnsCluster, NetnsUnavailable, deploy_dir, probe_support
from tests.drill._support import OPTIONS, record, unusable

pytestmark = pytest.mark.processes

LEADER_KILLS = 5
LEADER_ISOLATIONS = 3


def _check(results: list[DrillResult]) -> None:
    record(results)
    print(format_table(results))
    for r in results:
        assert r.lost_writes == 0, f"run {r.run}: acknowledged writes lost: {r.problems}"
        assert r.stale_reads == 0, f"run {r.run}: stale reads: {r.problems}"
        assert r.verdicts and all(v == "linearizable" for v in r.verdicts.values()), \
            f"run {r.run}: {r.verdicts} {r.problems}"
        assert r.acked_writes > 0 and r.ok > 0, f"run {r.run}: the workload got nothing done"
        assert r.passed, f"run {r.run}: {r.problems}"


def test_units_and_provisioning_scripts_run_the_cluster(netns_cluster: NetnsCluster) -> None:
    units = deploy_dir() / "systemd"
    for host in netns_cluster.hosts.values():
        program, unit = (("raftorch-master", "raftorch-master.service") if host.role == "master"
                         else ("raftorch-agent", "raftorch-agent.service"))
        config = host.etc / f"{program.removeprefix('raftorch-')}.yaml"
        # The command is the unit's ExecStart with this host's paths, and it is what runs.
        exec_start = next(line.removeprefix("ExecStart=") for line in (units / unit).read_text().splitlines()
                          if line.startswith("ExecStart="))
        expected = shlex.split(exec_start.replace("/opt/raftorch", sys.prefix).replace("/etc/raftorch",
                                                                                        str(host.etc)))
        assert host.command == expected == [f"{sys.prefix}/bin/{program}", "--config", str(config)]
        assert host.proc is not None and host.alive
        cmdline = Path(f"/proc/{host.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert str(config).encode() in cmdline
        assert subprocess.run(["ip", "netns", "identify", str(host.proc.pid)], capture_output=True, text=True,
                              check=True).stdout.strip() == host.netns
        settings = yaml.safe_load(config.read_text())
        if host.role == "master":
            assert settings["client-addr"] == f"{host.ip}:{CLIENT_PORT}"
            assert settings["node-grace"] == 2.0 and settings["eviction-timeout"] == 2.0
            assert settings["secret-file"] == str(host.etc / "cluster-secret")
            assert oct((host.etc / "cluster-secret").stat().st_mode & 0o777) == "0o600"
        else:
            assert settings["runtime"] == "fake" and settings["node-ip"] == host.ip
    # A working cluster: every master serves the same data, every node is Ready at its address.
    with netns_cluster.client() as c:
        c.put("deploy-check", b"ok")
        nodes, _ = c.objects.list("nodes")
        addresses = {n.metadata.name: {a.address for a in n.status.addresses}
                     for n in nodes if isinstance(n, objects_pb2.Node)}
    for name, host in netns_cluster.workers.items():
        assert host.ip in addresses[name]
    for addr in netns_cluster.endpoints:
        with Client([addr], timeout=5.0, retry_for=5.0, pin=True) as c:
            kv = c.get_one("deploy-check")
            assert kv is not None and kv.value == b"ok"
    assert probe.healthy(netns_cluster.master_endpoints)


def test_leader_sigkill_loses_nothing_and_stays_linearizable(netns_cluster: NetnsCluster) -> None:
    endpoints = netns_cluster.master_endpoints
    results = [drills.failover(endpoints, netns_cluster, OPTIONS, run) for run in range(1, LEADER_KILLS + 1)]
    _check(results)
    assert len({r.target for r in results}) >= 2, "the same master led every time: kills not exercised"
    for r in results:
        assert r.failover_s is not None and r.new_leader not in ("", r.target)


def test_isolated_leader_serves_no_stale_reads_and_acks_no_lost_writes(netns_cluster: NetnsCluster) -> None:
    endpoints = netns_cluster.master_endpoints
    results = [drills.isolate(endpoints, netns_cluster, OPTIONS, run) for run in range(1, LEADER_ISOLATIONS + 1)]
    _check(results)
    for r in results:
        assert r.failover_s is not None and r.new_leader not in ("", r.target)


def test_the_isolate_drill_does_catch_stale_reads(netns_cluster: NetnsCluster) -> None:
    """A negative control: serializable reads skip the quorum check, so the isolated ex-leader
    answers them from its old state, and the drill must say so."""
    load = replace(OPTIONS.workload, serializable_reads=True, writes=0.1, reads=0.85, timeout=0.2, retry_for=0.3)
    result = drills.isolate(netns_cluster.master_endpoints, netns_cluster,
                            replace(OPTIONS, workload=load, after=1.5, check_timeout=20.0))
    assert result.stale_reads > 0, format_table([result])
    assert not result.linearizable and not result.passed
    assert result.lost_writes == 0


def test_lost_worker_pods_run_on_the_other_worker(netns_cluster: NetnsCluster) -> None:
    result = drills.lose_worker(netns_cluster.master_endpoints, netns_cluster, OPTIONS, replicas=4)
    _check([result])
    assert result.target in netns_cluster.workers
    assert result.pods_moved and result.pods_moved_s is not None
    netns_cluster.wait_nodes_ready(list(netns_cluster.workers))


def test_restart_of_every_master_keeps_objects_and_running_pods(netns_cluster: NetnsCluster) -> None:
    result = drills.restart_masters(netns_cluster.master_endpoints, netns_cluster, OPTIONS, replicas=2)
    _check([result])
    assert result.objects_intact is True, result.problems
    assert result.failover_s is not None


def test_teardown_removes_everything_it_made(tmp_path: Path) -> None:
    try:
        probe_support()
    except NetnsUnavailable as exc:
        unusable(str(exc))
    cluster = NetnsCluster(tmp_path, masters=1, workers=0)
    try:
        cluster.start()
        assert probe.healthy(cluster.master_endpoints)
        cluster.stop()
    finally:
        cluster.teardown()
        cluster.teardown()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    forward = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
    assert cluster.tag not in namespaces
    assert f"rtd{cluster.tag}" not in links
    assert f"rtd{cluster.tag}" not in forward
