"""Fixtures shared by the test tiers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftorch.local.masters import LocalMasters


@pytest.fixture(autouse=True, scope="session")
def _own_client_config() -> Iterator[None]:
    """Keep the user's ~/.config/raftorch and ~/.local/share/raftorch out of the tests.

    raftctl falls back to the user's client config when a test gives no --config; a cluster
    started by hand on this machine must not change what a test talks to.
    """
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    with tempfile.TemporaryDirectory(prefix="raftorch-test-home-") as home:
        os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")
        os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
