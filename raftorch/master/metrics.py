"""A master's metrics for Prometheus, one registry per master.

Hot paths (every gRPC request, every committed entry) touch only pre-bound histogram and
counter children; everything that is state rather than an event (Raft term and role, indexes,
store size, open watches, heartbeats received) is read when Prometheus scrapes, by a collector,
so it costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from raftorch.master.heartbeats import HeartbeatTracker
    from raftorch.store.replica import RaftReplica

ROLES = ("leader", "follower", "candidate")
# Latencies of a control plane: from a fraction of a millisecond (a local read) to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """Gauges read from the replica and the heartbeat tracker at scrape time."""

    def __init__(self, replica: RaftReplica, heartbeats: HeartbeatTracker | None,
                 extra: Callable[[], Iterator[Metric]] | None) -> None:
        self.replica = replica
        self.heartbeats = heartbeats
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        replica = self.replica
        status = replica.status()
        yield GaugeMetricFamily("raftorch_raft_term", "The Raft term this master is in.", value=status.term)
        role = GaugeMetricFamily("raftorch_raft_role", "1 for this master's current Raft role.", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if status.role == name else 0.0)
        yield role
        yield GaugeMetricFamily("raftorch_raft_commit_index", "Highest Raft log index known committed.",
                                value=status.commit_index)
        yield GaugeMetricFamily("raftorch_raft_applied_index", "Highest Raft log index applied to this replica.",
                                value=status.applied_index)
        yield GaugeMetricFamily("raftorch_raft_has_quorum", "1 when this master is leader and hears a majority.",
                                value=1.0 if status.has_quorum else 0.0)
        yield CounterMetricFamily("raftorch_raft_leader_changes", "Times this master saw the leader change.",
                                  value=replica.leader_changes)
        with replica.reading() as machine:
            keys, usage, revision = len(machine.index), machine.usage, machine.revision
            quota_bytes = machine.quota_bytes
        yield GaugeMetricFamily("raftorch_store_keys", "Keys in the store.", value=keys)
        yield GaugeMetricFamily("raftorch_store_size_bytes", "Bytes the store holds, as its quota counts them.",
                                value=usage)
        yield GaugeMetricFamily("raftorch_store_quota_bytes", "The store's byte quota.", value=quota_bytes)
        yield GaugeMetricFamily("raftorch_store_revision", "The store's revision.", value=revision)
        yield GaugeMetricFamily("raftorch_watches_open", "Watches open on this master.", value=len(replica.hub))
        if self.heartbeats is not None:
            yield CounterMetricFamily("raftorch_node_heartbeats", "Node heartbeats received by this master.",
                                      value=self.heartbeats.received)
        if self.extra is not None:
            yield from self.extra()


class MasterMetrics:
    """Every metric a master exports. A fresh instance is cheap: components that are built
    without one (unit tests) make their own and nobody scrapes it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.grpc_requests = Counter("raftorch_grpc_requests", "gRPC requests handled, by method and status code.",
                                     ["service", "method", "code"], registry=r)
        self.grpc_seconds = Histogram("raftorch_grpc_request_duration_seconds",
                                      "Time to answer a unary gRPC request, by method.", ["service", "method"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.proposal_seconds = Histogram("raftorch_raft_proposal_commit_seconds",
                                          "From handing a log entry to Raft until it is committed and applied.",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.fsync_seconds = Histogram("raftorch_raft_fsync_duration_seconds", "Time to sync the Raft journal.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.scheduler_attempts = Counter("raftorch_scheduler_attempts", "Pods the scheduler tried to place.",
                                          ["result"], registry=r)
        self.scheduler_seconds = Histogram("raftorch_scheduler_duration_seconds",
                                           "Time of one scheduling pass, planning and binding.",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.reconcile_seconds = Histogram("raftorch_controller_reconcile_duration_seconds",
                                           "Time of one controller pass, by controller.", ["controller"],
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter("raftorch_events", "Events the controllers recorded, by outcome.", ["outcome"],
                              registry=r)

    def watch_state(self, replica: RaftReplica, heartbeats: HeartbeatTracker | None = None,
                    extra: Callable[[], Iterator[Metric]] | None = None) -> None:
        """Export the replica's (and heartbeats') state, read at every scrape."""
        self.registry.register(_StateCollector(replica, heartbeats, extra))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def method_labels(full_name: str) -> tuple[str, str]:
    """("raftorch.v1.KV", "Put") from "raftorch.v1.KV.Put"."""
    service, _, method = full_name.rpartition(".")
    return service, method


def count_refused(metrics: MasterMetrics) -> Callable[[str, str], None]:
    """Count a call the auth interceptor turned away ("/raftorch.v1.KV/Put", "UNAUTHENTICATED")
    like any other answer: by service, method and code."""
    def refused(path: str, code: str) -> None:
        service, _, method = path.strip("/").partition("/")
        metrics.grpc_requests.labels(service, method, code).inc()
    return refused


def bound(metric: Any, *labels: str) -> Any:
    """A labelled child, bound once so that a hot path only increments it."""
    return metric.labels(*labels)
