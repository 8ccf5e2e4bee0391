"""What a master and raftctl do with bad input, bad config and unreachable peers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from raftorch import rpc
from raftorch.api.v1 import kv_pb2, kv_pb2_grpc
from raftorch.cli.main import cli
from raftorch.local.masters import LocalMasters, free_ports, write_secret

pytestmark = pytest.mark.processes


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (kv_pb2.PutRequest(key="", value=b"x"), "key: must not be empty"),
        (kv_pb2.PutRequest(key="k" * 1025, value=b"x"), "longer than the limit of 1024 bytes"),
        (kv_pb2.PutRequest(key="big", value=b"x" * (1024 * 1024 + 1)), "larger than the limit of 1048576 bytes"),
    ],
)
def test_bad_keys_and_values_are_invalid_argument(masters: LocalMasters, request_: kv_pb2.PutRequest,
                                                  needle: str) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        with pytest.raises(grpc.RpcError) as info:
            kv_pb2_grpc.KVStub(chan).Put(request_, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in (info.value.details() or "")
        # Nothing was stored.
        resp = kv_pb2_grpc.KVStub(chan).Range(kv_pb2.RangeRequest(key="", prefix=True), timeout=5)
        assert [kv.key for kv in resp.kvs if not kv.key.startswith("/registry/")] == []


def test_health_service_answers_serving_on_each_master(masters: LocalMasters) -> None:
    for endpoint in masters.endpoints:
        with rpc.channel(endpoint, masters.credentials) as chan:
            stub = health_pb2_grpc.HealthStub(chan)
            for service in ("", "raftorch.v1.KV", "raftorch.v1.Cluster"):
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_master_with_wrong_secret_never_joins_and_logs_why(masters: LocalMasters, tmp_path: Path) -> None:
    victim = next(n for n in masters.masters if n != masters.leader())
    masters.stop(victim)
    wrong = tmp_path / "wrong-secret"
    write_secret(wrong)
    masters.start(victim, secret_file=wrong)
    log_path = masters.masters[victim].log_path
    deadline = time.monotonic() + 15
    while "peer_auth_failed" not in log_path.read_text():
        assert time.monotonic() < deadline, "no authentication error logged"
        time.sleep(0.2)
    assert "cluster secret" in log_path.read_text()
    with masters.client([victim], retry_for=1.0) as c:
        status = c.member_status(masters.masters[victim].client_addr)
        assert status.leader == "" and status.role != "leader" and not status.healthy
    # The other two carry on, and never count it as a member in good standing.
    with masters.client([n for n in masters.masters if n != victim]) as c:
        c.put("still", b"works")
        members = {m.name: m for m in c.cluster_status().members}
        assert not members[victim].healthy


def test_raftctl_with_no_reachable_master_prints_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    result = CliRunner().invoke(cli, ["--endpoints", f"127.0.0.1:{port}", "--config", str(tmp_path / "none"),
                                      "kv", "get", "x"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no master answered"), result.output
    assert "Traceback" not in result.output


def test_raftctl_kv_and_cluster_status(masters: LocalMasters, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--endpoints", ",".join(masters.endpoints), "--config", str(tmp_path / "none")]
    assert runner.invoke(cli, [*base, "kv", "put", "greeting", "hello"]).exit_code == 0
    got = runner.invoke(cli, [*base, "kv", "get", "greeting"])
    assert got.exit_code == 0 and got.output == "hello\n"
    missing = runner.invoke(cli, [*base, "kv", "get", "nope"])
    assert missing.exit_code == 1 and "not found" in missing.output
    status = runner.invoke(cli, [*base, "cluster", "status"])
    assert status.exit_code == 0
    header, *rows = status.output.strip().splitlines()
    assert header.split()[:3] == ["MEMBER", "ADDRESS", "ROLE"]
    assert sorted(r.split()[2] for r in rows) == ["follower", "follower", "leader"], status.output
    deleted = runner.invoke(cli, [*base, "kv", "del", "greeting"])
    assert deleted.exit_code == 0 and deleted.output == "deleted 1\n"
    bad = runner.invoke(cli, [*base, "kv", "put", "", "x"])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and "must not be empty" in bad.output


def test_raftctl_reads_endpoints_from_env_and_config_file(masters: LocalMasters, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("endpoints:\n" + "".join(f"  - {e}\n" for e in masters.endpoints))
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(cfg), "kv", "put", "a", "1"]).exit_code == 0
    env = {"RAFTORCH_ENDPOINTS": masters.endpoints[1]}
    got = runner.invoke(cli, ["--config", str(tmp_path / "none"), "kv", "get", "a"], env=env)
    assert got.output == "1\n"
    cfg.write_text("endpoint: 127.0.0.1:1\n")
    bad = runner.invoke(cli, ["--config", str(cfg), "kv", "get", "a"])
    assert bad.exit_code != 0 and "unknown key 'endpoint'" in bad.output


def _run_master(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftorch.master", *args], capture_output=True, text=True,
                          timeout=30)


def test_master_config_file_with_bad_key_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "master.yaml"
    cfg.write_text("name: m1\nclient-adress: 127.0.0.1:1234\n")
    result = _run_master("--config", str(cfg))
    assert result.returncode == 2
    assert "unknown key 'client-adress'" in result.stderr
    assert "Traceback" not in result.stderr
    cfg.write_text("name: [m1\n")
    result = _run_master("--config", str(cfg))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_master_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = _run_master("--name", "m1", "--secret-file", str(tmp_path / "missing"),
                         "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "secret-file" in result.stderr and "Traceback" not in result.stderr
