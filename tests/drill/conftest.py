"""A cluster in network namespaces, provisioned by deploy/, shared by the drill tests.

Needs root and a working `ip netns`: skipped otherwise, failed when CI is set. Drill results
are printed in a section of pytest's summary.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftorch.drill.report import format_summary, format_table, summary
from raftorch.local.netns import NetnsCluster, NetnsUnavailable, probe_support
from tests.drill._support import RESULTS, unusable


@pytest.fixture(scope="session")
def netns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    try:
        probe_support()
    except NetnsUnavailable as exc:
        unusable(str(exc))
    root = tmp_path_factory.mktemp("netns-cluster")
    cluster = NetnsCluster(root, masters=3, workers=2, runtime="fake", node_grace=2.0, eviction_timeout=2.0)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.teardown()
        for host in cluster.hosts.values():
            if host.log_path.exists():
                tail = host.log_path.read_text(errors="replace").splitlines()[-8:]
                print(f"--- {host.name} log tail ---", *tail, sep="\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("drills")
    for title, results in RESULTS.items():
        terminalreporter.write_line(f"{title}:")
        terminalreporter.write_line(format_table(results))
        terminalreporter.write_line(format_summary(summary(results)))
        terminalreporter.write_line("")
