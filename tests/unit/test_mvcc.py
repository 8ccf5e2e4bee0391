"""KeyIndex: versions, reads at past revisions, compaction and the change history."""

from __future__ import annotations

import pytest

from raftorch.errors import Compacted, Invalid
from raftorch.store.mvcc import KeyIndex, Version


def _put(index: KeyIndex, key: str, value: bytes, lease: int = 0) -> int:
    """One write request: bump the revision once, then write."""
    index.revision += 1
    index.put(key, value, lease, index.revision)
    return index.revision


def _delete(index: KeyIndex, key: str) -> int:
    index.revision += 1
    index.delete(key, index.revision)
    return index.revision


def _values(index: KeyIndex, key: str, prefix: bool = False, revision: int = 0) -> dict[str, bytes | None]:
    return {v.key: v.value for v in index.range(key, prefix, revision)}


def _keys(index: KeyIndex, key: str, prefix: bool = True, revision: int = 0) -> list[str]:
    return [v.key for v in index.range(key, prefix, revision)]


def _filled(*keys: str) -> KeyIndex:
    index = KeyIndex()
    for key in keys:
        _put(index, key, key.encode())
    return index


# -- versions ------------------------------------------------------------------------


def test_new_index_is_empty_at_revision_zero() -> None:
    index = KeyIndex()
    assert index.revision == 0
    assert index.compact_revision == 0
    assert len(index) == 0
    assert index.current("a") is None
    assert _keys(index, "") == []


def test_first_put_creates_version_one() -> None:
    index = KeyIndex()
    rev = _put(index, "a", b"1", lease=7)
    assert index.current("a") == Version("a", b"1", create_revision=rev, mod_revision=rev, version=1, lease=7)


def test_overwrite_keeps_create_revision_and_bumps_version() -> None:
    index = KeyIndex()
    created = _put(index, "a", b"1")
    _put(index, "other", b"x")
    modified = _put(index, "a", b"2")
    current = index.current("a")
    assert current is not None
    assert (current.value, current.create_revision, current.mod_revision, current.version) == (
        b"2", created, modified, 2)


def test_put_returns_change_with_previous_version() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    index.revision += 1
    change = index.put("a", b"2", 0, index.revision)
    assert change.kv.value == b"2"
    assert change.prev is not None
    assert change.prev.value == b"1"


def test_first_put_change_has_no_previous_version() -> None:
    index = KeyIndex()
    index.revision += 1
    change = index.put("a", b"1", 0, index.revision)
    assert change.prev is None


def test_delete_hides_key_and_recreate_resets_version() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    _put(index, "a", b"2")
    _delete(index, "a")
    assert index.current("a") is None
    assert _values(index, "a") == {}
    recreated = _put(index, "a", b"3")
    current = index.current("a")
    assert current is not None
    assert (current.version, current.create_revision, current.mod_revision) == (1, recreated, recreated)


def test_delete_records_tombstone_change() -> None:
    index = KeyIndex()
    _put(index, "a", b"1", lease=3)
    index.revision += 1
    change = index.delete("a", index.revision)
    assert change is not None
    assert not change.kv.alive
    assert change.kv.mod_revision == index.revision
    assert change.prev is not None
    assert (change.prev.value, change.prev.lease) == (b"1", 3)


def test_delete_of_missing_key_is_a_no_op() -> None:
    index = KeyIndex()
    assert index.delete("nope", 1) is None
    assert index.history == []


def test_delete_of_already_deleted_key_is_a_no_op() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    _delete(index, "a")
    before = list(index.history)
    assert index.delete("a", index.revision + 1) is None
    assert index.history == before


def test_empty_value_is_a_live_key() -> None:
    index = KeyIndex()
    _put(index, "a", b"")
    current = index.current("a")
    assert current is not None
    assert current.alive
    assert _values(index, "a") == {"a": b""}


# -- ranges ---------------------------------------------------------------------------


def test_exact_range_returns_only_that_key() -> None:
    index = _filled("a", "ab", "abc")
    assert _keys(index, "ab", prefix=False) == ["ab"]


def test_exact_range_of_missing_key_is_empty() -> None:
    index = _filled("a", "abc")
    assert _keys(index, "ab", prefix=False) == []


