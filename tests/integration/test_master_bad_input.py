"""What a master and raftctl do with bad input, bad config and unreachable peers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from raftorch import rpc
from raftorch.api.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
    objects_pb2,
    resources_pb2,
    resources_pb2_grpc,
)
from raftorch.cli.main import cli
from raftorch.local.masters import LocalMasters, free_ports, write_secret
from raftorch.objects import wrap

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
            # Reflection is off unless a master is started with --reflection.
            reflect = reflection_pb2_grpc.ServerReflectionStub(chan)
            with pytest.raises(grpc.RpcError) as info:
                list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
                    list_services="")]), timeout=5))
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


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


# -- the edge: every field bounded, the masters' keys protected, streams capped --------------------


def _call(chan: grpc.Channel, method: str, request: bytes, timeout: float = 5.0) -> grpc.RpcError:
    """Send raw request bytes to a unary method; returns the error it must end with."""
    call = chan.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=timeout)
    return info.value


def _pod(name: str, containers: int = 1, env: int = 0, env_value: str = "") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"))
    for i in range(containers):
        c = pod.spec.containers.add(name=f"c{i}", image="raftorch/busybox:latest")
        for j in range(env):
            c.env.add(name=f"E{j}", value=env_value)
    return pod


def test_kv_writes_under_registry_are_refused_and_reads_allowed(masters: LocalMasters, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--endpoints", ",".join(masters.endpoints), "--config", str(tmp_path / "none")]
    result = runner.invoke(cli, [*base, "kv", "put", "/registry/pods/default/zz", "garbage"])
    assert result.exit_code != 0
    assert "owned by the masters" in result.output and "use the Resources API (raftctl apply/create/delete)" \
        in result.output, result.output
    with rpc.channel(masters.endpoints[1], masters.credentials) as chan:
        kv = kv_pb2_grpc.KVStub(chan)
        refused = [
            kv_pb2.PutRequest(key="/registry/allocations/clusterips/10.96.0.9", value=b"x"),
        ]
        for req in refused:
            with pytest.raises(grpc.RpcError) as info:
                kv.Put(req, timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for delete in (kv_pb2.DeleteRangeRequest(key="/registry/namespaces/default"),
                       kv_pb2.DeleteRangeRequest(key="", prefix=True),
                       kv_pb2.DeleteRangeRequest(key="/reg", prefix=True)):
            with pytest.raises(grpc.RpcError) as info:
                kv.DeleteRange(delete, timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "Resources API" in (info.value.details() or "")
        put = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="/registry/pods/default/zz", value=b"x"))
        delete = kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key="/registry/", prefix=True))
        for txn in (kv_pb2.TxnRequest(success=[put]), kv_pb2.TxnRequest(failure=[delete])):
            with pytest.raises(grpc.RpcError) as info:
                kv.Txn(txn, timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Reads of the masters' keys stay open, and ordinary keys are writable.
        got = kv.Range(kv_pb2.RangeRequest(key="/registry/namespaces/default"), timeout=5)
        assert len(got.kvs) == 1
        kv.Put(kv_pb2.PutRequest(key="/registryish", value=b"ok"), timeout=5)
    # Nothing reached the object keyspace: listing pods works and the controllers live on.
    with masters.client() as c:
        assert c.objects.list("pods", "default")[0] == []
        created = c.objects.create(_pod("after"))
        assert created.metadata.name == "after"  # type: ignore[attr-defined]


def test_request_id_is_bounded_and_not_echoed_in_full(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        kv = kv_pb2_grpc.KVStub(chan)
        kv.Put(kv_pb2.PutRequest(key="k", value=b"v", request_id="r" * 128), timeout=5)
        for size in (129, 1024 * 1024):
            with pytest.raises(grpc.RpcError) as info:
                kv.Put(kv_pb2.PutRequest(key="k", value=b"v", request_id="r" * size), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = info.value.details() or ""
            assert "request_id" in details and "128 bytes" in details and len(details) < 400, details[:500]
        for req in (resources_pb2.DeleteRequest(kind="pods", name="x", request_id="r" * 200),
                    resources_pb2.CreateRequest(object=wrap(_pod("p")), request_id="r" * 200)):
            method = "Delete" if isinstance(req, resources_pb2.DeleteRequest) else "Create"
            err = _call(chan, f"/raftorch.v1.Resources/{method}", req.SerializeToString())
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in (err.details() or "")


def test_lease_ids_and_ttls_are_bounded(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        kv = kv_pb2_grpc.KVStub(chan)
        for bad in (kv_pb2.LeaseGrantRequest(ttl=10, id=2**63 - 1), kv_pb2.LeaseGrantRequest(ttl=10, id=-1),
                    kv_pb2.LeaseGrantRequest(ttl=0), kv_pb2.LeaseGrantRequest(ttl=10**9)):
            with pytest.raises(grpc.RpcError) as info:
                kv.LeaseGrant(bad, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for call in (kv.LeaseRevoke, kv.LeaseKeepAlive, kv.LeaseTimeToLive):
            request_type = {kv.LeaseRevoke: kv_pb2.LeaseRevokeRequest, kv.LeaseKeepAlive: kv_pb2.LeaseKeepAliveRequest,
                            kv.LeaseTimeToLive: kv_pb2.LeaseTimeToLiveRequest}[call]
            with pytest.raises(grpc.RpcError) as info:
                call(request_type(id=-5), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "id" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            kv.Put(kv_pb2.PutRequest(key="k", value=b"v", lease=-1), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The largest id allowed, then one the store picks: both work, and the store stays up.
        assert kv.LeaseGrant(kv_pb2.LeaseGrantRequest(ttl=10, id=2**62), timeout=5).id == 2**62
        assert kv.LeaseGrant(kv_pb2.LeaseGrantRequest(ttl=10), timeout=5).id == 2**62 + 1
    with masters.client() as c:
        c.put("still", b"alive")


def test_objects_are_bounded_by_encoded_size_and_pod_shape(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        res = resources_pb2_grpc.ResourcesStub(chan)
        cases = [
            # Under the request limit, over the 1 MiB a stored object may be.
            (_pod("big", env=20, env_value="x" * 60_000), "larger than the limit of 1048576 bytes"),
            # Over the request limit (the gRPC message limit is 8 MiB).
            (_pod("many", containers=20_000), "containers: 20000 items is more than the limit"),
            (_pod("wide", containers=65), "must have at most 64 containers"),
            (_pod("env", env=257), "must have at most 256 entries"),
        ]
        for pod, needle in cases:
            with pytest.raises(grpc.RpcError) as info:
                res.Create(resources_pb2.CreateRequest(object=wrap(pod)), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
            details = info.value.details() or ""
            assert needle in details and len(details) < 2000, details[:500]
        raw = resources_pb2.CreateRequest(object=wrap(_pod("huge"))).SerializeToString() + b"\x1a" + \
            _varint(7 * 1024 * 1024) + b"x" * (7 * 1024 * 1024)
        err = _call(chan, "/raftorch.v1.Resources/Create", raw, timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "request:" in (err.details() or "")
        # A pod at the caps is fine.
        res.Create(resources_pb2.CreateRequest(object=wrap(_pod("ok", containers=64))), timeout=10)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_invalid_utf8_and_deep_nesting_are_invalid_argument(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        # PutRequest.key (field 1, a string) holding bytes that are not UTF-8.
        err = _call(chan, "/raftorch.v1.KV/Put", b"\x0a\x02\xff\xfe\x12\x01x")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        assert "PutRequest" in (err.details() or "") and "UTF-8" in (err.details() or "")
        err = _call(chan, "/raftorch.v1.Resources/List", b"\x0a\x04p\xc3\x28s")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        # Groups nested past the parser's limit, and nested under it but unknown to the schema.
        group_open, group_close = b"\x9b\x06", b"\x9c\x06"  # field 99, start and end group
        # 99 deep parses here, but one level more (the log entry around it) would not parse at
        # apply: once stored, such a request stalled the log on every replica.
        for depth in (90, 99, 100, 5000):
            raw = b"\x0a\x01k" + group_open * depth + group_close * depth
            err = _call(chan, "/raftorch.v1.KV/Put", raw)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert "PutRequest" in (err.details() or "")
        # Garbage and truncated messages.
        whole = kv_pb2.PutRequest(key="key", value=b"v" * 100).SerializeToString()
        for raw in (whole[:10], b"\xff" * 32, b"\x0a\xff\xff\xff\xff\x0f"):
            err = _call(chan, "/raftorch.v1.KV/Put", raw)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        # Nothing of that was stored, and the store still takes writes.
        kv = kv_pb2_grpc.KVStub(chan)
        resp = kv.Range(kv_pb2.RangeRequest(key="", prefix=True), timeout=5)
        assert [kv.key for kv in resp.kvs if not kv.key.startswith("/registry/")] == []
        kv.Put(kv_pb2.PutRequest(key="after", value=b"ok"), timeout=5)


def test_a_long_selector_is_refused_without_being_echoed(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        res = resources_pb2_grpc.ResourcesStub(chan)
        for selector in ("app=" + "x" * 1_000_000, "app in (" + "x," * 1500 + "x"):
            with pytest.raises(grpc.RpcError) as info:
                res.List(resources_pb2.ListRequest(kind="pods", label_selector=selector), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = info.value.details() or ""
            assert "label_selector" in details or "label selector" in details
            assert len(details) < 600, details[:700]
        with pytest.raises(grpc.RpcError) as info:
            res.List(resources_pb2.ListRequest(kind="pods", label_selector="a=" + "=" * 3000), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(info.value.details() or "") < 600


def test_streams_per_client_are_capped(tmp_path: Path) -> None:
    cluster = LocalMasters(tmp_path / "capped", count=1, extra_env={
        "RAFTORCH_MASTER_MAX_WATCHES_PER_CLIENT": "3", "RAFTORCH_MASTER_MAX_STREAMS_PER_CLIENT": "2"})
    cluster.start()
    try:
        cluster.wait_ready()
        with rpc.channel(cluster.endpoints[0], cluster.credentials) as chan:
            kv = kv_pb2_grpc.KVStub(chan)
            res = resources_pb2_grpc.ResourcesStub(chan)
            opened = [kv.Watch(kv_pb2.WatchRequest(key="a")),
                      res.Watch(resources_pb2.WatchObjectsRequest(kind="pods")),
                      kv.Watch(kv_pb2.WatchRequest(key="b"))]
            # Each answers once it is registered (the first message marks the start).
            for call in opened:
                next(call)
            refused = kv.Watch(kv_pb2.WatchRequest(key="c"))
            with pytest.raises(grpc.RpcError) as info:
                next(refused)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "watches" in (info.value.details() or "")
            # The cap follows the caller, not the connection: another connection with the same
            # credentials is refused too, while another caller (a token) has its own watches.
            with rpc.channel(cluster.endpoints[0], cluster.credentials, own_connection=True) as same:
                with pytest.raises(grpc.RpcError) as info:
                    next(kv_pb2_grpc.KVStub(same).Watch(kv_pb2.WatchRequest(key="d")))
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            with cluster.client() as admin:
                token = admin.auth.create_token("other-user", "admin").token
            with rpc.channel(cluster.endpoints[0], rpc.Credentials(cluster.credentials.ca_pem, token=token),
                             own_connection=True) as other:
                next(kv_pb2_grpc.KVStub(other).Watch(kv_pb2.WatchRequest(key="d")))
            # Closing one frees its place.
            opened[0].cancel()
            deadline = time.monotonic() + 10
            while True:
                again = kv.Watch(kv_pb2.WatchRequest(key="e"))
                try:
                    next(again)
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert time.monotonic() < deadline, "a cancelled watch kept its place"
                    time.sleep(0.1)
            # Heartbeat streams count apart from watches.
            agents = agents_pb2_grpc.AgentsStub(chan)
            done = threading.Event()

            def one_beat(node: str) -> Iterator[agents_pb2.HeartbeatRequest]:
                yield agents_pb2.HeartbeatRequest(node=node, sequence=1)
                done.wait(30)  # the stream stays open

            beats = [agents.Heartbeat(one_beat(f"n{i}")) for i in range(2)]
            for call in beats:
                assert next(call).sequence == 1
            with pytest.raises(grpc.RpcError) as info:
                next(agents.Heartbeat(one_beat("n9")))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "streams" in (info.value.details() or "")
            done.set()
            for call in [*opened, again, *beats]:
                call.cancel()
    finally:
        cluster.kill()
