"""The audit log: one JSON line per mutating request, rotated by size so it cannot fill a disk."""

from __future__ import annotations

import json
from pathlib import Path

from raftorch.auth import rbac
from raftorch.auth.interceptor import AuditLog


def request(name: str) -> rbac.Request:
    return rbac.Request(verb="create", resource="pods", namespace="default", name=name)


def names(path: Path) -> list[str]:
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def test_records_survive_rotation_in_order_and_old_files_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_bytes=400, backups=2)
    for i in range(20):
        audit.record("user:alice", request(f"p{i:02d}"), "OK")
    audit.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(f.stat().st_size <= 400 for f in files)
    # The newest records are in audit.log, the ones before in .1, then .2; older ones are gone.
    kept = names(tmp_path / "audit.log.2") + names(tmp_path / "audit.log.1") + names(path)
    assert kept == [f"p{i:02d}" for i in range(20 - len(kept), 20)]
    first = json.loads(path.read_text().splitlines()[0])
    assert first["identity"] == "user:alice" and first["verb"] == "create" and first["result"] == "OK"


def test_a_reopened_log_appends_and_counts_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_bytes=10_000, backups=1)
    audit.record("admin", request("before"), "OK")
    audit.close()
    audit = AuditLog(path, max_bytes=len(path.read_bytes()) + 10, backups=1)
    audit.record("admin", request("after"), "OK")  # does not fit: the old file is rotated first
    audit.close()
    assert names(tmp_path / "audit.log.1") == ["before"]
    assert names(path) == ["after"]


def test_no_backups_starts_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_bytes=200, backups=0)
    for i in range(10):
        audit.record("admin", request(f"p{i}"), "OK")
    audit.close()
    assert [f.name for f in tmp_path.iterdir()] == ["audit.log"]
    assert names(path)[-1] == "p9"
