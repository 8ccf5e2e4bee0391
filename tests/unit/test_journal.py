"""The Raft journal on disk: entries, term and vote survive a reopen; a torn tail is cut off;
syncing is what moves `synced_index`; pysyncobj's own format is converted."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from raftorch.store.journal import MAGIC, DurableJournal


def wait_synced(journal: DurableJournal, index: int) -> None:
    done = threading.Event()
    journal.on_synced = done.set
    while journal.synced_index < index:
        assert done.wait(10), f"synced_index stuck at {journal.synced_index}, want {index}"
        done.clear()


def test_entries_term_and_vote_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    for i in range(1, 6):
        j.add(f"cmd{i}".encode(), i, 2)
    j.setCurrentTerm(3, "127.0.0.1:2380")
    j.deleteEntriesFrom(4)  # a new leader's entries replace the last one
    j.add(b"other", 5, 3)
    wait_synced(j, 5)
    j.close()
    again = DurableJournal(path)
    try:
        assert [again[i] for i in range(len(again))] == [
            (b"cmd1", 1, 2), (b"cmd2", 2, 2), (b"cmd3", 3, 2), (b"cmd4", 4, 2), (b"other", 5, 3)]
        assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (3, "127.0.0.1:2380")
    finally:
        again.close()


def test_a_torn_last_record_is_cut_off_and_later_entries_append_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    for i in range(1, 4):
        j.add(b"x" * 100, i, 1)
    j.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 30)  # a crash in the middle of writing entry 3
    j = DurableJournal(path)
    assert [j[i][1] for i in range(len(j))] == [1, 2]
    j.add(b"y", 3, 1)
    j.close()
    j = DurableJournal(path)
    try:
        assert [j[i][1:] for i in range(len(j))] == [(1, 1), (2, 1), (3, 1)]
        assert j[2][0] == b"y"
    finally:
        j.close()


def test_a_corrupt_record_ends_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    for i in range(1, 4):
        j.add(b"abcdef", i, 1)
    j.close()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # a flipped bit in entry 3's command
    path.write_bytes(bytes(data))
    j = DurableJournal(path)
    try:
        assert len(j) == 2
    finally:
        j.close()


def test_synced_index_moves_only_when_the_sync_returns(tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[int] = []
    armed = False

    def slow_sync(fd: int) -> None:
        if armed:
            calls.append(fd)
            assert release.wait(10)
        os.fdatasync(fd)

    j = DurableJournal(tmp_path / "raft.journal", sync=slow_sync)
    armed = True
    try:
        j.add(b"a", 1, 1)
        while not calls:
            threading.Event().wait(0.001)
        assert j.synced_index == 0  # written, not yet on disk
        release.set()
        wait_synced(j, 1)
        assert j.synced_index == 1
    finally:
        release.set()
        j.close()


def test_one_sync_covers_entries_appended_together(tmp_path: Path) -> None:
    gate = threading.Event()
    calls: list[int] = []
    armed = False

    def gated_sync(fd: int) -> None:
        if armed:
            calls.append(fd)
            assert gate.wait(10)

    j = DurableJournal(tmp_path / "raft.journal", sync=gated_sync)
    armed = True
    try:
        j.add(b"a", 1, 1)
        while not calls:
            threading.Event().wait(0.001)
        for i in range(2, 52):  # appended while the first sync runs
            j.add(b"b", i, 1)
        gate.set()
        wait_synced(j, 51)
        assert len(calls) == 2
    finally:
        gate.set()
        j.close()


def test_removed_entries_are_not_reported_synced_by_an_earlier_sync(tmp_path: Path) -> None:
    gate = threading.Event()
    started = threading.Event()
    armed = False

    def gated_sync(fd: int) -> None:
        if armed:
            started.set()
            assert gate.wait(10)

    j = DurableJournal(tmp_path / "raft.journal", sync=gated_sync)
    armed = True
    try:
        j.add(b"a", 1, 1)
        j.add(b"b", 2, 1)
        assert started.wait(10)
        generation = j.generation
        j.deleteEntriesFrom(1)  # entry 2 replaced while its sync runs
        j.add(b"c", 2, 2)
        assert j.generation != generation
        gate.set()
        wait_synced(j, 2)
        assert j[1] == (b"c", 2, 2)
    finally:
        gate.set()
        j.close()


def test_without_fsync_nothing_is_synced_and_entries_count_as_stored(tmp_path: Path) -> None:
    calls: list[int] = []
    j = DurableJournal(tmp_path / "raft.journal", durable=False, sync=calls.append)
    try:
        j.add(b"a", 1, 1)
        j.setCurrentTerm(2, None)
        assert j.synced_index == 1
        assert calls == []
    finally:
        j.close()


def test_compaction_keeps_the_entries_after_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    for i in range(1, 11):
        j.add(f"e{i}".encode(), i, 1)
    j.deleteEntriesTo(7)
    assert j.synced_index == 10
    j.add(b"e11", 11, 1)
    j.close()
    j = DurableJournal(path)
    try:
        assert [j[i][1] for i in range(len(j))] == [8, 9, 10, 11]
    finally:
        j.close()


# pysyncobj's FileJournal reads its meta file without closing it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_journal_of_pysyncobj_format_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    old = FileJournal(str(path))
    old.add(b"\x01", 1, 0)
    old.add(b"cmd", 2, 4)
    old.setCurrentTerm(4, "127.0.0.1:2382")
    old._destroy()
    j = DurableJournal(path)
    try:
        assert [j[i] for i in range(len(j))] == [(b"\x01", 1, 0), (b"cmd", 2, 4)]
        assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (4, "127.0.0.1:2382")
        assert path.read_bytes().startswith(MAGIC)
    finally:
        j.close()


def test_an_unknown_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"something else entirely")
    with pytest.raises(ValueError, match="not a raftorch journal"):
        DurableJournal(path)


def test_term_and_vote_are_synced_with_their_directory_before_set_current_term_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = DurableJournal(tmp_path / "raft.journal")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    try:
        j.setCurrentTerm(7, "127.0.0.1:2384")
        # The new file's content, then the directory holding the rename.
        assert synced == [str(tmp_path / "raft.journal.state.tmp"), str(tmp_path)]
    finally:
        monkeypatch.undo()
        j.close()
