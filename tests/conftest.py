"""Fixtures shared by the test tiers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.local.masters import LocalMasters


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[LocalMasters]:
    """Three real master processes on 127.0.0.1, killed at the end of the test."""
    cluster = LocalMasters(tmp_path / "masters")
    cluster.start()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.kill()
        # A failing test shows what the masters said.
        for m in cluster.masters.values():
            if m.log_path.exists():
                tail = m.log_path.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {m.name} log tail ---", *tail, sep="\n")
