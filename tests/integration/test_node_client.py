"""The .proto files are the contract: a Node.js client built from them alone lists pods."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.local.masters import LocalMasters

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "node"

pytestmark = pytest.mark.processes


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CLIENT / "node_modules" / "@grpc" / "grpc-js").exists():
        return "run: npm ci --prefix clients/node"
    return None


def test_node_client_lists_pods(masters: LocalMasters) -> None:
    missing = _node_ready()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with masters.client() as c:
        pod = objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(name="from-python", namespace="default"),
            spec=objects_pb2.PodSpec(node_selector={"nowhere": "true"},
                                     containers=[objects_pb2.Container(name="c", image="busybox")]))
        c.objects.create(pod)
        token = c.auth.create_token("node-example", "view").token
    env = {**os.environ, "RAFTORCH_CA": str(masters.admin.ca_file), "RAFTORCH_TOKEN": token}
    result = subprocess.run(["node", str(CLIENT / "list_pods.js"), masters.endpoints[1], "default"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "default from-python Pending <none>" in result.stdout.splitlines()
    bad = subprocess.run(["node", str(CLIENT / "list_pods.js"), "127.0.0.1:1"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error:")
    # A wrong token is refused by the master, over TLS.
    wrong = subprocess.run(["node", str(CLIENT / "list_pods.js"), masters.endpoints[0]], capture_output=True,
                           text=True, timeout=60, env={**env, "RAFTORCH_TOKEN": "abcdef12.wrongwrongwrongwrong"})
    assert wrong.returncode == 1 and "unknown token" in wrong.stderr
