"""Garbage collector, pure: objects whose controlling owner is gone (background cascade)."""

from __future__ import annotations

from collections.abc import Sequence

from raftorch.api.v1 import objects_pb2
from raftorch.master.controllers._util import controller_ref


def plan_gc(objects: Sequence[tuple[str, objects_pb2.ObjectMeta]],
            live_uids: set[str]) -> tuple[tuple[str, str, str], ...]:
    """(kind, namespace, name) of each object whose controller owner reference names a uid not
    in `live_uids`, sorted. Objects already being deleted and references without a uid are
    skipped. `objects` and `live_uids` must come from the same read of the store, or an
    owner created in between would look dead."""
    doomed: set[tuple[str, str, str]] = set()
    for kind, meta in objects:
        if meta.deletion_timestamp:
            continue
        ref = controller_ref(meta)
        if ref is not None and ref.uid and ref.uid not in live_uids:
            doomed.add((kind, meta.namespace, meta.name))
    return tuple(sorted(doomed))
