"""Usage arithmetic: CPU rates from counters, working-set memory from cgroup v1 files."""

from __future__ import annotations

from pathlib import Path

from raftorch.agent.runtime.base import ContainerInfo
from raftorch.agent.usage import Reading, build_usage, cgroup_reading, millicores
from raftorch.cli.top import memory_mi, memory_text


def test_millicores_from_two_counter_readings() -> None:
    assert millicores(0, 2_000_000_000, 4.0) == 500
    assert millicores(5, 1, 1.0) == 0  # a restarted container's counter went back
    assert millicores(0, 1, 0.0) == 0


def test_cgroup_v1_working_set_is_usage_minus_inactive_file(tmp_path: Path) -> None:
    cid = "abc123"
    (tmp_path / "cpuacct/docker" / cid).mkdir(parents=True)
    (tmp_path / "cpuacct/docker" / cid / "cpuacct.usage").write_text("123456789\n")
    mem = tmp_path / "memory/docker" / cid
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("50000000\n")
    (mem / "memory.stat").write_text("cache 100\ntotal_inactive_file 8000000\n")
    assert cgroup_reading(cid, tmp_path) == Reading(123456789, 42000000)
    assert cgroup_reading("missing", tmp_path) is None


def test_usage_groups_containers_by_pod_and_skips_unpaired_readings() -> None:
    labels = {"raftorch.io/pod-uid": "u1", "raftorch.io/pod-namespace": "default",
              "raftorch.io/pod-name": "web-1", "raftorch.io/container": "main"}
    info = ContainerInfo(id="c1", state="running", labels=labels, name="x", image="i")
    new = ContainerInfo(id="c2", state="running", labels={**labels, "raftorch.io/container": "side"}, name="y",
                        image="i")
    usage = build_usage("n1", [info, new], {"c1": Reading(0, 10)}, {"c1": Reading(1_000_000_000, 20),
                        "c2": Reading(5, 5)}, 2.0, (0, 4_000_000_000), 99)
    assert usage.node == "n1" and usage.cpu_millicores == 2000 and usage.memory_bytes == 99
    [pod] = usage.pods
    assert (pod.namespace, pod.name, pod.uid) == ("default", "web-1", "u1")
    assert [(c.name, c.cpu_millicores, c.memory_bytes) for c in pod.containers] == [("main", 500, 20)]


def test_memory_prints_in_binary_units() -> None:
    assert memory_text(16 * 1024 ** 3) == "16Gi"
    assert memory_text(16318396 * 1024) == "16318396Ki"
    assert memory_text(1000) == "1000"
    assert memory_mi(300 * 1024 * 1024 + 5) == "300Mi"
