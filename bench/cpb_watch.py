"""What bench/control_plane_bench.py observes: pods (created, bound, running), nodes (Ready), and
the store's keys changed by kind, each through one watch."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from raftorch.api.v1 import objects_pb2
from raftorch.client import Client
from raftorch.errors import RaftorchError

BENCH_LABEL = "bench-app"


@dataclass(slots=True)
class PodTimes:
    seen: float
    bound: float | None = None
    running: float | None = None


class PodTracker:
    """Follows every pod through one Resources watch and notes when each is seen, bound, Running."""

    def __init__(self, endpoints: list[str]) -> None:
        self._client = Client(endpoints, timeout=10.0, retry_for=60.0)
        self._watch = self._client.objects.watch("pods")
        self.pods: dict[str, PodTimes] = {}
        self.bound = 0
        self.running = 0
        self.events = 0
        self.deleted = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="pod-tracker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self._watch:
                self._record(ev.type, ev.object, time.monotonic())
        except RaftorchError as err:
            self.error = str(err)

    def _record(self, kind: str, pod: Any, now: float) -> None:
        if not isinstance(pod, objects_pb2.Pod) or BENCH_LABEL not in pod.metadata.labels:
            return
        self.events += 1
        if kind == "DELETED":
            self.deleted += 1
            return
        times = self.pods.get(pod.metadata.uid)
        if times is None:
            times = self.pods[pod.metadata.uid] = PodTimes(now)
        if times.bound is None and pod.spec.node_name:
            times.bound = now
            self.bound += 1
        if times.running is None and pod.status.phase == "Running":
            times.running = now
            self.running += 1

    def close(self) -> None:
        self._watch.close()
        self._client.close()


class NodeTracker:
    """Counts nodes whose Ready condition is True, from a Resources watch on nodes."""

    def __init__(self, endpoints: list[str]) -> None:
        self._client = Client(endpoints, timeout=10.0, retry_for=60.0)
        self._watch = self._client.objects.watch("nodes")
        self.ready: set[str] = set()
        self.seen: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="node-tracker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(RaftorchError):
            for ev in self._watch:
                node = ev.object
                assert isinstance(node, objects_pb2.Node)
                name = node.metadata.name
                self.seen.add(name)
                ready = ev.type != "DELETED" and any(
                    c.type == "Ready" and c.status == "True" for c in node.status.conditions)
                (self.ready.add if ready else self.ready.discard)(name)

    def close(self) -> None:
        self._watch.close()
        self._client.close()


class KeyCounter:
    """Counts changed keys by kind (second path segment) from a KV watch on every key."""

    def __init__(self, endpoints: list[str], start_revision: int) -> None:
        self._client = Client(endpoints, timeout=10.0, retry_for=30.0)
        self._watch = self._client.watch("", prefix=True, start_revision=start_revision)
        self.changes: list[tuple[int, str]] = []
        self._thread = threading.Thread(target=self._run, name="key-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(RaftorchError):
            for ev in self._watch:
                parts = ev.kv.key.split("/")
                kind = "/".join(parts[2:4]) if parts[2:3] == ["allocations"] else "/".join(parts[1:3])
                self.changes.append((ev.revision, f"{kind} {ev.type.lower()}"))

    def revisions(self, upto: int) -> int:
        return len({rev for rev, _ in self.changes if rev <= upto})

    def by_kind(self, upto: int) -> dict[str, int]:
        return dict(Counter(kind for rev, kind in self.changes if rev <= upto).most_common())

    def close(self) -> None:
        self._watch.close()
        self._client.close()
