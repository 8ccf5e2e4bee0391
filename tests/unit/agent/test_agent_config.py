"""The agent's --start-concurrency: a bound on pod starts under way at once, refused when out of range."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raftorch.agent.config import MAX_START_CONCURRENCY, AgentConfig
from raftorch.agent.main import main
from raftorch.errors import Invalid


def test_start_concurrency_default_and_range() -> None:
    assert AgentConfig(name="n1").start_concurrency == 4
    AgentConfig(name="n1", start_concurrency=1).validate()
    AgentConfig(name="n1", start_concurrency=MAX_START_CONCURRENCY).validate()
    for bad in (0, -1, MAX_START_CONCURRENCY + 1):
        with pytest.raises(Invalid, match=r"start-concurrency: expected 1 to 64"):
            AgentConfig(name="n1", start_concurrency=bad).validate()


def test_cli_refuses_a_bad_start_concurrency_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--name", "n1", "--runtime", "fake", "--data-dir", str(tmp_path),
                                       "--start-concurrency", "0"])
    assert result.exit_code == 2
    assert "start-concurrency: expected 1 to 64, got 0" in result.output
    assert "Traceback" not in result.output
