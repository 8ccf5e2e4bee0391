"""The store replica: the state machine kept in step with the other masters by pysyncobj.

What pysyncobj is told and why (measured on this kind of machine, see DESIGN.md):
- no append batching, 0.15-0.4 s election timeouts, 0.04 s append period: commits in ~ms;
- a ping between every pair of peers, since pysyncobj drops links idle for 3.5 s and an
  election then waits for a reconnect;
- the peer port encrypted and authenticated with the cluster secret: its messages are pickles;
- journal and dump files together (a journal alone lost every key on restart);
- only bytes go into the log: protobuf CommandBatch records, decoded by the state machine.

Group commit: commands submitted while earlier log entries are in flight are gathered into one
entry, since pysyncobj's cost is per entry. A linearizable read waits for the next entry to
be applied locally (a read barrier), so it sees every write acknowledged before it started.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysyncobj.tcp_connection
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from raftorch.api.v1 import store_pb2
from raftorch.errors import NotLeader, Unavailable, UnknownOutcome
from raftorch.store.machine import BATCH_FORMAT, StateMachine
from raftorch.store.read_index import ReadIndexTracker
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


class PeerCipher:
    """Authenticated encryption of Raft peer messages with a key derived from the cluster secret.

    Speaks the interface pysyncobj's transport expects of its encryptor, with AES-GCM instead of
    Fernet (a tenth of the CPU per message), and logs when a peer's message fails
    authentication: pysyncobj drops such connections silently, and an operator needs to learn
    that a master was started with the wrong cluster secret."""

    _SALT = b"raftorch-peer-v1"

    def __init__(self, secret: str) -> None:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=self._SALT, iterations=200_000)
        self._aead = AESGCM(kdf.derive(secret.encode()))
        self._last_report = 0.0

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        stamp = struct.pack(">Q", timestamp)
        nonce = os.urandom(12)
        return stamp + nonce + self._aead.encrypt(nonce, data, stamp)

    def encrypt(self, data: bytes) -> bytes:
        return self.encrypt_at_time(data, int(time.monotonic()))

    def extract_timestamp(self, token: bytes) -> int:
        if len(token) < 8 + 12 + 16:
            self._report()
            raise InvalidTag()
        return int(struct.unpack(">Q", token[:8])[0])

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._aead.decrypt(token[8:20], token[20:], token[:8])
        except InvalidTag:
            self._report()
            raise

    def report_refused(self) -> None:
        self._report("a peer closed the connection during the encrypted handshake: the masters "
                     "probably do not share the same cluster secret (check --secret-file on every master)")

    def _report(self, reason: str = "a peer's message failed authentication: the masters do not share the "
                                     "same cluster secret (check --secret-file on every master)") -> None:
        now = time.monotonic()
        if now - self._last_report > 5.0:
            self._last_report = now
            log.error("peer_auth_failed", reason=reason)


class _Transport(TCPTransport):  # type: ignore[misc]
    def __init__(self, syncObj: SyncObj, selfNode: Any, otherNodes: Any) -> None:
        # Swap the cipher in before any connection object copies it.
        syncObj._SyncObj__encryptor = PeerCipher(syncObj.conf.password)
        self._reads: ReadIndexTracker = syncObj._replica.reads
        self._handshaking: set[Any] = set()
        super().__init__(syncObj, selfNode, otherNodes)

    # A peer that hangs up after our half of the encrypted handshake could not read it: the
    # side with the wrong secret learns it this way (the other side logs a failed message).
    def _onOutgoingConnected(self, conn: Any) -> None:
        self._handshaking.add(conn)
        super()._onOutgoingConnected(conn)

    def _onOutgoingMessageReceived(self, conn: Any, message: Any) -> None:
        self._handshaking.discard(conn)
        super()._onOutgoingMessageReceived(conn, message)

    def _onDisconnected(self, conn: Any) -> None:
        if conn in self._handshaking:
            self._handshaking.discard(conn)
            cipher = self._syncObj.encryptor
            if isinstance(cipher, PeerCipher):
                cipher.report_refused()
        super()._onDisconnected(conn)

    def send(self, node: Any, message: Any) -> None:
        super().send(node, message)
        if isinstance(message, dict) and message.get("type") == "append_entries":
            self._reads.on_sent(node)


class _NoCompression:
    """Peer messages are small and travel a LAN: zlib cost more CPU per commit than it saved."""

    @staticmethod
    def compress(data: bytes, _level: int = 0) -> bytes:
        return data

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return data


pysyncobj.tcp_connection.zlib = _NoCompression


class _RaftNode(SyncObj):  # type: ignore[misc]
    def __init__(self, replica: RaftReplica, self_addr: str, others: list[str], conf: SyncObjConf) -> None:
        self._replica = replica
        super().__init__(self_addr, others, conf, transportClass=_Transport)

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> list[store_pb2.CommandResult]:
        return self._replica._apply(data)

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """pysyncobj moves a follower's next index back when an older acknowledgement arrives
        after newer entries were sent (pipelining), then resends entries the follower has.
        Handle acknowledgements here so the next index only moves back on a real reset."""
        if isinstance(message, dict) and message.get("type") == "next_node_idx" and self._isLeader():
            self._replica.reads.on_answer(node)
            match = self._SyncObj__raftMatchIndex
            nxt = self._SyncObj__raftNextIndex
            if node in match:
                acked = message["next_node_idx"]
                if message["reset"]:
                    nxt[node] = acked
                if message["success"] and match[node] < acked - 1:
                    match[node] = acked - 1
                    nxt[node] = max(nxt[node], acked)
                self._SyncObj__lastResponseTime[node] = time.monotonic()
                return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """Load the snapshot, keeping the journal entries after it.

        pysyncobj clears the journal unless its first two entries are the snapshot's last two.
        A snapshot written by the forked child is renamed into place before the journal is
        truncated; a crash in between left a journal that starts earlier, and pysyncobj threw
        away every entry after the snapshot, acknowledged writes included. Here the journal is
        kept from the snapshot's entries on whenever it holds them (same index and term: by
        Raft's log matching, everything before them is what the snapshot contains)."""
        try:
            _, last, previous, _cluster = self._SyncObj__serializer.deserialize()
            journal = self._SyncObj__raftLog
            keep = False
            pos = 0
            if not clearJournal and len(journal) >= 2:
                pos = previous[1] - journal[0][1]
                keep = (pos >= 0 and pos + 1 < len(journal)
                        and tuple(journal[pos][1:]) == tuple(previous[1:])
                        and tuple(journal[pos + 1][1:]) == tuple(last[1:]))
            if keep:
                if pos > 0:
                    journal.deleteEntriesTo(pos)
            else:
                journal.clear()
                journal.add(*previous)
                journal.add(*last)
            self._SyncObj__raftLastApplied = last[1]
            current = journal[len(journal) - 1][1]
            commit: int = getattr(self, "_SyncObj__raftCommitIndex")  # noqa: B009 - pysyncobj's private field
            if commit > current:
                self._SyncObj__raftCommitIndex = current
                journal.setRaftCommitIndex(current)
            self._SyncObj__onSetCodeVersion(0)
        except Exception:
            log.exception("snapshot_load_failed")

    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:
        self._replica.reads.on_disconnect(node)
        SyncObj._SyncObj__onNodeDisconnected(self, node)

    def request_heartbeat(self) -> None:
        """Make the Raft thread send append-entries to every follower now (any thread)."""
        self._SyncObj__newAppendEntriesTime = 0
        self._SyncObj__pipeNotifier.notify()

    def send_pings(self) -> None:
        transport = self._SyncObj__transport
        for node in self.otherNodes:
            if self.isNodeConnected(node):
                transport.send(node, {"type": "ping"})


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
        data_dir.mkdir(parents=True, exist_ok=True)
        self._dump_file = data_dir / "raft.dump"
        self._snapshot_pid = 0
        conf = SyncObjConf(
            password=secret,
            appendEntriesUseBatch=False,
            raftMinTimeout=settings.election_min,
            raftMaxTimeout=settings.election_max,
            appendEntriesPeriod=settings.append_period,
            leaderFallbackTimeout=settings.leader_fallback,
            connectionRetryTime=settings.connection_retry,
            journalFile=str(data_dir / "raft.journal"),
            fullDumpFile=str(self._dump_file),
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._snapshot_state,
            logCompactionMinTime=settings.log_compaction_seconds,
            logCompactionMinEntries=settings.log_compaction_entries,
            appendEntriesBatchSizeBytes=8 * 1024 * 1024,
            sendBufferSize=2**20,
            recvBufferSize=2**20,
            dynamicMembershipChange=False,
            onStateChanged=self._state_changed,
            commandsWaitLeader=True,
        )
        self._node = _RaftNode(self, peer_addr, sorted(self.peers.values()), conf)
        self._node.addOnTickCallback(self._on_tick)

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
                sub.future.set_result(next(it) if sub.command is not None else None)
            return
        if err in _RETRYABLE:
            exc: Exception = NotLeader(f"not applied: {_RETRYABLE[err]}; retry")
        else:
            exc = UnknownOutcome("leader changed before the write was confirmed; it may have been applied")
        for sub in taken:
            if not sub.future.done():
                sub.future.set_exception(exc)

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
            sub.future.set_exception(Unavailable("this master is shutting down"))
        self._node.destroy()
        deadline = time.monotonic() + 5
        while self._node.tick_thread_alive() if hasattr(self._node, "tick_thread_alive") else False:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
