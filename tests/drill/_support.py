"""What the drill tests and their conftest share (one module, so one copy of RESULTS)."""

from __future__ import annotations

import os

import pytest

from raftorch.drill.drills import DrillOptions, DrillResult
from raftorch.drill.workload import WorkloadSettings

# Short fault windows keep the whole suite within a few minutes on two cores.
OPTIONS = DrillOptions(workload=WorkloadSettings(threads=6, keys=3, timeout=1.0, retry_for=4.0),
                       before=0.5, after=1.0, recovery_timeout=45.0)

RESULTS: dict[str, list[DrillResult]] = {}


def record(results: list[DrillResult], cluster: str = "netns") -> None:
    for r in results:
        RESULTS.setdefault(f"{r.drill} on the {cluster} cluster", []).append(r)


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unusable(reason: str) -> None:
    if ci():
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)
