"""/metrics on every master and agent: Prometheus' text format, parsed with prometheus_client's
own parser, with values a user relies on (request counts, Raft term and role)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftorch.drill.pods import deployment
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._inprocess import eventually

pytestmark = pytest.mark.processes


def scrape(addr: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at http://addr/metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def puts_counted(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return value(samples, "raftorch_grpc_requests_total", service="raftorch.v1.KV", method="Put", code="OK")


@pytest.fixture
def agents(masters: LocalMasters, tmp_path: Path) -> Iterator[LocalAgents]:
    nodes = LocalAgents(tmp_path / "agents", masters.endpoints, ["metrics-a"], runtime="fake", ca_dir=masters.pki_dir)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


def test_masters_export_requests_and_raft_state(masters: LocalMasters) -> None:
    leader = masters.wait_ready()
    before = {m.name: puts_counted(scrape(m.http_addr)) for m in masters.masters.values()}
    with masters.client() as c:
        for i in range(100):
            c.put(f"/metrics-test/{i}", b"x")
        statuses = {m.name: c.member_status(m.client_addr) for m in masters.masters.values()}
    after = {m.name: scrape(m.http_addr) for m in masters.masters.values()}
    # Whichever masters the client spoke to, together they answered every put.
    assert sum(puts_counted(s) for s in after.values()) - sum(before.values()) >= 100
    for name, samples in after.items():
        role = "leader" if name == leader else "follower"
        assert value(samples, "raftorch_raft_role", role=role) == 1.0, name
        assert value(samples, "raftorch_raft_role", role="candidate") == 0.0, name
        assert value(samples, "raftorch_raft_term") == statuses[name].term, name
        assert value(samples, "raftorch_store_keys") >= 100
        assert value(samples, "raftorch_raft_applied_index") > 0
    leader_samples = after[leader]
    assert value(leader_samples, "raftorch_raft_proposal_commit_seconds_count") >= 1
    assert all(value(s, "raftorch_raft_fsync_duration_seconds_count") >= 1 for s in after.values())
    assert value(leader_samples, "raftorch_grpc_request_duration_seconds_count",
                 service="raftorch.v1.KV", method="Put") >= 1


def test_bad_requests_are_counted_under_their_code(masters: LocalMasters) -> None:
    from raftorch.errors import Invalid

    m = next(iter(masters.masters.values()))
    with masters.client([m.name]) as c, pytest.raises(Invalid):
        c.put("", b"x")
    samples = scrape(m.http_addr)
    assert value(samples, "raftorch_grpc_requests_total", service="raftorch.v1.KV", method="Put",
                 code="INVALID_ARGUMENT") >= 1
    # Calls turned away before the edge (no credentials, or a role that may not) count too.
    from raftorch.client import Client
    from raftorch.errors import PermissionDenied, Unauthenticated
    from raftorch.rpc import Credentials

    ca = masters.admin.ca_file.read_bytes()
    with Client([m.client_addr], pin=True, retry_for=1.0, credentials=Credentials(ca)) as stranger, \
            pytest.raises(Unauthenticated):
        stranger.put("k", b"v")
    with masters.client([m.name]) as c:
        viewer = c.auth.create_token(name="metrics-viewer", role="view").token
    with Client([m.client_addr], pin=True, retry_for=1.0, credentials=Credentials(ca, token=viewer)) as v, \
            pytest.raises(PermissionDenied):
        v.put("k", b"v")
    samples = scrape(m.http_addr)
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        assert value(samples, "raftorch_grpc_requests_total", service="raftorch.v1.KV", method="Put",
                     code=code) >= 1, code


def test_agents_export_metrics(masters: LocalMasters, agents: LocalAgents) -> None:
    agent = agents.agents["metrics-a"]

    def heartbeats_counted() -> bool:
        try:
            return any(value(scrape(m.http_addr), "raftorch_node_heartbeats_total") > 0
                       for m in masters.masters.values())
        except OSError:
            return False

    eventually(heartbeats_counted, what="heartbeats counted by a master")

    with masters.client() as c:
        c.objects.create(deployment("metered", 2))

    def two_pods_started() -> bool:
        try:
            samples = scrape(agent.metrics_addr)
        except OSError:
            return False
        return (value(samples, "raftorch_agent_containers", state="running") >= 2
                and value(samples, "raftorch_agent_pod_start_duration_seconds_count") >= 2)

    eventually(two_pods_started, timeout=60, what="two pods started, as the agent's /metrics tells")
    samples = scrape(agent.metrics_addr)
    assert value(samples, "raftorch_agent_runtime_call_duration_seconds_count", call="create_and_start") >= 2
    assert value(samples, "raftorch_agent_runtime_call_duration_seconds_count", call="list_containers") >= 1
