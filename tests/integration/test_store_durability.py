"""Durability and the Raft peer port, on real replicas.

- Every acknowledged write is in a synced part of the journal of a majority of replicas.
- A real master's threads call fdatasync for the puts it acknowledges (strace).
- The peer port listens on the configured address only, refuses oversized frames before
  reading them, closes unauthenticated connections on their first bad frame (and silent ones
  after the handshake timeout): garbage and a 2 GiB length header sent to the leader change
  neither the leader nor the term.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.errors import RaftorchError
from raftorch.local.masters import LocalMasters, free_ports
from raftorch.store.journal import decode_records
from raftorch.store.replica import RaftReplica, RaftSettings

WAIT = 30.0


def wait_until(predicate: object, what: str, timeout: float = WAIT) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- acknowledged means synced on a majority (in-process replicas, instrumented sync) ----------


class SyncSpy:
    """Records how many bytes of a replica's journal file are known to be on disk.

    The file size is read before the real fdatasync, so it never overstates what the sync
    covered. The sync is slowed down so that an acknowledgement sent before its sync finishes
    would be seen."""

    def __init__(self) -> None:
        self.durable_bytes = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.005)
        os.fdatasync(fd)
        with self._lock:
            self.calls += 1
            self.durable_bytes = max(self.durable_bytes, size)


def record_end(journal_file: Path, marker: bytes) -> int | None:
    """Where the record holding `marker` ends in the journal file, if it is there."""
    data = journal_file.read_bytes()
    entries, offsets, _ = decode_records(data)
    for (command, _, _), offset in zip(entries, offsets, strict=True):
        if marker in command:
            return offset + 24 + len(command)
    return None


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[dict[str, RaftReplica], dict[str, SyncSpy]]]:
    ports = free_ports(3)
    addrs = {f"r{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}
    spies = {name: SyncSpy() for name in addrs}
    started: dict[str, RaftReplica] = {}
    try:
        for name, addr in addrs.items():
            peers = {n: a for n, a in addrs.items() if n != name}
            started[name] = RaftReplica(name, addr, peers, tmp_path / name, "s" * 32, RaftSettings(),
                                        sync=spies[name])
        yield started, spies
    finally:
        for r in started.values():
            r.stop()


def test_a_write_is_acknowledged_only_once_synced_on_a_majority(
        replicas: tuple[dict[str, RaftReplica], dict[str, SyncSpy]], tmp_path: Path) -> None:
    nodes, spies = replicas
    wait_until(lambda: any(r.is_leader for r in nodes.values()), "a leader")
    leader = next(r for r in nodes.values() if r.is_leader)
    for i in range(40):
        marker = f"durable-{i:04d}-{random.random()}".encode()
        put = kv_pb2.PutRequest(key=f"d/{i}", value=marker)
        leader.submit(store_pb2.Command(request_id=f"req-{i}", put=put)).result(WAIT)
        # At the moment the write is acknowledged, its entry must already be within the synced
        # part of the journal on at least two of the three replicas.
        on_disk = []
        for name in nodes:
            end = record_end(tmp_path / name / "raft.journal", marker)
            if end is not None and spies[name].durable_bytes >= end:
                on_disk.append(name)
        assert len(on_disk) >= 2, f"write {i} acknowledged while synced only on {on_disk}"
    assert all(s.calls > 0 for s in spies.values())


def test_followers_apply_a_lone_write_without_another_one_to_carry_the_commit_index(
        replicas: tuple[dict[str, RaftReplica], dict[str, SyncSpy]]) -> None:
    # The leader holds back the commit notice for the next proposal to carry it; with no next
    # proposal it must still go out on its own.
    nodes, _ = replicas
    wait_until(lambda: any(r.is_leader for r in nodes.values()), "a leader")
    leader = next(r for r in nodes.values() if r.is_leader)
    put = kv_pb2.PutRequest(key="lone", value=b"write")
    leader.submit(store_pb2.Command(request_id="lone-1", put=put)).result(WAIT)
    applied = leader.status().applied_index
    for name, replica in nodes.items():
        wait_until(lambda r=replica: r.status().applied_index >= applied, f"{name} to apply the write")
        with replica.reading() as machine:
            assert machine.range(kv_pb2.RangeRequest(key="lone")).kvs[0].value == b"write"


def test_a_write_whose_waiter_gave_up_is_applied_once_and_later_writes_complete(
        replicas: tuple[dict[str, RaftReplica], dict[str, SyncSpy]]) -> None:
    # A gRPC handler that times out stops waiting; the command may still commit, and the Raft
    # thread must then resolve the abandoned future without failing the rest of its batch.
    nodes, _ = replicas
    wait_until(lambda: any(r.is_leader for r in nodes.values()), "a leader")
    leader = next(r for r in nodes.values() if r.is_leader)
    abandoned = [leader.submit(store_pb2.Command(request_id=f"gone-{i}",
                                                 put=kv_pb2.PutRequest(key=f"gone/{i}", value=b"v")))
                 for i in range(20)]
    for future in abandoned:
        future.cancel()
    later = leader.submit(store_pb2.Command(request_id="later", put=kv_pb2.PutRequest(key="later", value=b"v")))
    assert later.result(WAIT).WhichOneof("result") == "put"
    revision = leader.machine.revision
    for name, replica in nodes.items():
        wait_until(lambda r=replica: r.machine.revision >= revision, f"{name} to catch up")
        assert replica.machine.revision == revision, f"{name} applied a different number of writes"
        with replica.reading() as machine:
            assert len(machine.range(kv_pb2.RangeRequest(key="gone/", prefix=True)).kvs) == 20


# -- a real master syncs what it acknowledges (strace) ------------------------------------


def _traced(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for tid in tasks:
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        if "TracerPid:\t0\n" in status:
            return False
    return True


def _strace(pid: int, out: Path) -> subprocess.Popen[bytes]:
    errors = out.with_suffix(".err")
    with errors.open("wb") as err:
        proc = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,msync", "-o", str(out),
                                 "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + WAIT
    while not _traced(pid):
        if proc.poll() is not None:
            pytest.skip(f"strace cannot attach here: {errors.read_text().strip()}")
        assert time.monotonic() < deadline, "strace did not attach"
        time.sleep(0.05)
    return proc


def _count_syncs(out: Path) -> int:
    return sum(1 for line in out.read_text().splitlines() if "fdatasync(" in line or "fsync(" in line)


@pytest.mark.processes
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("unsafe", [False, True], ids=["fsync", "unsafe-no-fsync"])
def test_a_real_master_syncs_the_puts_it_acknowledges(tmp_path: Path, unsafe: bool) -> None:
    cluster = LocalMasters(tmp_path / "masters", extra_args=["--unsafe-no-fsync"] if unsafe else [])
    cluster.start()
    tracers: list[subprocess.Popen[bytes]] = []
    try:
        leader = cluster.wait_ready()
        follower = next(n for n in cluster.masters if n != leader)
        outs = {name: tmp_path / f"strace-{name}.txt" for name in (leader, follower)}
        for name, out in outs.items():
            proc = cluster.masters[name].proc
            assert proc is not None
            tracers.append(_strace(proc.pid, out))
        with cluster.client() as c:
            for i in range(30):
                c.put(f"synced/{i}", b"v")
        for t in tracers:
            t.send_signal(signal.SIGINT)
            t.wait(WAIT)
        syncs = {name: _count_syncs(out) for name, out in outs.items()}
        if unsafe:
            assert syncs == {leader: 0, follower: 0}
        else:
            # Each put is acknowledged once synced on 2 of 3 masters, so on the leader or the traced
            # follower; and the next put starts after that sync: 30 puts need 30 distinct syncs.
            assert syncs[leader] + syncs[follower] >= 30, syncs
    finally:
        for t in tracers:
            if t.poll() is None:
                t.kill()
                t.wait()
        cluster.kill()


# -- the peer port -------------------------------------------------------------------------


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


@pytest.mark.processes
def test_the_peer_port_listens_only_on_the_configured_address(masters: LocalMasters) -> None:
    m = next(iter(masters.masters.values()))
    port = _port(m.peer_addr)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # Another loopback address of this host: reachable if the port listened on 0.0.0.0.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=5):
        pass


def _closed_by_peer(sock: socket.socket) -> bool:
    """Blocks until the master closes the connection; True once it has."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


