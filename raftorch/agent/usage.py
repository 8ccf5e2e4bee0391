"""CPU and memory of a node and its containers, read from cgroup and /proc files.

Reading a few small files per container costs microseconds; Docker's stats API takes about a
second per container, so it is only the fallback. CPU is a counter (nanoseconds used), turned
into a rate between two samples; memory is the working set (usage minus inactive file pages),
the figure Kubernetes and `docker stats` show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raftorch.agent.runtime.base import ContainerInfo
from raftorch.api.v1 import agents_pb2

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class Reading:
    cpu_ns: int  # CPU time used since the container started
    memory: int  # working set, bytes


def _int_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_reading(container_id: str, root: Path = CGROUP_ROOT) -> Reading | None:
    """A Docker container's reading from its cgroup (v1 or v2, cgroupfs or systemd driver)."""
    # cgroup v1
    cpu = _int_file(root / "cpuacct" / "docker" / container_id / "cpuacct.usage")
    memory_dir = root / "memory" / "docker" / container_id
    usage = _int_file(memory_dir / "memory.usage_in_bytes")
    if cpu is not None and usage is not None:
        inactive = _stat_value(memory_dir / "memory.stat", "total_inactive_file")
        return Reading(cpu, max(0, usage - inactive))
    # cgroup v2
    for directory in (root / "system.slice" / f"docker-{container_id}.scope", root / "docker" / container_id):
        usage_usec = _stat_value(directory / "cpu.stat", "usage_usec")
        current = _int_file(directory / "memory.current")
        if current is not None:
            inactive = _stat_value(directory / "memory.stat", "inactive_file")
            return Reading(usage_usec * 1000, max(0, current - inactive))
    return None


def process_group_reading(pgid: int, proc: Path = Path("/proc")) -> Reading | None:
    """The summed CPU time and resident memory of every process in a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0
    found = False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        # Fields from the state on: state=0, ppid=1, pgrp=2, ..., utime=11, stime=12, rss=21.
        if len(fields) < 22 or fields[2] != str(pgid) or fields[0] == "Z":
            continue
        found = True
        cpu += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // ticks
        rss += int(fields[21]) * page
    return Reading(cpu, rss) if found else None


def node_cpu_ns(proc: Path = Path("/proc")) -> int:
    """CPU time this host spent busy (all cores), from /proc/stat."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle
    return busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def node_memory(proc: Path = Path("/proc")) -> int:
    """Memory in use on this host: total minus available."""
    total = available = 0
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
            elif line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return max(0, total - available)


def millicores(before: int, after: int, seconds: float) -> int:
    """CPU rate in millicores from two readings of a nanosecond counter `seconds` apart."""
    if seconds <= 0 or after < before:
        return 0
    return round((after - before) / seconds / 1_000_000)


def build_usage(node: str, containers: list[ContainerInfo], before: Mapping[str, Reading],
                after: Mapping[str, Reading], seconds: float, node_cpu: tuple[int, int],
                memory: int) -> agents_pb2.NodeUsage:
    """A NodeUsage from two samples: containers without both readings are left out."""
    pods: dict[str, agents_pb2.PodUsage] = {}
    for info in containers:
        start, end = before.get(info.id), after.get(info.id)
        if start is None or end is None:
            continue
        pod = pods.get(info.pod_uid)
        if pod is None:
            pod = pods[info.pod_uid] = agents_pb2.PodUsage(namespace=info.pod_namespace, name=info.pod_name,
                                                           uid=info.pod_uid)
        pod.containers.append(agents_pb2.ContainerUsage(
            name=info.container, cpu_millicores=millicores(start.cpu_ns, end.cpu_ns, seconds),
            memory_bytes=end.memory))
    return agents_pb2.NodeUsage(
        node=node, cpu_millicores=millicores(node_cpu[0], node_cpu[1], seconds), memory_bytes=memory,
        pods=sorted(pods.values(), key=lambda p: (p.namespace, p.name)), window_seconds=seconds)
