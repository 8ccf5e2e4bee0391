"""The store's byte quota: what a write costs, and the NOSPACE alarm.

Like etcd's `--quota-backend-bytes`: the state machine counts the bytes it holds (retained
versions, watch history, leases, members and deduplication records, each with a fixed
overhead) and refuses a write that would take the count over the quota. Deletes, compaction
and lease revocation stay allowed, so a full store can always be emptied.

The count is an estimate of what a snapshot of the store holds, computed from replicated state
alone, and the quota itself is replicated state (set by a command): every replica refuses
exactly the same writes, whatever its memory or its flags.
"""

from __future__ import annotations

from raftorch.store.mvcc import EVENT_OVERHEAD, VERSION_OVERHEAD, Version, version_size

MIB = 1024 * 1024
# An in-memory store: the default leaves room for the replica's own copies (snapshot child,
# log entries) on a master with a few GiB of memory.
DEFAULT_QUOTA_BYTES = 512 * MIB
MIN_QUOTA_BYTES = 1 * MIB
MAX_QUOTA_BYTES = 1 << 40
# History (reclaimable by compaction) may hold at most this share of the quota; past it the
# machine compacts down to half of it, so a snapshot's history is bounded by bytes.
HISTORY_SHARE = 4
# The NOSPACE alarm clears once usage is back under this share of the quota (per mille): the
# margin keeps the alarm from flapping with every write near the edge.
ALARM_CLEAR_PERMILLE = 900

LEASE_BYTES = 64
MEMBER_OVERHEAD = 32
DEDUP_OVERHEAD = 32

NOSPACE = "NOSPACE"


def put_cost(key: str, value: bytes, prev: Version | None) -> int:
    """Bytes a put adds: the new version, plus its history entry (new and previous version)."""
    new = len(key.encode()) + len(value) + VERSION_OVERHEAD
    return new + EVENT_OVERHEAD + new + (version_size(prev) if prev is not None else 0)


def history_limit(quota: int) -> int:
    return quota // HISTORY_SHARE


def alarm_clears(usage: int, quota: int) -> bool:
    return usage * 1000 <= quota * ALARM_CLEAR_PERMILLE


def nospace_message(usage: int, quota: int, need: int) -> str:
    return (f"database space exceeded: the store holds {usage} bytes of its {quota}-byte quota and "
            f"this write needs {need} more; delete keys, then compact (raftctl kv compact) to free space")