@pytest.mark.processes
def test_garbage_and_a_2_gib_frame_to_the_leaders_peer_port_change_nothing(masters: LocalMasters) -> None:
    leader = masters.leader()
    with masters.client() as c:
        for i in range(20):
            c.put(f"before/{i}", str(i).encode())
        term = c.member_status(masters.masters[leader].client_addr).term
    port = _port(masters.masters[leader].peer_addr)
    rng = random.Random(1234)
    socks: list[socket.socket] = []
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            if i % 2:
                s.sendall(rng.randbytes(4096))  # random header and body
            else:
                body = rng.randbytes(300)  # a plausible length, a body that fails authentication
                s.sendall(struct.pack("i", len(body)) + body)
            socks.append(s)
        # Silent, and a frame that never completes: closed once the handshake times out.
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
        partial = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        partial.sendall(struct.pack("i", 100) + b"x" * 10)
        socks.append(partial)
        # 2 GiB announced (read as a negative signed length) and 2^31-1 announced, each followed
        # by 64 MiB that must not be buffered.
        for header in (struct.pack("<I", 2**31), struct.pack("i", 2**31 - 1)):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            socks.append(s)
            s.sendall(header)
            try:
                for _ in range(64):
                    s.sendall(b"\0" * 2**20)
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed by the master, as it should
        for s in socks:
            assert _closed_by_peer(s)
    finally:
        for s in socks:
            s.close()
    with masters.client() as c:
        c.put("after", b"1")
        statuses = [c.member_status(m.client_addr) for m in masters.masters.values()]
        assert {s.leader for s in statuses} == {leader}
        assert {s.term for s in statuses} == {term}, "an election happened"
        got = {kv.key: kv.value for kv in c.get("before/", prefix=True).kvs}
        assert got == {f"before/{i}": str(i).encode() for i in range(20)}
    log = masters.masters[leader].log_path.read_text()
    assert "peer_frame_refused" in log


