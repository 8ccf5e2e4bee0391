"""The store replica: the state machine kept in step with the other masters by pysyncobj.

What pysyncobj is told and why (measured on this kind of machine, see DESIGN.md):
- no append batching, 0.15-0.4 s election timeouts (up to 1-2 s while a silent leader's host
  still answers, and pre-vote: store/election.py), 0.04 s append period: commits in ~ms;
- a ping between every pair of peers, since pysyncobj drops links idle for 3.5 s and an
  election then waits for a reconnect;
- the peer port bound to exactly the configured address, encrypted and authenticated with the
  cluster secret (its messages are pickles), frames bounded (store/peer_transport.py);
- journal and dump files together (a journal alone lost every key on restart);
- the journal is raftorch's own (store/journal.py), synced by a background thread: the leader
  counts its own copy of an entry toward a majority only once synced, and a follower
  acknowledges entries only once synced, so an acknowledged write is on disk on a majority;
- only bytes go into the log: protobuf CommandBatch records, decoded by the state machine.

Group commit: commands submitted while earlier log entries are in flight are gathered into one
entry, since pysyncobj's cost is per entry. A linearizable read waits for the next entry to
be applied locally (a read barrier), so it sees every write acknowledged before it started.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
import structlog
from pysyncobj import FAIL_REASON, SyncObjConf
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from raftorch.api.v1 import store_pb2
from raftorch.errors import NotLeader, Unavailable, UnknownOutcome
from raftorch.store.election import ElectionCounts
from raftorch.store.journal import DurableJournal, sync_directory
from raftorch.store.machine import BATCH_FORMAT, StateMachine
from raftorch.store.peer_transport import APPEND_BATCH_BYTES
from raftorch.store.raft_node import RaftNode
from raftorch.store.read_index import ReadIndexTracker, fail, resolve
from raftorch.store.snapshot import dump_state, load_state
from raftorch.store.watch import WatchHub

log = structlog.get_logger("raftorch.store")

_NOT_SERIALIZING: int = SERIALIZER_STATE.NOT_SERIALIZING
_SERIALIZING: int = SERIALIZER_STATE.SERIALIZING
_SUCCESS: int = SERIALIZER_STATE.SUCCESS
_FAILED: int = SERIALIZER_STATE.FAILED

MAX_INFLIGHT_ENTRIES = 1
# Big entries hold Raft's thread (apply + send) long enough to trigger elections.
MAX_ENTRY_BYTES = 256 * 1024
MAX_ENTRY_COMMANDS = 500
PING_INTERVAL = 0.5
# An entry whose outcome pysyncobj never reports frees its slot after this long.
INFLIGHT_TIMEOUT = 10.0
# A journal sync this slow is logged: followers hold their acknowledgements until it ends.
SLOW_SYNC_LOG = 0.25

_RETRYABLE = {
    FAIL_REASON.QUEUE_FULL: "the leader's queue is full",
    FAIL_REASON.MISSING_LEADER: "no leader elected",
    FAIL_REASON.NOT_LEADER: "the contacted master is not the leader",
    FAIL_REASON.DISCARDED: "the entry was replaced by a new leader",
    FAIL_REASON.REQUEST_DENIED: "the leader denied the request",
}


@dataclass(frozen=True, slots=True)
class RaftSettings:
    election_min: float = 0.15
    election_max: float = 0.4
    append_period: float = 0.04
    leader_fallback: float = 1.0
    connection_retry: float = 0.3
    log_compaction_entries: int = 20_000
    log_compaction_seconds: float = 300.0
    # Sync the journal before a write counts as stored (off: the `unsafe-no-fsync` setting).
    fsync: bool = True
    # Ask peers before starting an election (store/election.py).
    pre_vote: bool = True
    # How long a follower waits for a silent leader whose host still answers (etcd's 1-2 s);
    # election_min/max apply otherwise (store/election.py).
    election_min_connected: float = 1.0
    election_max_connected: float = 2.0


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    role: str
    term: int
    commit_index: int
    applied_index: int
    leader_peer_addr: str
    revision: int
    has_quorum: bool


class _SnapshotInProgress(Exception):
    """Raised to pysyncobj's serializer: the snapshot is being written by a child process."""


# pysyncobj creates its journal inside SyncObj.__init__ from the configured path; the replica
# registers its DurableJournal under that path first and this hands it over.
_journals: dict[str, DurableJournal] = {}
_pysyncobj_create_journal = pysyncobj.syncobj.createJournal