def test_prefix_range_is_sorted_and_excludes_non_matching_keys() -> None:
    index = _filled("b/2", "a/1", "b/10", "c", "b/1", "b", "ba", "a/9")
    assert _keys(index, "b/") == ["b/1", "b/10", "b/2"]


def test_prefix_range_includes_key_equal_to_prefix() -> None:
    index = _filled("app", "app/x", "apple")
    assert _keys(index, "app") == ["app", "app/x", "apple"]


def test_empty_prefix_returns_every_live_key_in_order() -> None:
    index = _filled("z", "m", "a")
    _delete(index, "m")
    assert _keys(index, "") == ["a", "z"]


def test_prefix_range_skips_deleted_keys() -> None:
    index = _filled("p/1", "p/2", "p/3")
    _delete(index, "p/2")
    assert _keys(index, "p/") == ["p/1", "p/3"]


def test_len_counts_keys_with_retained_versions_including_tombstones() -> None:
    index = _filled("a", "b")
    _delete(index, "a")
    assert len(index) == 2


# -- past revisions -------------------------------------------------------------------


def test_read_at_past_revision_returns_old_value() -> None:
    index = KeyIndex()
    first = _put(index, "a", b"1")
    second = _put(index, "a", b"2")
    _put(index, "a", b"3")
    assert _values(index, "a", revision=first) == {"a": b"1"}
    assert _values(index, "a", revision=second) == {"a": b"2"}
    assert _values(index, "a") == {"a": b"3"}


def test_read_at_past_revision_sees_deleted_key_alive() -> None:
    index = KeyIndex()
    alive = _put(index, "a", b"1")
    gone = _delete(index, "a")
    assert _values(index, "a", revision=alive) == {"a": b"1"}
    assert _values(index, "a", revision=gone) == {}


def test_read_before_key_existed_is_empty() -> None:
    index = KeyIndex()
    before = _put(index, "other", b"x")
    _put(index, "a", b"1")
    assert _values(index, "a", revision=before) == {}
    assert _keys(index, "", revision=before) == ["other"]


def test_prefix_read_at_past_revision() -> None:
    index = KeyIndex()
    _put(index, "p/1", b"a")
    at = _put(index, "p/2", b"b")
    _put(index, "p/3", b"c")
    _put(index, "p/1", b"changed")
    _delete(index, "p/2")
    assert _values(index, "p/", prefix=True, revision=at) == {"p/1": b"a", "p/2": b"b"}


def test_past_read_returns_full_version_metadata() -> None:
    index = KeyIndex()
    first = _put(index, "a", b"1", lease=5)
    _put(index, "a", b"2")
    (old,) = index.range("a", False, first)
    assert old == Version("a", b"1", first, first, 1, 5)


def test_future_revision_is_invalid() -> None:
    index = _filled("a")
    with pytest.raises(Invalid, match="future"):
        list(index.range("a", False, index.revision + 1))


def test_revision_zero_or_negative_means_now() -> None:
    index = _filled("a", "b")
    assert index.check_revision(0) == index.revision
    assert index.check_revision(-3) == index.revision


def test_current_revision_is_readable() -> None:
    index = _filled("a")
    assert index.check_revision(index.revision) == index.revision


# -- compaction -----------------------------------------------------------------------


def test_read_below_compact_revision_raises_compacted() -> None:
    index = KeyIndex()
    first = _put(index, "a", b"1")
    second = _put(index, "a", b"2")
    index.compact(second)
    with pytest.raises(Compacted):
        list(index.range("a", False, first))
    assert index.compact_revision == second


def test_read_at_compact_revision_still_works() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    kept = _put(index, "b", b"x")
    _put(index, "a", b"2")
    index.compact(kept)
    assert _values(index, "", prefix=True, revision=kept) == {"a": b"1", "b": b"x"}
    assert _values(index, "", prefix=True) == {"a": b"2", "b": b"x"}


def test_compaction_drops_superseded_versions() -> None:
    index = KeyIndex()
    for value in (b"1", b"2", b"3"):
        _put(index, "a", value)
    index.compact(index.revision)
    ((name, versions),) = list(index.all_versions())
    assert name == "a"
    assert [v.value for v in versions] == [b"3"]


