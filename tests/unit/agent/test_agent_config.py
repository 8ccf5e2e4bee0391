"""The agent's --start-concurrency: a bound on pod starts under way at once, refused when out of range."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from raftorch.agent.config import MAX_START_CONCURRENCY, AgentConfig
from raftorch.agent.main import main
from raftorch.errors import Invalid


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() points the logs at this test's captured stderr, closed once the test ends.
    handlers = list(logging.root.handlers)
    yield
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers


def test_start_concurrency_default_and_range() -> None:
    assert AgentConfig(name="n1").start_concurrency == 4
    AgentConfig(name="n1", start_concurrency=1).validate()
    AgentConfig(name="n1", start_concurrency=MAX_START_CONCURRENCY).validate()
    for bad in (0, -1, MAX_START_CONCURRENCY + 1):
        with pytest.raises(Invalid, match=r"start-concurrency: expected 1 to 64"):
            AgentConfig(name="n1", start_concurrency=bad).validate()


def test_cli_refuses_a_bad_start_concurrency_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--name", "n1", "--runtime", "fake", "--data-dir", str(tmp_path), "--start-concurrency", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "raftorch-agent: start-concurrency: expected 1 to 64, got 0"


def test_cli_refuses_an_unknown_runtime_and_a_bad_number(capsys: pytest.CaptureFixture[str]) -> None:
    for args, problem in ((["--runtime", "vm"], "argument --runtime: invalid choice: 'vm'"),
                          (["--agent-port", "x"], "argument --agent-port: invalid int value: 'x'")):
        with pytest.raises(SystemExit) as exited:
            main(["--name", "n1", *args])
        assert exited.value.code == 2
        assert problem in capsys.readouterr().err


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--join-token" in out and "--sandbox-pool" in out and "raftorch-agent --name node-1" in out


def test_the_agent_program_runs_itself_again_without_docstrings(monkeypatch: pytest.MonkeyPatch) -> None:
    from raftorch.agent import main as agent_main

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(agent_main.os, "execv", lambda path, args: calls.append((path, list(args))))
    monkeypatch.setattr(agent_main.sys, "argv", ["raftorch-agent", "--name", "n1"])
    monkeypatch.delenv("RAFTORCH_AGENT_KEEP_DOCSTRINGS", raising=False)
    agent_main._run_without_docstrings()
    assert calls == [(agent_main.sys.executable,
                      [agent_main.sys.executable, "-OO", "-m", "raftorch.agent", "--name", "n1"])]
    monkeypatch.setenv("RAFTORCH_AGENT_KEEP_DOCSTRINGS", "1")
    agent_main._run_without_docstrings()
    assert len(calls) == 1
