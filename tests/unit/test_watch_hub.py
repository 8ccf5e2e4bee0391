"""WatchHub and Watcher: matching, delivery, overflow cut-off, drop_all."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import kv_pb2, store_pb2
from raftorch.store import watch as watch_module
from raftorch.store.memory import MemoryReplica
from raftorch.store.mvcc import Change, Version
from raftorch.store.watch import Watcher, WatchHub


class Inbox:
    """A notify callback that records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[kv_pb2.KeyEvent], int]] = []

    def __call__(self, events: list[kv_pb2.KeyEvent], revision: int) -> None:
        self.calls.append((events, revision))

    def keys(self) -> list[str]:
        return [event.kv.key for events, _ in self.calls for event in events]


def _watch(hub: WatchHub, key: str, prefix: bool = False, prev_kv: bool = False) -> tuple[Watcher, Inbox]:
    inbox = Inbox()
    watcher = Watcher(key, prefix, prev_kv, inbox)
    hub.add(watcher)
    return watcher, inbox


def _put(key: str, revision: int, value: bytes = b"v", prev: Version | None = None) -> Change:
    version = prev.version + 1 if prev else 1
    created = prev.create_revision if prev else revision
    return Change(Version(key, value, created, revision, version, 0), prev)


def _delete(prev: Version, revision: int) -> Change:
    return Change(Version(prev.key, None, 0, revision, 0, 0), prev)


def test_matches_exact_key_only() -> None:
    watcher = Watcher("a/b", False, False, Inbox())
    assert watcher.matches("a/b")
    assert not watcher.matches("a/bc")
    assert not watcher.matches("a")


def test_matches_prefix() -> None:
    watcher = Watcher("a/", True, False, Inbox())
    assert watcher.matches("a/")
    assert watcher.matches("a/b/c")
    assert not watcher.matches("a")
    assert not watcher.matches("b/a/")


def test_empty_prefix_matches_everything() -> None:
    assert Watcher("", True, False, Inbox()).matches("anything")


def test_add_assigns_distinct_ids_and_remove_is_idempotent() -> None:
    hub = WatchHub()
    first, _ = _watch(hub, "a")
    second, _ = _watch(hub, "b")
    assert first.id != second.id
    assert len(hub) == 2
    hub.remove(first)
    hub.remove(first)
    assert len(hub) == 1


def test_publish_delivers_only_matching_events_with_revision() -> None:
    hub = WatchHub()
    _, exact = _watch(hub, "a")
    _, prefix = _watch(hub, "a/", prefix=True)
    _, other = _watch(hub, "zzz")
    hub.publish([_put("a", 5), _put("a/1", 5), _put("ab", 5), _put("a/2", 5)], 5)
    assert exact.keys() == ["a"]
    assert prefix.keys() == ["a/1", "a/2"]
    assert other.calls == []
    assert [revision for _, revision in prefix.calls] == [5]


def test_publish_preserves_change_order_in_one_notification() -> None:
    hub = WatchHub()
    _, inbox = _watch(hub, "", prefix=True)
    first = _put("k", 3, b"1")
    hub.publish([first, _delete(first.kv, 3), _put("j", 3)], 3)
    ((events, _),) = inbox.calls
    assert [(e.type, e.kv.key) for e in events] == [
        (kv_pb2.KeyEvent.PUT, "k"), (kv_pb2.KeyEvent.DELETE, "k"), (kv_pb2.KeyEvent.PUT, "j")]


def test_publish_of_no_changes_notifies_nobody() -> None:
    hub = WatchHub()
    _, inbox = _watch(hub, "", prefix=True)
    hub.publish([], 9)
    assert inbox.calls == []


def test_prev_kv_only_when_asked() -> None:
    hub = WatchHub()
    _, without = _watch(hub, "k")
    _, with_prev = _watch(hub, "k", prev_kv=True)
    first = _put("k", 1, b"old")
    hub.publish([_put("k", 2, b"new", prev=first.kv)], 2)
    (plain,) = without.calls[0][0]
    (rich,) = with_prev.calls[0][0]
    assert not plain.HasField("prev_kv")
    assert rich.prev_kv.value == b"old"
    assert rich.kv.value == b"new"


def test_removed_watcher_gets_nothing() -> None:
    hub = WatchHub()
    watcher, inbox = _watch(hub, "k")
    hub.remove(watcher)
    hub.publish([_put("k", 1)], 1)
    assert inbox.calls == []


def test_backlog_grows_with_delivered_events_and_shrinks_when_consumed() -> None:
    hub = WatchHub()
    watcher, _ = _watch(hub, "", prefix=True)
    hub.publish([_put("a", 1), _put("b", 1)], 1)
    hub.publish([_put("c", 2)], 2)
    assert watcher.backlog == 3
    watcher.consumed(2)
    assert watcher.backlog == 1


def test_slow_watcher_is_cut_off_after_backlog_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "WATCHER_BACKLOG_BYTES", 10_000)
    hub = WatchHub()
    slow, _ = _watch(hub, "", prefix=True)
    fast, _ = _watch(hub, "", prefix=True)
    for revision in range(1, 4):
        hub.publish([_put(f"k{revision}", revision, b"x" * 3000)], revision)
        fast.consumed(1)
    assert not slow.overflowed and slow.backlog_bytes > 9000
    assert fast.backlog_bytes == 0
    hub.publish([_put("k4", 4, b"x" * 3000)], 4)
    assert slow.overflowed
    assert not fast.overflowed
    assert len(hub) == 1


