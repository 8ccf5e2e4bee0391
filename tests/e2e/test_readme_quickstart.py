"""The README's quick start, run from a fresh virtualenv on real Docker, each output checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from raftorch.local.cluster import docker_reachable
from raftorch.local.walkthrough import quick_start, run, user_env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.processes]


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()[1:]]


def _pod_flow_recorded(out: str) -> bool:
    """hello-world's pod went Scheduled, Pulling or Pulled, Created, Started (oldest first), and
    its deployment scaled its replica set. Columns by the header: LAST SEEN may hold spaces."""
    lines = out.strip().splitlines()
    head = lines[0] if lines else ""
    if not all(column in head for column in ("REASON", "OBJECT", "MESSAGE")):
        return False
    r, o, m = head.index("REASON"), head.index("OBJECT"), head.index("MESSAGE")
    rows = [(line[r:o].strip(), line[o:m].strip()) for line in lines[1:]]
    pod = [reason for reason, obj in rows if obj.startswith("pod/hello-world-")]
    flow = [next((i for i, reason in enumerate(pod) if reason in wanted), -1)
            for wanted in ({"Scheduled"}, {"Pulling", "Pulled"}, {"Created"}, {"Started"})]
    return -1 not in flow and flow == sorted(flow) and ("ScalingReplicaSet", "deployment/hello-world") in rows


CHECKS: dict[str, Callable[[str], bool]] = {
    "raftctl up": lambda out: "Cluster ready: 3 masters, 2 nodes (docker runtime)." in out,
    "raftctl get pods -A": lambda out: {r[1] for r in _rows(out) if r[3] == "Running"}
    >= {"master-m1", "master-m2", "master-m3", "agent-node-1", "agent-node-2"},
    "raftctl create deployment": lambda out: out.strip() == "deployment.apps/hello-world created",
    "raftctl rollout status": lambda out: 'deployment "hello-world" successfully rolled out' in out,
    "raftctl get deployments": lambda out: _rows(out)[0][:4] == ["hello-world", "1/1", "1", "1"],
    "raftctl get pods -o wide": lambda out: _rows(out)[0][0].startswith("hello-world-")
    and _rows(out)[0][2] == "Running" and _rows(out)[0][6].startswith("node-"),
    "raftctl expose": lambda out: out.strip() == "service/hello-world exposed",
    "raftctl get services": lambda out: _rows(out)[0][:2] == ["hello-world", "NodePort"]
    and re.fullmatch(r"8080:3\d{4}/TCP", _rows(out)[0][3]) is not None,
    "raftctl port-forward": lambda out: out.startswith("Forwarding from 127.0.0.1:7080 -> 8080"),
    "curl": lambda out: "Hostname: hello-world-" in out and "request_line=GET / HTTP/1.1" in out,
    "raftctl cluster status": lambda out: sorted(r[2] for r in _rows(out)) == ["follower", "follower", "leader"]
    and all(r[-1] == "yes" for r in _rows(out)),
    "raftctl get events": _pod_flow_recorded,
    "raftctl down": lambda out: "Cluster stopped." in out,
}


def _check_for(command: str) -> Callable[[str], bool]:
    matches = [key for key in CHECKS if command.startswith(key)]
    assert matches, f"the README runs {command!r}, which this test does not check"
    return CHECKS[max(matches, key=len)]


def test_readme_quick_start(tmp_path: Path) -> None:
    if not docker_reachable():
        if os.environ.get("CI"):
            pytest.fail("Docker engine unreachable in CI")
        pytest.skip("no Docker engine")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home, venv / "bin")
    steps = quick_start()
    assert [s.command.split()[0] for s in steps].count("raftctl") >= 10
    seen = []
    try:
        for result in run(steps, env):
            seen.append(result.step.command)
            assert result.code == 0, f"{result.step.command} failed:\n{result.output}"
            assert _check_for(result.step.command)(result.output), f"{result.step.command}:\n{result.output}"
    finally:
        subprocess.run([str(venv / "bin" / "raftctl"), "down", "--purge"], env=env, capture_output=True,
                       timeout=120)
    assert seen[-1] == "raftctl down"