def _create_journal(path: str | None) -> Any:
    journal = _journals.pop(path, None) if path is not None else None
    return journal if journal is not None else _pysyncobj_create_journal(path)


pysyncobj.syncobj.createJournal = _create_journal


def _entry(e: store_pb2.LogEntry) -> tuple[bytes, int, int]:
    return e.command, e.index, e.term


class _Submission:
    __slots__ = ("command", "future")

    def __init__(self, command: store_pb2.Command | None, future: Future[Any]) -> None:
        self.command = command
        self.future = future


class RaftReplica:
    """A store replica; one per master."""

    def __init__(
        self,
        name: str,
        peer_addr: str,
        peers: dict[str, str],
        data_dir: Path,
        secret: str,
        settings: RaftSettings | None = None,
        on_role_change: Callable[[bool, int], None] | None = None,
        sync: Callable[[int], None] = os.fdatasync,
    ) -> None:
        if not secret:
            raise ValueError("a cluster secret is required: peer traffic is always encrypted")
        settings = settings or RaftSettings()
        self.name = name
        self.peer_addr = peer_addr
        self.peers = dict(peers)
        self.machine = StateMachine(name)
        self.lock = threading.RLock()
        self.hub = WatchHub(asynchronous=True)
        self._on_role_change = on_role_change
        self.reads = ReadIndexTracker()
        self._cond = threading.Lock()
        self._pending: deque[_Submission] = deque()
        self._inflight: dict[int, float] = {}
        self._batch_ids = 0
        self._stopped = False
        self._last_ping = 0.0
        # Observability: leader changes seen, and a hook told each entry's proposal-to-commit time.
        self.leader_changes = 0
        self._last_leader: object = None
        self.on_commit_latency: Callable[[float], None] | None = None
        self.on_fsync_latency: Callable[[float], None] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        self._dump_file = data_dir / "raft.dump"
        self._snapshot_pid = 0
        journal_path = data_dir / "raft.journal"
        self.journal = DurableJournal(journal_path, durable=settings.fsync, sync=self._timed_sync(sync))
        if not settings.fsync:
            log.warning("fsync_disabled", reason="unsafe-no-fsync is set: a power loss on a majority of "
                                                 "masters can lose acknowledged writes")
        conf = SyncObjConf(
            password=secret,
            appendEntriesUseBatch=False,
            raftMinTimeout=settings.election_min,
            raftMaxTimeout=settings.election_max,
            appendEntriesPeriod=settings.append_period,
            leaderFallbackTimeout=settings.leader_fallback,
            connectionRetryTime=settings.connection_retry,
            journalFile=str(journal_path),
            # Exactly the configured address: pysyncobj listens on every interface otherwise.
            bindAddress=peer_addr,
            fullDumpFile=str(self._dump_file),
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._snapshot_state,
            logCompactionMinTime=settings.log_compaction_seconds,
            logCompactionMinEntries=settings.log_compaction_entries,
            appendEntriesBatchSizeBytes=APPEND_BATCH_BYTES,
            sendBufferSize=2**20,
            recvBufferSize=2**20,
            dynamicMembershipChange=False,
            onStateChanged=self._state_changed,
            commandsWaitLeader=True,
        )
        _journals[str(journal_path)] = self.journal
        try:
            self._node = RaftNode(self, peer_addr, sorted(self.peers.values()), conf, self.journal,
                                   pre_vote=settings.pre_vote,
                                   connected_timeout=(settings.election_min_connected,
                                                      settings.election_max_connected))
        except BaseException:
            _journals.pop(str(journal_path), None)
            self.journal.close()
            raise
        self.journal.on_synced = self._node.wake
        self._node.addOnTickCallback(self._on_tick)

    def _timed_sync(self, sync: Callable[[int], None]) -> Callable[[int], None]:
        """The journal's sync, its time told to `on_fsync_latency` (the journal's sync thread)."""
        def timed(fd: int) -> None:
            started = time.perf_counter()
            sync(fd)
            took = time.perf_counter() - started
            if took > SLOW_SYNC_LOG:
                log.info("journal_sync_slow", ms=round(took * 1000, 1))
            hook = self.on_fsync_latency
            if hook is not None:
                hook(took)
        return timed

    # -- state access ---------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[StateMachine]:
        with self.lock:
            yield self.machine

    @property
    def is_leader(self) -> bool:
        return bool(self._node._isLeader())

    @property
    def term(self) -> int:
        return int(self._node.raftCurrentTerm)

    @property
    def leader_peer_addr(self) -> str:
        leader = self._node._getLeader()
        return str(leader.address) if leader is not None else ""

    @property
    def elections(self) -> ElectionCounts:
        """What this replica's election timer led to (counts since start)."""
        return self._node.elections

    def connected_peers(self) -> set[str]:
        """Peer addresses of the masters this one has a Raft connection to right now."""
        node = self._node
        return {str(n.address) for n in node.otherNodes if node.isNodeConnected(n)}

    def status(self) -> ReplicaStatus:
        node = self._node
        if node._isLeader():
            role = "leader"
        elif node._getLeader() is None and node.raftCurrentTerm > 0:
            role = "candidate"
        else:
            role = "follower"
        return ReplicaStatus(
            role=role,
            term=int(node.raftCurrentTerm),
            commit_index=int(node.raftCommitIndex),
            applied_index=int(node.raftLastApplied),
            leader_peer_addr=self.leader_peer_addr,
            revision=self.machine.revision,
            has_quorum=bool(node.hasQuorum),
        )

    # -- writes and barriers ------------------------------------------------------------

    def submit(self, command: store_pb2.Command) -> Future[store_pb2.CommandResult]:
        """Replicate one command; the future holds its result once applied here."""
        return self._enqueue(command)

    def barrier(self) -> Future[None]:
        """Resolves once a log entry started after this call is applied here."""
        return self._enqueue(None)

    def read_barrier(self) -> Future[None]:
        """Resolves once this replica may answer a linearizable read.

        On a leader whose term is fenced: ReadIndex, no log entry. Elsewhere: a log barrier."""
        term = self.term
        if self.is_leader and self.machine.fence_term == term:
            future = self.reads.add(term, int(self._node.raftCommitIndex), list(self._node.otherNodes))
            if self.reads.claim_round():
                self._node.request_heartbeat()
            return future
        return self.barrier()

    def _enqueue(self, command: store_pb2.Command | None) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            if self._stopped:
                future.set_exception(Unavailable("this master is shutting down"))
                return future
            self._pending.append(_Submission(command, future))
            batch = self._take_batch()
        if batch is not None:
            self._send(*batch)
        return future

    def _take_batch(self) -> tuple[int, list[_Submission]] | None:
        """Under the lock: gather pending submissions into one entry if a slot is free."""
        if not self._pending or self._stopped:
            return None
        now = time.monotonic()
        for batch_id, started in list(self._inflight.items()):
            if now - started > INFLIGHT_TIMEOUT:
                del self._inflight[batch_id]
        if len(self._inflight) >= MAX_INFLIGHT_ENTRIES:
            return None
        taken: list[_Submission] = []
        size = 0
        while self._pending and (not taken or (size < MAX_ENTRY_BYTES and len(taken) < MAX_ENTRY_COMMANDS)):
            sub = self._pending.popleft()
            size += sub.command.ByteSize() if sub.command is not None else 0
            taken.append(sub)
        self._batch_ids += 1
        self._inflight[self._batch_ids] = now
        return self._batch_ids, taken

    def _send(self, batch_id: int, taken: list[_Submission]) -> None:
        batch = store_pb2.CommandBatch(format=BATCH_FORMAT,
                                       commands=[s.command for s in taken if s.command is not None])
        self._node.apply_entry(batch.SerializeToString(),
                               callback=functools.partial(self._committed, batch_id, taken, time.perf_counter()))

    def _committed(self, batch_id: int, taken: list[_Submission], sent: float, results: Any, err: int) -> None:
        hook = self.on_commit_latency
        if hook is not None and err == FAIL_REASON.SUCCESS:
            hook(time.perf_counter() - sent)
        with self._cond:
            self._inflight.pop(batch_id, None)
            batch = self._take_batch()
        if batch is not None:
            # Queued behind the finished entry: pysyncobj picks it up in this same tick.
            self._send(*batch)
        if err == FAIL_REASON.SUCCESS:
            it = iter(results)
            for sub in taken:
                resolve(sub.future, next(it) if sub.command is not None else None)
            return
        if err in _RETRYABLE:
            exc: Exception = NotLeader(f"not applied: {_RETRYABLE[err]}; retry")
        else:
            exc = UnknownOutcome("leader changed before the write was confirmed; it may have been applied")
        for sub in taken:
            fail(sub.future, exc)

    # -- pysyncobj callbacks (its tick thread) -----------------------------------------

    def _apply(self, data: bytes) -> list[store_pb2.CommandResult]:
        with self.lock:
            results = self.machine.apply_batch(data)
            self.hub.publish(self.machine.take_changes(), self.machine.revision)
        return results

    def _state_changed(self, old: int, new: int) -> None:
        self.reads.on_term_change()
        if self._on_role_change is not None:
            leader = new == 2  # pysyncobj's _RAFT_STATE.LEADER
            self._on_role_change(leader, int(self._node.raftCurrentTerm) if hasattr(self, "_node") else 0)

    def _on_tick(self) -> None:
        self._node.release_acks()
        with self._cond:
            # Frees slots of entries whose outcome never came back.
            batch = self._take_batch()
        if batch is not None:
            self._send(*batch)
        node = self._node
        leader = node._getLeader()
        if leader != self._last_leader:
            if leader is not None:
                self.leader_changes += 1
            self._last_leader = leader
        self.reads.poll(node._isLeader(), node.raftCurrentTerm, node.raftLastApplied, len(node.otherNodes))
        now = time.monotonic()
        if now - self._last_ping >= PING_INTERVAL:
            self._last_ping = now
            self._node.send_pings()

    def _serialize(self, path: str, raft_data: Any) -> None:
        """Write a snapshot in a forked child, so the Raft thread never waits for it.

        The child inherits a copy-on-write image of the state at exactly the last applied
        entry (this runs on the thread that applies entries), writes the dump file beside the
        real one and renames it into place. pysyncobj would rename `path` itself when this
        returns; raising tells it the work goes on elsewhere, and `_snapshot_state` reports
        the child's outcome through pysyncobj's serializeChecker hook."""
        if self._snapshot_pid:
            raise _SnapshotInProgress()
        final = str(self._dump_file)
        pid = os.fork()
        if pid == 0:  # the child: write, then leave without running any parent cleanup
            code = 1
            try:
                self._write_snapshot(final + ".child", final, raft_data)
                code = 0
            finally:
                os._exit(code)
        self._snapshot_pid = pid
        raise _SnapshotInProgress()

    def _write_snapshot(self, tmp: str, final: str, raft_data: Any) -> None:
        last_applied, previous, cluster = raft_data
        snap = dump_state(self.machine)
        for target, entry in ((snap.last_applied, last_applied), (snap.previous, previous)):
            target.command, target.index, target.term = entry
        snap.cluster.extend(sorted(str(getattr(n, "address", n)) for n in cluster))
        with open(tmp, "wb") as f:
            f.write(snap.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        # Durable before pysyncobj drops the journal entries the snapshot replaces.
        sync_directory(Path(final).parent)

    def _snapshot_state(self) -> int:
        """pysyncobj's serializeChecker: the state of the snapshot child, if any."""
        if not self._snapshot_pid:
            return _NOT_SERIALIZING
        try:
            pid, status = os.waitpid(self._snapshot_pid, os.WNOHANG)
        except ChildProcessError:
            self._snapshot_pid = 0
            return _FAILED
        if pid == 0:
            return _SERIALIZING
        self._snapshot_pid = 0
        if os.waitstatus_to_exitcode(status) == 0:
            return _SUCCESS
        log.warning("snapshot_failed", exit_status=status)
        return _FAILED

    def _deserialize(self, path: str) -> tuple[Any, Any, Any]:
        if self.journal.durable:
            # A snapshot received from the leader was renamed into place unsynced; the journal
            # is cut down to it next, so it must be on disk first.
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            sync_directory(Path(path).parent)
        snap = store_pb2.Snapshot.FromString(Path(path).read_bytes())
        with self.lock:
            self.machine = StateMachine(self.name)
            load_state(self.machine, snap)
            # Changes inside the snapshot were never published: watchers must resume.
            self.hub.drop_all()
        return _entry(snap.last_applied), _entry(snap.previous), {TCPNode(a) for a in snap.cluster}

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            pending, self._pending = self._pending, deque()
        for sub in pending:
            fail(sub.future, Unavailable("this master is shutting down"))
        self._node.destroy()
        self.hub.close()
        deadline = time.monotonic() + 5
        while self._node.tick_thread_alive() if hasattr(self._node, "tick_thread_alive") else False:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.journal.close()
