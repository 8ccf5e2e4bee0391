"""The Raft journal: an append-only file of checksummed entries, synced by a background thread.

pysyncobj's own file journal writes through mmap and never syncs, and its term and vote are
renamed into place without a sync: a power loss could lose acknowledged writes or a vote. This
journal speaks pysyncobj's `Journal` interface and adds what Raft needs from the disk:

- entries are written with `pwrite` on the Raft thread and made durable by a syncer thread, one
  `fdatasync` for all the entries appended since the previous one (group commit); `synced_index`
  says how far the journal is on disk, and `on_synced` tells the Raft thread when it moves;
- the term and vote are written to a file that is synced, renamed and its directory synced
  before `setCurrentTerm` returns, so before any message that reflects them is sent;
- each record carries a CRC32: a tail torn by a crash is cut off when the journal is loaded;
- the commit index is a hint (any replica learns it again from the leader) and is written
  lazily, without a sync.

With `durable=False` (the `unsafe-no-fsync` setting) nothing is synced: faster, and a power loss
on a majority may lose acknowledged writes.

A journal written by pysyncobj's FileJournal (same path, its header) is converted on first load.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pysyncobj.journal import FileJournal, Journal

log = structlog.get_logger("raftorch.store.journal")

MAGIC = b"RAFTORCH-JOURNAL-v1\n"
# Record header: command length, CRC32 of (index, term, command), index, term.
_HEADER = struct.Struct("<IIQQ")
_PYSYNCOBJ_MAGIC = b"PYSYNCOBJ"

Entry = tuple[bytes, int, int]  # (command, index, term): pysyncobj's shape


def sync_directory(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data`: written, synced, renamed, directory synced."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        sync_directory(path.parent)


def _checksum(index: int, term: int, command: bytes) -> int:
    return zlib.crc32(command, zlib.crc32(struct.pack("<QQ", index, term))) & 0xFFFFFFFF


def encode_record(command: bytes, index: int, term: int) -> bytes:
    return _HEADER.pack(len(command), _checksum(index, term, command), index, term) + command


def decode_records(data: bytes) -> tuple[list[Entry], list[int], int]:
    """Entries from a journal file's bytes, their offsets, and where the valid part ends.

    Reading stops at the first record that is incomplete, fails its checksum or does not
    follow the previous index: what a crash in the middle of a write leaves behind."""
    entries: list[Entry] = []
    offsets: list[int] = []
    pos = len(MAGIC)
    while pos + _HEADER.size <= len(data):
        length, crc, index, term = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if end > len(data):
            break
        command = data[pos + _HEADER.size:end]
        if _checksum(index, term, command) != crc or (entries and index != entries[-1][1] + 1):
            break
        entries.append((command, index, term))
        offsets.append(pos)
        pos = end
    return entries, offsets, pos


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj's journal interface over `path`, with `path.state` (term, vote) and
    `path.commit` (commit index hint) beside it."""

    def __init__(self, path: Path, durable: bool = True,
                 sync: Callable[[int], None] = os.fdatasync,
                 on_synced: Callable[[], None] | None = None) -> None:
        self.path = path
        self.durable = durable
        self._sync = sync
        self.on_synced = on_synced
        self._state_path = path.with_name(path.name + ".state")
        self._commit_path = path.with_name(path.name + ".commit")
        self._lock = threading.Condition()
        self._closed = False
        self._dirty = False
        self._generation = 0
        # Held by the syncer while it syncs, by the Raft thread while it swaps the file.
        self._fd_lock = threading.Lock()
        self._term = 0
        self._voted_for: str | None = None
        self._commit = 1
        self._saved_commit = 1
        if path.exists() and path.read_bytes()[:len(_PYSYNCOBJ_MAGIC)] == _PYSYNCOBJ_MAGIC:
            self._convert_pysyncobj_journal()
        self._load_state()
        self._entries, self._offsets, self._end, self._fd = self._open()
        self._synced = self._entries[-1][1] if self._entries else 0
        self._syncer: threading.Thread | None = None
        if durable:
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-sync", daemon=True)
            self._syncer.start()

    # -- loading ----------------------------------------------------------------------------

    def _open(self) -> tuple[list[Entry], list[int], int, int]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        data = b""
        size = os.fstat(fd).st_size
        while len(data) < size:
            chunk = os.pread(fd, size - len(data), len(data))
            if not chunk:
                break
            data += chunk
        if not data.startswith(MAGIC):
            if data:
                os.close(fd)
                raise ValueError(f"{self.path}: not a raftorch journal (unknown header)")
            os.pwrite(fd, MAGIC, 0)
            data = MAGIC
            if self.durable:
                sync_directory(self.path.parent)
        entries, offsets, end = decode_records(data)
        if end < len(data):
            log.warning("journal_tail_dropped", path=str(self.path), bytes=len(data) - end,
                        entries_kept=len(entries),
                        reason="an incomplete or corrupt record, as a crash during a write leaves")
            os.ftruncate(fd, end)
        # What a crashed process wrote may still be only in the page cache: the entries
        # count as durable from here on, so they must be.
        self._sync_now(fd)
        return entries, offsets, end, fd

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_path.read_bytes())
            self._term = int(state["term"])
            voted = state.get("voted_for")
            self._voted_for = str(voted) if voted is not None else None
        except FileNotFoundError:
            pass
        # The commit index is a hint only: the leader tells it again.
        with contextlib.suppress(OSError, ValueError):
            self._commit = self._saved_commit = max(1, int(self._commit_path.read_text()))

    def _convert_pysyncobj_journal(self) -> None:
        """Rewrite a journal of pysyncobj's format in this one, keeping its entries, term and vote."""
        old = FileJournal(str(self.path))
        try:
            entries = [(bytes(old[i][0]), old[i][1], old[i][2]) for i in range(len(old))]
            term, voted, commit = old.getCurrentTerm(), old.getVotedForNodeId(), old.getRaftCommitIndex()
        finally:
            old._destroy()
        self._term, self._voted_for, self._commit = int(term), voted, int(commit)
        self._write_state()
        self._commit_path.write_text(str(self._commit))
        write_file_durably(self.path, MAGIC + b"".join(encode_record(*e) for e in entries))
        Path(str(self.path) + ".meta").unlink(missing_ok=True)
        log.info("journal_converted", path=str(self.path), entries=len(entries))

    # -- pysyncobj's Journal interface (its Raft thread) -----------------------------------

    def add(self, command: Any, idx: int, term: int) -> None:
        data = bytes(command)
        record = encode_record(data, idx, term)
        _write_all(self._fd, record, self._end)
        self._entries.append((data, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._mark_dirty()

    def clear(self) -> None:
        self._truncate(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom < len(self._entries):
            self._truncate(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the entries a snapshot now holds: the rest is written to a new file, synced and
        renamed over the old one (after compaction only a few entries remain)."""
        if entryTo <= 0:
            return
        kept = self._entries[entryTo:]
        records = [encode_record(*e) for e in kept]
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        _write_all(fd, MAGIC + b"".join(records), 0)
        if self.durable:
            self._sync_now(fd)
        with self._fd_lock:
            os.replace(tmp, self.path)
            if self.durable:
                sync_directory(self.path.parent)
            old, self._fd = self._fd, fd
            os.close(old)
        offsets: list[int] = []
        pos = len(MAGIC)
        for r in records:
            offsets.append(pos)
            pos += len(r)
        with self._lock:
            self._entries, self._offsets, self._end = kept, offsets, pos
            self._generation += 1
            # Everything in the new file was synced before the rename.
            self._synced = kept[-1][1] if kept else 0

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        last = self._entries[-1][1] if self._entries else 1
        return max(1, min(self._commit, last))

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        """Durable before it returns: Raft may act on the term and vote right after."""
        self._term, self._voted_for = term, votedForNodeId
        self._write_state()

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> str | None:
        return self._voted_for

    def onOneSecondTimer(self) -> None:
        if self._commit != self._saved_commit:
            self._saved_commit = self._commit
            try:
                write_file_durably(self._commit_path, str(self._commit).encode(), durable=False)
            except OSError as exc:
                log.warning("commit_hint_not_saved", error=str(exc))

    # -- durability -----------------------------------------------------------------------

    @property
    def synced_index(self) -> int:
        """The last index whose entry, and every one before it, is on disk."""
        with self._lock:
            return self._synced

    @property
    def generation(self) -> int:
        """Changes whenever entries are removed: an acknowledgement held for an entry that is
        gone must not be sent."""
        with self._lock:
            return self._generation

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        if self._syncer is not None and self._syncer is not threading.current_thread():
            self._syncer.join(5)
        with self._fd_lock:
            os.close(self._fd)

    def _truncate(self, keep: int) -> None:
        end = self._offsets[keep] if keep < len(self._offsets) else self._end
        os.ftruncate(self._fd, end)
        del self._entries[keep:]
        del self._offsets[keep:]
        self._end = end
        with self._lock:
            self._generation += 1
            last = self._entries[-1][1] if self._entries else 0
            self._synced = min(self._synced, last)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        with self._lock:
            if not self.durable:
                self._synced = self._entries[-1][1] if self._entries else 0
                return
            self._dirty = True
            self._lock.notify()

    def _sync_loop(self) -> None:
        """One fdatasync covers every entry written since the last one began."""
        while True:
            with self._lock:
                while not self._dirty and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                self._dirty = False
                generation = self._generation
                target = self._entries[-1][1] if self._entries else 0
            try:
                with self._fd_lock:
                    if self._closed:
                        return
                    self._sync(self._fd)
            except OSError as exc:
                # The entries may not be on disk: nothing is acknowledged until a sync works.
                log.error("journal_sync_failed", path=str(self.path), error=str(exc))
                with self._lock:
                    self._dirty = True
                    self._lock.wait(0.1)
                continue
            with self._lock:
                if generation == self._generation:
                    self._synced = max(self._synced, target)
            if self.on_synced is not None:
                self.on_synced()

    def _sync_now(self, fd: int) -> None:
        if self.durable:
            self._sync(fd)

    def _write_state(self) -> None:
        data = json.dumps({"term": self._term, "voted_for": self._voted_for}).encode()
        write_file_durably(self._state_path, data, durable=self.durable)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
