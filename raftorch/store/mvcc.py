"""Multi-version key index: every key's recent versions, a global revision, compaction.

Pure data structure, no locking and no I/O: the state machine owns one and serialises access.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from raftorch.errors import Compacted, Invalid

# Bytes counted for a version's metadata (revisions, version, lease) and for a history entry,
# on top of the key and value: about what a snapshot spends on them.
VERSION_OVERHEAD = 64
EVENT_OVERHEAD = 16


@dataclass(slots=True)
class Version:
    """One version of a key; `value is None` marks a deletion (tombstone)."""

    key: str
    value: bytes | None
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @property
    def alive(self) -> bool:
        return self.value is not None


@dataclass(slots=True)
class Change:
    """One event of the history: `kv` is the new version, `prev` the one it replaced."""

    kv: Version
    prev: Version | None


def version_size(version: Version) -> int:
    """Bytes a version is counted for: key, value and metadata."""
    key, value = version.key, version.value
    return (len(key) if key.isascii() else len(key.encode())) + (len(value) if value is not None else 0) \
        + VERSION_OVERHEAD


def change_size(change: Change) -> int:
    """Bytes a history entry is counted for: a snapshot stores its new and its previous version."""
    prev = change.prev
    return EVENT_OVERHEAD + version_size(change.kv) + (version_size(prev) if prev is not None else 0)


class KeyIndex:
    """Keys in sorted order, each with its versions oldest first, plus the change history."""

    def __init__(self) -> None:
        self.revision = 0
        self.compact_revision = 0
        self._keys: list[str] = []
        self._versions: dict[str, list[Version]] = {}
        # (revision, change) in revision order; the watch history.
        self.history: list[tuple[int, Change]] = []
        # Bytes held by the retained versions and by the history (see version_size, change_size),
        # kept in step with every write and compaction.
        self.version_bytes = 0
        self.history_bytes = 0

    # -- reads ---------------------------------------------------------------------

    def current(self, key: str) -> Version | None:
        versions = self._versions.get(key)
        if not versions or not versions[-1].alive:
            return None
        return versions[-1]

    def check_revision(self, revision: int) -> int:
        """Return the revision to read at (0 means now), or raise if it is not kept."""
        if revision <= 0:
            return self.revision
        if revision > self.revision:
            raise Invalid(f"revision {revision} is in the future (current {self.revision})")
        if revision < self.compact_revision:
            raise Compacted(f"revision {revision} has been compacted (oldest kept {self.compact_revision})")
        return revision

    def range(self, key: str, prefix: bool, revision: int) -> Iterator[Version]:
        """Live versions of the matching keys as of `revision`, in key order."""
        at = self.check_revision(revision)
        for name in self._matching(key, prefix):
            found = self._at(name, at)
            if found is not None and found.alive:
                yield found

    def _matching(self, key: str, prefix: bool) -> Iterator[str]:
        if not prefix:
            if key in self._versions:
                yield key
            return
        start = bisect.bisect_left(self._keys, key)
        for name in self._keys[start:]:
            if not name.startswith(key):
                break
            yield name

    def _at(self, key: str, revision: int) -> Version | None:
        versions = self._versions[key]
        if versions[-1].mod_revision <= revision:
            return versions[-1]
        for candidate in reversed(versions):
            if candidate.mod_revision <= revision:
                return candidate
        return None

    def changes_since(self, revision: int) -> list[tuple[int, Change]]:
        """History entries at or after `revision`."""
        if revision < self.compact_revision:
            raise Compacted(f"revision {revision} has been compacted (oldest kept {self.compact_revision})")
        start = bisect.bisect_left(self.history, revision, key=lambda item: item[0])
        return self.history[start:]

    def __len__(self) -> int:
        return len(self._keys)

    # -- writes (the caller bumps `revision` once per request) ----------------------

    def put(self, key: str, value: bytes, lease: int, revision: int) -> Change:
        prev = self.current(key)
        new = Version(
            key=key,
            value=value,
            create_revision=prev.create_revision if prev else revision,
            mod_revision=revision,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )
        size = version_size(new)
        self._append(new, size)
        change = Change(new, prev)
        self._remember(revision, change, EVENT_OVERHEAD + size + (version_size(prev) if prev else 0))
        return change

    def delete(self, key: str, revision: int) -> Change | None:
        prev = self.current(key)
        if prev is None:
            return None
        tomb = Version(key, None, 0, revision, 0, 0)
        size = version_size(tomb)
        self._append(tomb, size)
        change = Change(tomb, prev)
        self._remember(revision, change, EVENT_OVERHEAD + size + version_size(prev))
        return change

    def _remember(self, revision: int, change: Change, size: int) -> None:
        """Add to the history; `size` is change_size(change), known to the caller."""
        self.history.append((revision, change))
        self.history_bytes += size

    def _append(self, version: Version, size: int) -> None:
        self.version_bytes += size
        versions = self._versions.get(version.key)
        if versions is None:
            self._versions[version.key] = [version]
            bisect.insort(self._keys, version.key)
        else:
            versions.append(version)

    def compact(self, revision: int) -> None:
        """Drop versions and history older than `revision`; the latest version at or before
        it is kept when alive so reads at `revision` still work."""
        if revision <= self.compact_revision:
            raise Compacted(f"revision {revision} has been compacted already (oldest kept {self.compact_revision})")
        if revision > self.revision:
            raise Invalid(f"cannot compact to revision {revision}: the current revision is {self.revision}")
        emptied: list[str] = []
        for name, versions in self._versions.items():
            keep_from = 0
            for i, version in enumerate(versions):
                if version.mod_revision <= revision:
                    keep_from = i
                else:
                    break
            if keep_from:
                self.version_bytes -= sum(version_size(v) for v in versions[:keep_from])
                del versions[:keep_from]
            if versions and not versions[0].alive and versions[0].mod_revision <= revision:
                self.version_bytes -= version_size(versions[0])
                del versions[0]
            if not versions:
                emptied.append(name)
        for name in emptied:
            del self._versions[name]
            del self._keys[bisect.bisect_left(self._keys, name)]
        start = bisect.bisect_left(self.history, revision, key=lambda item: item[0])
        self.history_bytes -= sum(change_size(change) for _, change in self.history[:start])
        del self.history[:start]
        self.compact_revision = revision

    def history_start(self, keep_bytes: int) -> int:
        """The oldest revision such that the history from it on holds at most `keep_bytes`
        (never past the current revision: its own entries are always kept)."""
        kept = 0
        start = self.revision + 1
        i = len(self.history)
        while i > 0:
            revision = self.history[i - 1][0]
            group = 0
            while i > 0 and self.history[i - 1][0] == revision:
                group += change_size(self.history[i - 1][1])
                i -= 1
            if kept + group > keep_bytes:
                break
            kept += group
            start = revision
        return min(start, self.revision)

    # -- snapshot support -----------------------------------------------------------

    def all_versions(self) -> Iterator[tuple[str, list[Version]]]:
        for name in self._keys:
            yield name, self._versions[name]

    def load(self, revision: int, compact_revision: int, keys: dict[str, list[Version]],
             history: list[tuple[int, Change]]) -> None:
        self.revision = revision
        self.compact_revision = compact_revision
        self._versions = keys
        self._keys = sorted(keys)
        self.history = history
        self.version_bytes = sum(version_size(v) for versions in keys.values() for v in versions)
        self.history_bytes = sum(change_size(change) for _, change in history)
