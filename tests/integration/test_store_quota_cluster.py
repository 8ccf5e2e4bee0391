"""The store's byte quota on real masters: NOSPACE, the alarm in `raftctl cluster status`, and
recovery by deleting and compacting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.cli.main import cli
from raftorch.local.masters import LocalMasters
from raftorch.store.quota import MIB

pytestmark = pytest.mark.processes

QUOTA = 2 * MIB


@pytest.fixture
def small_masters(tmp_path: Path) -> Iterator[LocalMasters]:
    cluster = LocalMasters(tmp_path / "masters", extra_args=["--quota-bytes", str(QUOTA)])
    cluster.start()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.kill()
        for m in cluster.masters.values():
            if m.log_path.exists():
                tail = m.log_path.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {m.name} log tail ---", *tail, sep="\n")


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_full_store_answers_nospace_raises_the_alarm_and_recovers(small_masters: LocalMasters,
                                                                   tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--endpoints", ",".join(small_masters.endpoints), "--config", str(tmp_path / "none")]

    def raftctl(*args: str) -> Result:
        return runner.invoke(cli, [*base, *args])

    def members() -> dict[str, tuple[int, tuple[str, ...]]]:
        with small_masters.client() as c:
            return {m.name: (m.quota_bytes, m.alarms) for m in c.cluster_status().members}

    # The leader commits its --quota-bytes; every replica applies it.
    _wait_for("the quota on every master", lambda: all(q == QUOTA for q, _ in members().values()))

    value = "x" * (200 * 1024)
    refused: Result | None = None
    for i in range(40):
        result = raftctl("kv", "put", f"big/{i:02d}", value)
        if result.exit_code != 0:
            refused = result
            break
    assert refused is not None, "the store never refused a write"
    assert "database space exceeded" in refused.output, refused.output
    assert refused.output.count("\n") == 1 and "Traceback" not in refused.output

    _wait_for("NOSPACE on every master", lambda: all(a == ("NOSPACE",) for _, a in members().values()))
    status = raftctl("cluster", "status")
    assert status.exit_code == 0
    header, *rows = status.output.strip().splitlines()
    assert "ALARMS" in header.split() and "STORE" in header.split()
    assert all("NOSPACE" in row and "/2MiB" in row for row in rows), status.output

    # Deletes and compaction stay allowed, and free the space.
    assert raftctl("kv", "del", "big/", "--prefix").exit_code == 0
    compacted = raftctl("kv", "compact")
    assert compacted.exit_code == 0 and "compacted to revision " in compacted.output, compacted.output
    _wait_for("the alarm to clear on every master", lambda: all(a == () for _, a in members().values()))
    assert raftctl("kv", "put", "big/again", value).exit_code == 0
