"""Events for the normal flow and the failures, as `raftctl get events` shows them: real master
processes and an agent on the process runtime (host processes, no Docker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftorch.api.v1 import objects_pb2
from raftorch.cli import printers
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._inprocess import eventually, label_privileged

pytestmark = pytest.mark.processes


def deployment(name: str, replicas: int, command: list[str], cpu: str = "10m") -> objects_pb2.Deployment:
    labels = {"app": name}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(termination_grace_period_seconds=1, containers=[objects_pb2.Container(
                    name="main", image="proc", command=command,
                    resources=objects_pb2.ResourceRequirements(requests={"cpu": cpu}))]))))


def events_of(c: Client, kind: str, name: str) -> list[objects_pb2.Event]:
    items, _ = c.objects.list("events", "default")
    found = [e for e in items if isinstance(e, objects_pb2.Event)
             and e.involved_object.kind == kind and e.involved_object.name == name]
    return sorted(found, key=printers.event_order)


def pods_of(c: Client, app: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", "default", label_selector=f"app={app}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


def node_ready(c: Client, name: str) -> bool:
    nodes, _ = c.objects.list("nodes")
    return any(n.metadata.name == name and any(cd.type == "Ready" and cd.status == "True"  # type: ignore[attr-defined]
                                               for cd in n.status.conditions) for n in nodes)  # type: ignore[attr-defined]


@pytest.fixture
def cluster(masters: LocalMasters, tmp_path: Path) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["ev-a"], runtime="process",
                         extra_args=["--backoff-base", "0.5"], ca_dir=masters.pki_dir)
    agents.start()
    try:
        with masters.client() as c:
            eventually(lambda: node_ready(c, "ev-a"), what="node ev-a Ready")
            eventually(lambda: label_privileged(c), what="namespace default may run host processes")
        yield masters, agents
    finally:
        agents.stop()
        for a in agents.agents.values():
            for f in a.data_dir.rglob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    pid = json.loads(f.read_text()).get("pid")
                    if pid:
                        os.killpg(pid, signal.SIGKILL)


def raftctl(masters: LocalMasters, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--endpoints", ",".join(masters.endpoints), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_deployment_records_the_normal_flow(cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("hello", 1, ["sh", "-c", "exec sleep 1000"]))

        def started() -> bool:
            # The agent's events and the scheduler's are written apart (each batched): wait for
            # both; the listing orders them by when they happened.
            pods = pods_of(c, "hello")
            return len(pods) == 1 and {"Scheduled", "Started"} <= {e.reason for e in
                                                                    events_of(c, "Pod", pods[0].metadata.name)}

        eventually(started, timeout=60, what="Scheduled and Started events for the pod")
        pod = pods_of(c, "hello")[0]
        reasons = [e.reason for e in events_of(c, "Pod", pod.metadata.name)]
        assert reasons[:4] == ["Scheduled", "Pulled", "Created", "Started"], reasons
        scheduled = next(e for e in events_of(c, "Pod", pod.metadata.name) if e.reason == "Scheduled")
        assert scheduled.message == f"Successfully assigned default/{pod.metadata.name} to ev-a"
        eventually(lambda: any(e.reason == "ScalingReplicaSet" for e in events_of(c, "Deployment", "hello")),
                   what="ScalingReplicaSet")
        scaling = next(e for e in events_of(c, "Deployment", "hello") if e.reason == "ScalingReplicaSet")
        assert scaling.message.startswith("Scaled up replica set hello-") and scaling.message.endswith(" to 1")
    out = raftctl(masters, "get", "events", "--for", f"pod/{pod.metadata.name}")
    lines = out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[2] for line in lines[1:5]] == ["Scheduled", "Pulled", "Created", "Started"], out
    assert all(f"pod/{pod.metadata.name}" in line for line in lines[1:])
    described = raftctl(masters, "describe", "pod", pod.metadata.name)
    assert "Started" in described.split("Events:")[1]


def test_a_pod_that_cannot_fit_gets_failed_scheduling_with_the_reason(
        cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("huge", 1, ["sh", "-c", "exec sleep 1000"], cpu="1000"))
        eventually(lambda: len(pods_of(c, "huge")) == 1, what="the pod")
        pod = pods_of(c, "huge")[0]
        eventually(lambda: any(e.reason == "FailedScheduling" for e in events_of(c, "Pod", pod.metadata.name)),
                   what="FailedScheduling")
        event = next(e for e in events_of(c, "Pod", pod.metadata.name) if e.reason == "FailedScheduling")
        assert event.type == "Warning"
        assert event.message == "0/1 nodes are available: 1 Insufficient cpu."


def test_a_crash_loop_gives_one_back_off_event_whose_count_rises(cluster: tuple[LocalMasters, LocalAgents]) -> None:
    masters, _ = cluster
    with masters.client() as c:
        c.objects.create(deployment("crashy", 1, ["sh", "-c", "exit 1"]))
        eventually(lambda: len(pods_of(c, "crashy")) == 1, what="the pod")
        pod = pods_of(c, "crashy")[0]

        def backoffs() -> list[objects_pb2.Event]:
            return [e for e in events_of(c, "Pod", pod.metadata.name) if e.reason == "BackOff"]

        eventually(lambda: any(e.count >= 3 for e in backoffs()), timeout=90, what="BackOff counted 3 times")
        found = backoffs()
        assert len(found) == 1, found
        assert found[0].type == "Warning"
        assert found[0].message == f"Back-off restarting failed container main in pod {pod.metadata.name}"
        assert found[0].first_timestamp <= found[0].last_timestamp
