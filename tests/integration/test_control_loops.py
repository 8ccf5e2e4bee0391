"""Control loops never stop silently: a step or a loop that raises is logged with its
traceback and runs again after a back-off, and the cluster still converges."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from raftorch.master import manager as manager_module
from tests.integration._inprocess import InProcessMaster, eventually
from tests.integration.test_undecodable_objects import converges


@pytest.fixture
def master(tmp_path: Path) -> Iterator[InProcessMaster]:
    m = InProcessMaster(tmp_path / "m1")
    try:
        m.wait_ready()
        yield m
    finally:
        m.close()


def failing(times: int, real: Any) -> Any:
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise RuntimeError(f"planner bug #{calls['n']}")
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("times", [1, 2])
def test_a_planner_that_raises_is_retried_and_the_rest_go_on(master: InProcessMaster,
                                                              monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    monkeypatch.setattr(manager_module, "plan_replicaset", failing(times, manager_module.plan_replicaset))
    with structlog.testing.capture_logs() as logs, master.client() as c:
        manager = master.manager()
        converges(c, manager, "web", 3)
    crashes = [e for e in logs if e["event"] == "controller_pass_crashed"]
    assert [e["controller"] for e in crashes] == ["replicasets"] * times
    assert all(e["exc_info"] and e["log_level"] == "error" for e in crashes)
    assert manager.step_backoff["replicasets"].failures == times


def test_a_loop_that_crashes_is_restarted(master: InProcessMaster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "ObjectCache", failing(2, manager_module.ObjectCache))
    with structlog.testing.capture_logs() as logs, master.client() as c:
        manager = master.restart_controllers()
        eventually(lambda: manager.loop_backoff.failures == 2, what="two crashes")
        converges(c, manager, "web", 2)
    crashes = [e for e in logs if e["event"] == "controllers_crashed"]
    assert len(crashes) == 2 and all(e["exc_info"] for e in crashes)
    assert [e["restart_in"] for e in crashes] == [0.1, 0.2]