def test_unmatched_events_do_not_count_towards_backlog() -> None:
    hub = WatchHub()
    watcher, _ = _watch(hub, "x")
    hub.publish([_put("a", 1), _put("x", 1)], 1)
    assert watcher.backlog == 1


def test_slow_watcher_is_cut_off_after_backlog_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "WATCHER_BACKLOG_LIMIT", 3)
    hub = WatchHub()
    slow, slow_inbox = _watch(hub, "", prefix=True)
    fast, fast_inbox = _watch(hub, "", prefix=True)
    for revision in range(1, 4):
        hub.publish([_put(f"k{revision}", revision)], revision)
        fast.consumed(1)
    assert not slow.overflowed
    assert slow.backlog == 3
    hub.publish([_put("k4", 4)], 4)
    assert slow.overflowed
    assert len(hub) == 1
    # The overflowing batch is still handed over; nothing after it.
    assert slow_inbox.keys() == ["k1", "k2", "k3", "k4"]
    hub.publish([_put("k5", 5)], 5)
    assert slow_inbox.keys() == ["k1", "k2", "k3", "k4"]
    assert fast_inbox.keys() == ["k1", "k2", "k3", "k4", "k5"]
    assert not fast.overflowed


def test_watcher_that_keeps_up_is_never_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "WATCHER_BACKLOG_LIMIT", 2)
    hub = WatchHub()
    watcher, inbox = _watch(hub, "k")
    for revision in range(1, 20):
        hub.publish([_put("k", revision)], revision)
        watcher.consumed(1)
    assert not watcher.overflowed
    assert len(inbox.calls) == 19


def test_overflowed_watcher_still_registered_is_skipped() -> None:
    hub = WatchHub()
    watcher, inbox = _watch(hub, "k")
    watcher.overflowed = True
    hub.publish([_put("k", 1)], 1)
    assert inbox.calls == []


def test_drop_all_ends_every_watch_with_empty_notification() -> None:
    hub = WatchHub()
    first, first_inbox = _watch(hub, "a")
    second, second_inbox = _watch(hub, "b", prefix=True)
    hub.drop_all()
    assert len(hub) == 0
    assert first.overflowed and second.overflowed
    assert first_inbox.calls == [([], 0)]
    assert second_inbox.calls == [([], 0)]
    hub.publish([_put("a", 1)], 1)
    assert first_inbox.calls == [([], 0)]


def test_memory_replica_publishes_applied_changes() -> None:
    replica = MemoryReplica()
    _, inbox = _watch(replica.hub, "k/", prefix=True)
    replica.submit(store_pb2.Command(put=kv_pb2.PutRequest(key="k/1", value=b"1")))
    replica.submit(store_pb2.Command(put=kv_pb2.PutRequest(key="other", value=b"1")))
    replica.submit(store_pb2.Command(delete_range=kv_pb2.DeleteRangeRequest(key="k/", prefix=True)))
    assert [(revision, [(e.type, e.kv.key) for e in events]) for events, revision in inbox.calls] == [
        (1, [(kv_pb2.KeyEvent.PUT, "k/1")]), (3, [(kv_pb2.KeyEvent.DELETE, "k/1")])]


@pytest.mark.parametrize("extra_prefixes", [0, 200])
def test_fan_out_gives_each_watcher_exactly_its_keys_in_order(extra_prefixes: int) -> None:
    """Watchers are looked up by key and prefix; with few or with many distinct prefixes (two
    ways of matching), each gets exactly the changes its key selects, and nothing else."""
    hub = WatchHub()
    watchers = [_watch(hub, key, prefix) for key, prefix in
                [("/registry/pods/", True), ("/registry/pods/default/", True), ("/registry/", True),
                 ("", True), ("/registry/pods/default/a", False), ("/registry/pods/default/a", True),
                 ("/registry/nodes/", True), ("/other", False)]]
    for i in range(extra_prefixes):
        _watch(hub, f"/unrelated/{i}/", True)
    keys = ["/registry/pods/default/a", "/registry/pods/default/ab", "/registry/pods/kube/x",
            "/registry/nodes/n1", "/other", "/registry/pods/default/a"]
    hub.publish([_put(key, rev) for rev, key in enumerate(keys, start=1)], len(keys))
    for watcher, inbox in watchers:
        assert inbox.keys() == [k for k in keys if watcher.matches(k)], watcher.key


def test_events_with_and_without_prev_kv_are_built_for_each_kind_of_watcher() -> None:
    hub = WatchHub()
    _, plain = _watch(hub, "k", prev_kv=False)
    _, with_prev = _watch(hub, "k", prev_kv=True)
    first = _put("k", 1)
    hub.publish([first], 1)
    hub.publish([_put("k", 2, b"w", prev=first.kv)], 2)
    assert not plain.calls[1][0][0].HasField("prev_kv")
    assert with_prev.calls[1][0][0].prev_kv.value == b"v"


def test_a_removed_watcher_gets_nothing_and_its_group_goes() -> None:
    hub = WatchHub()
    watcher, inbox = _watch(hub, "/p/", prefix=True)
    _, other = _watch(hub, "/p/", prefix=True)
    hub.remove(watcher)
    hub.remove(watcher)  # twice is harmless
    hub.publish([_put("/p/x", 1)], 1)
    assert inbox.calls == [] and other.keys() == ["/p/x"]
    assert len(hub) == 1
