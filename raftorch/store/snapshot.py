"""State machine snapshots as protobuf (never pickle): what the dump file holds.

Deterministic: two machines that applied the same commands dump the same bytes. Fields are
only ever added (format 1 stays readable): a snapshot without a quota loads with the default
quota, one without alarms with none raised.
"""

from __future__ import annotations

from collections import OrderedDict

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.store import quota
from raftorch.store.machine import Lease, StateMachine, _headers, dedup_size, members_size, to_kv
from raftorch.store.mvcc import Change, Version

SNAPSHOT_FORMAT = 1


def _version(kv: kv_pb2.KeyValue, deleted: bool) -> Version:
    return Version(kv.key, None if deleted else kv.value, kv.create_revision, kv.mod_revision,
                   kv.version, kv.lease)


def _kv(version: Version) -> kv_pb2.KeyValue:
    return to_kv(version)


def _strip(result: store_pb2.CommandResult) -> None:
    """Drop what one replica adds to a result (its name; the term a servicer stamps on the
    result it returns): replicated state is the same on every master."""
    for header in _headers(result):
        header.member = ""
        header.raft_term = 0


def dump_state(machine: StateMachine) -> store_pb2.Snapshot:
    snap = store_pb2.Snapshot(
        format=SNAPSHOT_FORMAT,
        revision=machine.index.revision,
        compact_revision=machine.index.compact_revision,
        next_lease_id=machine.next_lease_id,
        fence_term=machine.fence_term,
        lease_grants=machine.lease_grants,
        quota_bytes=machine.quota_bytes,
        alarms=machine.alarms,
    )
    for name, versions in machine.index.all_versions():
        snap.keys.add(key=name, versions=[_kv(v) for v in versions], deleted=[not v.alive for v in versions])
    for lease in machine.leases.values():
        snap.leases.add(id=lease.id, ttl=lease.ttl, grant=lease.grant)
    for rid, result in machine.dedup.items():
        record = snap.dedup.add(request_id=rid, result=result)
        _strip(record.result)
    for member in machine.members.values():
        snap.members.append(member)
    for revision, change in machine.index.history:
        event = snap.history.add(revision=revision).event
        event.type = kv_pb2.KeyEvent.PUT if change.kv.alive else kv_pb2.KeyEvent.DELETE
        event.kv.CopyFrom(_kv(change.kv))
        if change.prev is not None:
            event.prev_kv.CopyFrom(_kv(change.prev))
    return snap


def load_state(machine: StateMachine, snap: store_pb2.Snapshot) -> None:
    if snap.format != SNAPSHOT_FORMAT:
        raise RuntimeError(f"snapshot format {snap.format} is not understood by this master")
    keys = {
        entry.key: [_version(kv, deleted) for kv, deleted in zip(entry.versions, entry.deleted, strict=True)]
        for entry in snap.keys
    }
    history: list[tuple[int, Change]] = []
    for item in snap.history:
        ev = item.event
        prev = _version(ev.prev_kv, False) if ev.HasField("prev_kv") else None
        history.append((item.revision, Change(_version(ev.kv, ev.type == kv_pb2.KeyEvent.DELETE), prev)))
    machine.index.load(snap.revision, snap.compact_revision, keys, history)
    machine.next_lease_id = snap.next_lease_id
    machine.fence_term = snap.fence_term
    machine.lease_grants = snap.lease_grants
    machine.leases = {lease.id: Lease(lease.id, lease.ttl, lease.grant) for lease in snap.leases}
    for name, versions in keys.items():
        current = versions[-1]
        if current.alive and current.lease in machine.leases:
            machine.leases[current.lease].keys.add(name)
    machine.dedup = OrderedDict((d.request_id, d.result) for d in snap.dedup)
    for result in machine.dedup.values():
        _strip(result)  # older snapshots kept them
    machine.dedup_bytes = sum(dedup_size(rid, result) for rid, result in machine.dedup.items())
    machine.members = {m.name: m for m in snap.members}
    machine.member_bytes = members_size(machine.members)
    machine.quota_bytes = snap.quota_bytes or quota.DEFAULT_QUOTA_BYTES
    machine.nospace_alarm = quota.NOSPACE in snap.alarms
