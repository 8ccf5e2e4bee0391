"""The incremental controllers' work queues, and which keys a change in the cache puts in them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.master.cache import Change, ObjectCache
from raftorch.master.controllers._util import labels_match
from raftorch.master.workqueue import WorkQueue
from raftorch.objects import controller_of

NameKey = tuple[str, str]  # (namespace, name)
KindKey = tuple[str, str, str]  # (kind, namespace, name)


class Queues:
    """The incremental controllers' work queues, and what a change puts in them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.deployments: WorkQueue[NameKey] = WorkQueue(clock)
        self.replicasets: WorkQueue[NameKey] = WorkQueue(clock)
        self.endpoints: WorkQueue[NameKey] = WorkQueue(clock)
        self.gc: WorkQueue[KindKey] = WorkQueue(clock)
        self.schedule = True  # pods or nodes changed since the scheduler last ran
        self.pods_changed: set[NameKey] = set()  # for the config events: pods whose status changed

    def _all(self) -> tuple[WorkQueue[Any], ...]:
        return (self.deployments, self.replicasets, self.endpoints, self.gc)

    def ready(self) -> bool:
        """Whether a queued key is due (one whose back-off ended)."""
        return any(q.next_delay() == 0.0 for q in self._all())

    def delay(self) -> float:
        """Seconds until the next delayed key is due (inf when none is)."""
        delays = [d for q in self._all() if (d := q.next_delay()) is not None]
        return min(delays, default=math.inf)

    def route(self, cache: ObjectCache, change: Change) -> None:
        ns = change.namespace
        key = (ns, change.name)
        objs = [o for o in (change.old, change.new) if o is not None]
        metas: list[objects_pb2.ObjectMeta] = [o.metadata for o in objs]  # type: ignore[attr-defined]
        kind = change.kind
        if kind == "Deployment":
            self.deployments.add(key)
        elif kind == "ReplicaSet":
            self.replicasets.add(key)
            for meta in metas:
                ref = controller_of(meta)
                if ref is not None and ref.kind == "Deployment":
                    self.deployments.add((ns, ref.name))
        elif kind == "Pod":
            self.schedule = True
            self.pods_changed.add(key)
            for meta in metas:
                ref = controller_of(meta)
                if ref is not None and ref.kind == "ReplicaSet":
                    self.replicasets.add((ns, ref.name))
                    rs = cache.get("ReplicaSet", ns, ref.name)
                    owner = controller_of(rs.metadata) if rs is not None else None  # type: ignore[attr-defined]
                    if owner is not None and owner.kind == "Deployment":
                        self.deployments.add((ns, owner.name))
            for svc_key in cache.index.in_namespace("Service", ns):
                svc = cache.at("Service", svc_key)
                assert isinstance(svc, objects_pb2.Service)
                if svc.spec.selector and any(labels_match(svc.spec.selector, m.labels) for m in metas):
                    self.endpoints.add((ns, svc.metadata.name))
        elif kind in ("Service", "Endpoints"):
            self.endpoints.add(key)
        elif kind in ("Node", "Namespace", "PersistentVolumeClaim"):
            # A namespace's level decides where its pods may go; a claim, where the pods using it may.
            self.schedule = True
        if change.new is not None and controller_of(metas[-1]) is not None:
            self.gc.add((kind, ns, change.name))
        if change.new is None and change.old is not None:
            # Deleted: what it controlled may now be an orphan.
            for child_kind, child_key in cache.index.children(metas[0].uid):
                child = cache.at(child_kind, child_key)
                if child is not None:
                    self.gc.add((child_kind, *name_key(child)))

    def add_all(self, cache: ObjectCache) -> None:
        """Queue every key (a fresh cache, or the periodic resync)."""
        for kind, queue in (("Deployment", self.deployments), ("ReplicaSet", self.replicasets),
                            ("Service", self.endpoints), ("Endpoints", self.endpoints)):
            queue.add_all([name_key(o) for o in cache.items(kind)])
        for kind in cache.objects:
            self.gc.add_all([(kind, *name_key(o)) for o in cache.items(kind)
                             if controller_of(o.metadata) is not None])  # type: ignore[attr-defined]
        self.schedule = True


def name_key(obj: Message) -> NameKey:
    meta: objects_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    return meta.namespace, meta.name
