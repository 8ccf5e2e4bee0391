"""One real-Docker case of each new kind: a Job, a DaemonSet (with a NoExecute taint), a CronJob.

Driven through raftctl as a user would: create job / apply -f / wait / logs / taint.
Run under the heavy-tests lock: flock /tmp/raftorch-heavy.lock pytest tests/integration/test_workloads_docker.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.api.v1 import objects_pb2
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._docker import docker_cluster, docker_for_nodes
from tests.integration._wait import eventually

pytestmark = [pytest.mark.docker, pytest.mark.processes]

IMAGE = "raftorch/busybox:latest"
NODES = ["kinds-a", "kinds-b"]

DAEMONSET = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: shipper}}
spec:
  selector: {{matchLabels: {{app: shipper}}}}
  template:
    metadata: {{labels: {{app: shipper}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: shipper, image: "{IMAGE}", command: [sh, -c, "echo shipping from $HOSTNAME; sleep 3600"]}}
"""

CRONJOB = f"""
apiVersion: batch/v1
kind: CronJob
metadata:
  name: stamp
  annotations: {{cronjob.raftorch.io/test-every-seconds: "3"}}
spec:
  schedule: "*/1 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {{name: stamp, image: "{IMAGE}", command: [sh, -c, "echo stamped"]}}
"""


@pytest.fixture(scope="module")
def docker_client() -> Iterator[object]:
    yield from docker_for_nodes(NODES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: object
            ) -> Iterator[tuple[LocalMasters, LocalAgents]]:
    with docker_cluster(tmp_path_factory.mktemp("kinds-docker"), NODES) as pair:
        yield pair




def raftctl(masters: LocalMasters, tmp_path: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--endpoints", ",".join(masters.endpoints),
                                      "--config", str(tmp_path / "no-config"), *args])
    return result


def test_job_runs_to_completion_with_logs(cluster: tuple[LocalMasters, LocalAgents], tmp_path: Path) -> None:
    masters, _ = cluster
    created = raftctl(masters, tmp_path, "create", "job", "pi", f"--image={IMAGE}", "--", "sh", "-c", "echo 3.14159")
    assert created.exit_code == 0 and created.output.strip() == "job.batch/pi created", created.output
    waited = raftctl(masters, tmp_path, "wait", "--for=condition=complete", "job/pi", "--timeout=90s")
    assert waited.exit_code == 0, waited.output
    logs = raftctl(masters, tmp_path, "logs", "job/pi")
    assert logs.exit_code == 0, logs.output
    assert "3.14159" in logs.output
    table = raftctl(masters, tmp_path, "get", "jobs").output.splitlines()
    assert table[1].split()[:3] == ["pi", "Complete", "1/1"]


def _shippers(c: Client) -> dict[str, str]:
    items, _ = c.objects.list("pods", "default", label_selector="app=shipper")
    return {p.spec.node_name: p.status.phase for p in items if isinstance(p, objects_pb2.Pod)}


def _containers_on(docker_client: object, node: str) -> list[object]:
    return [c for c in docker_client.containers.list(  # type: ignore[attr-defined]
        filters={"label": ["raftorch.io/managed=true", f"raftorch.io/node={node}"]})
        if c.labels.get("raftorch.io/container") == "shipper"]


def test_daemonset_runs_on_every_node_and_a_no_execute_taint_moves_it_off(
        cluster: tuple[LocalMasters, LocalAgents], docker_client: object, tmp_path: Path) -> None:
    masters, _ = cluster
    manifest = tmp_path / "ds.yaml"
    manifest.write_text(DAEMONSET)
    applied = raftctl(masters, tmp_path, "apply", "-f", str(manifest))
    assert applied.exit_code == 0, applied.output
    with masters.client() as c:
        eventually(lambda: _shippers(c) == dict.fromkeys(NODES, "Running"), what="a running shipper on each node")
        assert all(_containers_on(docker_client, n) for n in NODES)
        tainted = raftctl(masters, tmp_path, "taint", "nodes", NODES[1], "maintenance=now:NoExecute")
        assert tainted.exit_code == 0, tainted.output
        eventually(lambda: _shippers(c) == {NODES[0]: "Running"}, what="the shipper evicted from the tainted node")
        eventually(lambda: not _containers_on(docker_client, NODES[1]), what="its container removed")
        assert raftctl(masters, tmp_path, "taint", "nodes", NODES[1], "maintenance-").exit_code == 0
        eventually(lambda: _shippers(c) == dict.fromkeys(NODES, "Running"), what="back on both nodes")
    table = raftctl(masters, tmp_path, "get", "ds").output.splitlines()
    assert table[1].split()[:6] == ["shipper", "2", "2", "2", "2", "2"]


def test_cronjob_creates_jobs_that_complete_and_create_job_from_it(cluster: tuple[LocalMasters, LocalAgents],
                                                                   tmp_path: Path) -> None:
    masters, _ = cluster
    manifest = tmp_path / "cron.yaml"
    manifest.write_text(CRONJOB)
    assert raftctl(masters, tmp_path, "apply", "-f", str(manifest)).exit_code == 0
    with masters.client() as c:
        def completed() -> list[str]:
            items, _ = c.objects.list("jobs", "default")
            return [j.metadata.name for j in items if isinstance(j, objects_pb2.Job)
                    and j.metadata.name.startswith("stamp-")
                    and any(cd.type == "Complete" and cd.status == "True" for cd in j.status.conditions)]

        eventually(lambda: len(completed()) >= 1, what="a scheduled run completed")
        made = raftctl(masters, tmp_path, "create", "job", "stamp-now", "--from=cronjob/stamp")
        assert made.exit_code == 0, made.output
        waited = raftctl(masters, tmp_path, "wait", "--for=condition=complete", "job/stamp-now", "--timeout=90s")
        assert waited.exit_code == 0, waited.output
        assert "stamped" in raftctl(masters, tmp_path, "logs", "job/stamp-now").output
    table = raftctl(masters, tmp_path, "get", "cronjobs").output.splitlines()
    assert table[1].split()[:2] == ["stamp", "*/1"]