def test_compaction_keeps_versions_newer_than_compact_revision() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    middle = _put(index, "a", b"2")
    _put(index, "a", b"3")
    index.compact(middle)
    ((_, versions),) = list(index.all_versions())
    assert [v.value for v in versions] == [b"2", b"3"]


def test_compaction_removes_keys_deleted_at_or_before_it() -> None:
    index = _filled("a", "b")
    _delete(index, "a")
    index.compact(index.revision)
    assert [name for name, _ in index.all_versions()] == ["b"]
    assert len(index) == 1


def test_compaction_keeps_key_deleted_after_it() -> None:
    index = _filled("a")
    kept = _put(index, "b", b"x")
    _delete(index, "a")
    index.compact(kept)
    assert _values(index, "a", revision=kept) == {"a": b"a"}
    assert _values(index, "a") == {}


def test_compaction_of_deleted_then_recreated_key() -> None:
    index = _filled("a")
    _delete(index, "a")
    between = _put(index, "other", b"x")
    _put(index, "a", b"again")
    index.compact(between)
    assert _values(index, "a", revision=between) == {}
    assert _values(index, "a") == {"a": b"again"}


def test_compaction_drops_history_before_it() -> None:
    index = KeyIndex()
    for value in (b"1", b"2", b"3", b"4"):
        _put(index, "a", value)
    index.compact(3)
    assert [rev for rev, _ in index.history] == [3, 4]


def test_compacting_to_same_or_older_revision_raises_compacted() -> None:
    index = _filled("a", "b", "c")
    index.compact(2)
    with pytest.raises(Compacted):
        index.compact(2)
    with pytest.raises(Compacted):
        index.compact(1)


def test_compacting_to_future_revision_is_invalid() -> None:
    index = _filled("a")
    with pytest.raises(Invalid, match="current revision"):
        index.compact(index.revision + 1)
    assert index.compact_revision == 0


def test_keys_keep_sorted_order_after_compaction_removes_some() -> None:
    index = _filled("d", "b", "a", "c")
    _delete(index, "b")
    index.compact(index.revision)
    _put(index, "bb", b"x")
    assert _keys(index, "") == ["a", "bb", "c", "d"]


# -- history --------------------------------------------------------------------------


def test_history_records_every_change_in_revision_order() -> None:
    index = KeyIndex()
    _put(index, "a", b"1")
    _put(index, "b", b"2")
    _delete(index, "a")
    assert [(rev, c.kv.key, c.kv.alive) for rev, c in index.history] == [
        (1, "a", True), (2, "b", True), (3, "a", False)]


def test_changes_since_includes_the_start_revision() -> None:
    index = _filled("a", "b", "c", "d")
    assert [rev for rev, _ in index.changes_since(3)] == [3, 4]
    assert [rev for rev, _ in index.changes_since(0)] == [1, 2, 3, 4]
    assert index.changes_since(5) == []


def test_changes_since_groups_changes_sharing_a_revision() -> None:
    index = KeyIndex()
    index.revision += 1
    index.put("x", b"1", 0, index.revision)
    index.put("y", b"2", 0, index.revision)
    _put(index, "z", b"3")
    assert [(rev, c.kv.key) for rev, c in index.changes_since(1)] == [(1, "x"), (1, "y"), (2, "z")]


def test_changes_since_compacted_revision_raises() -> None:
    index = _filled("a", "b", "c")
    index.compact(2)
    with pytest.raises(Compacted):
        index.changes_since(1)
    assert [rev for rev, _ in index.changes_since(2)] == [2, 3]


# -- snapshot support -------------------------------------------------------------------


def test_load_replaces_state_and_sorts_keys() -> None:
    source = KeyIndex()
    _put(source, "b", b"2")
    _put(source, "a", b"1")
    keys = {name: list(versions) for name, versions in source.all_versions()}
    target = _filled("junk")
    target.load(source.revision, 1, dict(reversed(keys.items())), list(source.history))
    assert (target.revision, target.compact_revision) == (2, 1)
    assert _values(target, "", prefix=True) == {"a": b"1", "b": b"2"}
    assert target.current("junk") is None
