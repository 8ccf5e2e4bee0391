"""The replicated store across three real master processes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from raftorch.client import Compare, Put, WatchEvent
from raftorch.errors import RaftorchError
from raftorch.local.masters import LocalMasters

pytestmark = pytest.mark.processes


def test_put_through_any_master_is_read_from_every_master(masters: LocalMasters) -> None:
    names = list(masters.masters)
    for name in names:
        with masters.client([name]) as c:
            c.put(f"from/{name}", name.encode())
    for name in names:
        with masters.client([name]) as c:
            got = {kv.key: kv.value for kv in c.get("from/", prefix=True).kvs}
            assert got == {f"from/{n}": n.encode() for n in names}
            # A serializable read on each replica converges to the same data too.
            deadline = time.monotonic() + 10
            while len(c.get("from/", prefix=True, serializable=True).kvs) < len(names):
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_watch_from_revision_sees_every_later_change_once_in_order(masters: LocalMasters) -> None:
    with masters.client() as c:
        start = c.put("w/seed", b"0").revision
        expected: list[tuple[str, str, int]] = []
        for i in range(30):
            if i % 7 == 6:
                rev = c.delete(f"w/k{i - 1}").revision
                expected.append(("DELETE", f"w/k{i - 1}", rev))
            else:
                rev = c.put(f"w/k{i}", str(i).encode()).revision
                expected.append(("PUT", f"w/k{i}", rev))
        seen: list[WatchEvent] = []
        # Watch from every master: each must replay the same history.
        for name in masters.masters:
            with masters.client([name]) as wc:
                stream = wc.watch("w/k", prefix=True, start_revision=start)
                seen = []
                for event in stream:
                    seen.append(event)
                    if len(seen) == len(expected):
                        break
                stream.close()
            assert [(e.type, e.kv.key, e.revision) for e in seen] == expected


def test_watch_resumes_on_another_master_without_gaps_or_duplicates(masters: LocalMasters) -> None:
    leader = masters.leader()
    follower = next(n for n in masters.masters if n != leader)
    with masters.client() as writer, masters.client([follower, leader]) as wc:
        start = writer.put("r/seed", b"x").revision
        stream = wc.watch("r/", prefix=True, start_revision=start + 1)
        got: list[int] = []
        done = threading.Event()

        def consume() -> None:
            for event in stream:
                got.append(int(event.kv.value))
                if len(got) == 40:
                    break
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        for i in range(20):
            writer.put(f"r/{i}", str(i).encode())
        masters.kill(follower)
        for i in range(20, 40):
            writer.put(f"r/{i}", str(i).encode())
        assert done.wait(30)
        stream.close()
        t.join(5)
        assert got == list(range(40))


def test_leader_sigkill_during_writes_loses_no_acknowledged_write(masters: LocalMasters) -> None:
    leader = masters.leader()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def writer(wid: int) -> None:
        with masters.client(retry_for=20.0) as c:
            i = 0
            while not stop.is_set():
                key = f"load/{wid}/{i}"
                try:
                    c.put(key, key.encode())
                except RaftorchError as err:
                    errors.append(str(err))
                    continue
                with lock:
                    acked.append(key)
                i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before_kill = len(acked)
    masters.kill(leader)
    new_leader = masters.wait_ready()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert new_leader != leader
    assert len(acked) > before_kill, "writes did not resume on the survivors"
    survivors = [n for n in masters.masters if n != leader]
    with masters.client(survivors) as c:
        stored = {kv.key for kv in c.get("load/", prefix=True).kvs}
    assert set(acked) <= stored, f"lost {len(set(acked) - stored)} acknowledged writes"
    # The killed master, restarted, catches up with everything.
    masters.start(leader)
    with masters.client([leader]) as c:
        deadline = time.monotonic() + 30
        while True:
            try:
                mine = {kv.key for kv in c.get("load/", prefix=True, serializable=True).kvs}
            except RaftorchError:
                mine = set()
            if mine == stored:
                break
            assert time.monotonic() < deadline, f"restarted master has {len(mine)} of {len(stored)} keys"
            time.sleep(0.2)


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sigkill-after-snapshots"])
def test_restart_of_all_masters_keeps_every_key_and_the_revision(tmp_path: Path, how: str) -> None:
    # Small logs make the masters snapshot (in a forked child) and truncate their journals.
    extra = ["--compaction-entries", "50"] if how.endswith("snapshots") else []
    masters = LocalMasters(tmp_path / "masters", extra_args=extra)
    masters.start()
    try:
        masters.wait_ready()
        _restart_keeps_everything(masters, how)
    finally:
        masters.kill()


def _restart_keeps_everything(masters: LocalMasters, how: str) -> None:
    with masters.client() as c:
        lease = c.lease_grant(600)
        for i in range(200):
            c.put(f"keep/{i:03}", f"v{i}".encode())
        c.put("keep/leased", b"l", lease=lease.id)
        deleted_at = c.delete("keep/000").revision
        if how.endswith("snapshots"):
            deadline = time.monotonic() + 30
            while not all((m.data_dir / "raft.dump").exists() for m in masters.masters.values()):
                assert time.monotonic() < deadline, "no master wrote a snapshot"
                c.put("keep/filler", b"x" * 10)
        before = c.get("keep/", prefix=True)
    if how.startswith("sigkill"):
        masters.kill()
    else:
        masters.stop()
    masters.start()
    masters.wait_ready()
    with masters.client() as c:
        after = c.get("keep/", prefix=True)
        assert after.kvs == before.kvs
        assert after.revision >= before.revision
        # History survives too: a past revision still reads as it did.
        assert c.get("keep/000", revision=deleted_at - 1).kvs[0].value == b"v0"
        assert c.lease_time_to_live(lease.id).granted_ttl == 600


def test_concurrent_compare_and_swap_counter(masters: LocalMasters) -> None:
    with masters.client() as c:
        c.put("counter", b"0")
    successes = 0
    lock = threading.Lock()

    def increment() -> None:
        nonlocal successes
        with masters.client() as c:
            current = c.get_one("counter")
            assert current is not None
            value = int(current.value)
            result = c.txn([Compare("counter", "mod", "==", current.mod_revision)],
                           success=[Put("counter", str(value + 1).encode())])
            if result.succeeded:
                with lock:
                    successes += 1

    threads = [threading.Thread(target=increment) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with masters.client() as c:
        final = c.get_one("counter")
    assert final is not None
    assert successes >= 1
    assert int(final.value) == successes


def test_lease_keys_vanish_after_keepalives_stop_and_watchers_see_it(masters: LocalMasters) -> None:
    leader = masters.leader()
    follower = next(n for n in masters.masters if n != leader)
    with masters.client([follower]) as c:
        lease = c.lease_grant(2)
        c.put("lease/a", b"1", lease=lease.id)
        rev = c.put("lease/b", b"2", lease=lease.id).revision
        # Keep-alives sent to a follower keep the lease alive well past its TTL.
        until = time.monotonic() + 4
        while time.monotonic() < until:
            assert c.lease_keep_alive(lease.id) == 2
            time.sleep(0.5)
        assert len(c.get("lease/", prefix=True).kvs) == 2
        ttl = c.lease_time_to_live(lease.id, keys=True)
        assert ttl.keys == ["lease/a", "lease/b"]
        stream = c.watch("lease/", prefix=True, start_revision=rev + 1)
        last_keepalive = time.monotonic()
        deletes: list[str] = []
        for event in stream:
            assert event.type == "DELETE"
            deletes.append(event.kv.key)
            if len(deletes) == 2:
                break
        gone_after = time.monotonic() - last_keepalive
        stream.close()
        assert sorted(deletes) == ["lease/a", "lease/b"]
        assert gone_after <= 2 + 1, f"keys lived {gone_after:.2f}s after the last keep-alive (TTL 2s)"
        assert c.get("lease/", prefix=True).kvs == []
        assert c.lease_time_to_live(lease.id).ttl == -1