# -- a follower far behind is sent a snapshot, keeps it across a restart ------------------------


def _serializable_keys(cluster: LocalMasters, name: str, prefix: str) -> set[str]:
    with cluster.client([name], timeout=2.0, retry_for=2.0) as c:
        try:
            return {kv.key for kv in c.get(prefix, prefix=True, serializable=True).kvs}
        except RaftorchError:
            return set()


@pytest.mark.processes
def test_a_follower_behind_the_snapshot_catches_up_and_keeps_it_after_sigkill(tmp_path: Path) -> None:
    cluster = LocalMasters(tmp_path / "masters", extra_args=["--compaction-entries", "50"])
    cluster.start()
    try:
        leader = cluster.wait_ready()
        lagging = next(n for n in cluster.masters if n != leader)
        cluster.kill(lagging)
        with cluster.client([n for n in cluster.masters if n != lagging]) as c:
            for i in range(300):
                c.put(f"snap/{i:03}", b"v")
        expected = {f"snap/{i:03}" for i in range(300)}
        wait_until(lambda: (cluster.masters[leader].data_dir / "raft.dump").exists(), "a snapshot on the leader")
        cluster.start(lagging)
        wait_until(lambda: _serializable_keys(cluster, lagging, "snap/") == expected, "the follower to catch up")
        cluster.kill(lagging)
        cluster.start(lagging)
        wait_until(lambda: _serializable_keys(cluster, lagging, "snap/") == expected,
                   "the follower to come back with every key")
    finally:
        cluster.kill()
