"""Secure by default: TLS only, every RPC authenticated and authorized, joining with a token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from raftorch import rpc
from raftorch.agent import certs
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, auth_pb2, objects_pb2
from raftorch.auth import pki
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.errors import Invalid, PermissionDenied, Unauthenticated, Unavailable
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from raftorch.master.server import SERVICES

pytestmark = pytest.mark.processes


def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def with_token(masters: LocalMasters, token: str) -> Client:
    return Client(masters.endpoints, timeout=5.0, retry_for=5.0,
                  credentials=rpc.Credentials(masters.credentials.ca_pem, token=token))


def pod(name: str, namespace: str = "default") -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = name
    p.metadata.namespace = namespace
    c = p.spec.containers.add()
    c.name = "app"
    c.image = "web:v1"
    return p


def test_plaintext_client_fails(masters: LocalMasters) -> None:
    with Client(masters.endpoints, timeout=1.0, retry_for=1.0, credentials=rpc.INSECURE) as c, \
            pytest.raises(Unavailable, match="no credentials and speaks plaintext"):
        c.get("anything")


def test_tls_without_credentials_is_unauthenticated_on_every_rpc_but_health(masters: LocalMasters) -> None:
    pool = descriptor_pool.Default()
    anonymous = rpc.Credentials(masters.credentials.ca_pem)
    checked = 0
    with rpc.channel(masters.endpoints[0], anonymous) as chan:
        for service_name in SERVICES:
            service = pool.FindServiceByName(service_name)
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                empty = b""
                if method.client_streaming and method.server_streaming:
                    call = chan.stream_stream(path)(iter([empty]), timeout=5)
                    with pytest.raises(grpc.RpcError) as info:
                        list(call)
                elif method.server_streaming:
                    with pytest.raises(grpc.RpcError) as info:
                        list(chan.unary_stream(path)(empty, timeout=5))
                elif method.client_streaming:
                    with pytest.raises(grpc.RpcError) as info:
                        chan.stream_unary(path)(iter([empty]), timeout=5)
                else:
                    with pytest.raises(grpc.RpcError) as info:
                        chan.unary_unary(path)(empty, timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (path, info.value.details())
                checked += 1
        resp = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert checked >= 30


def test_reflection_is_off_by_default(masters: LocalMasters) -> None:
    with rpc.channel(masters.endpoints[0], masters.credentials) as chan:
        call = chan.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as info:
            list(call(iter([b""]), timeout=5))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_view_token_reads_but_cannot_write_or_port_forward(masters: LocalMasters) -> None:
    with masters.client() as admin:
        admin.objects.create(pod("existing"))
        token = admin.auth.create_token("viewer", "view").token
    with with_token(masters, token) as viewer:
        assert viewer.auth.whoami().name == "viewer"
        names = [p.metadata.name for p in viewer.objects.list("pods", "default")[0]]  # type: ignore[attr-defined]
        assert names == ["existing"]
        with pytest.raises(PermissionDenied, match=r'user "viewer" .*may not create pods in namespace default'):
            viewer.objects.create(pod("new"))
        with pytest.raises(PermissionDenied, match="may not delete pods"):
            viewer.objects.delete("pods", "existing", "default")
        stub = agents_pb2_grpc.PodsStub(rpc.channel(masters.endpoints[0], viewer.credentials))
        frames = iter([agents_pb2.PortForwardFrame(namespace="default", pod="existing", port=80)])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.PortForward(frames, timeout=5))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not create pods/portforward" in (info.value.details() or "")
        assert viewer.auth.can_i("list", "pods", "default").allowed
        assert not viewer.auth.can_i("create", "pods", "default").allowed


def test_edit_token_limited_to_one_namespace(masters: LocalMasters) -> None:
    with masters.client() as admin:
        for ns in ("team-a", "team-b"):
            n = objects_pb2.Namespace()
            n.metadata.name = ns
            admin.objects.create(n)
        admin.objects.create(pod("theirs", "team-b"))
        token = admin.auth.create_token("dev", "edit", namespace="team-a").token
    with with_token(masters, token) as dev:
        dev.objects.create(pod("mine", "team-a"))
        dev.objects.delete("pods", "mine", "team-a")
        with pytest.raises(PermissionDenied, match="limited to namespace team-a"):
            dev.objects.create(pod("intruder", "team-b"))
        with pytest.raises(PermissionDenied, match="limited to namespace team-a"):
            dev.objects.delete("pods", "theirs", "team-b")
        with pytest.raises(PermissionDenied):
            dev.objects.list("pods")  # every namespace
        with pytest.raises(PermissionDenied):
            dev.put("some-key", b"v")


def test_tokens_are_stored_hashed_listed_and_revoked(masters: LocalMasters) -> None:
    with masters.client() as admin:
        created = admin.auth.create_token("ops", "admin")
        secret = created.token.split(".")[1]
        raw = admin.get("/raftorch/tokens/", prefix=True)
        assert raw.kvs and all(secret.encode() not in kv.value for kv in raw.kvs)
        assert [t.id for t in admin.auth.list_tokens()] == [created.info.id]
        with with_token(masters, created.token) as ops:
            assert ops.auth.whoami().role == "admin"
        admin.auth.delete_token(created.info.id)
        with with_token(masters, created.token) as ops, pytest.raises(Unauthenticated, match="revoked"):
            ops.auth.whoami()
        with pytest.raises(PermissionDenied, match="owned by the masters"):
            admin.put("/raftorch/tokens/forged", b"{}")
        # Objects go through the Resources API (validation, allocation), never straight to the store.
        with pytest.raises(PermissionDenied, match="owned by the masters"):
            admin.put("/registry/pods/default/forged", b"\x0a\x00")


def test_audit_log_has_one_line_per_mutating_request(masters: LocalMasters) -> None:
    with masters.client(names=["m1"]) as admin:
        admin.objects.create(pod("audited"))
        admin.objects.list("pods", "default")
    lines = [json.loads(line) for line in (masters.root / "m1" / "audit.log").read_text().splitlines()]
    creates = [entry for entry in lines if entry["verb"] == "create" and entry["name"] == "audited"]
    assert len(creates) == 1
    assert creates[0]["identity"] == "user:admin" and creates[0]["resource"] == "pods"
    assert creates[0]["result"] == "OK" and creates[0]["time"].endswith("Z")
    assert not [entry for entry in lines if entry["verb"] == "list"]


def test_whoami_and_can_i_commands(masters: LocalMasters, tmp_path: Path) -> None:
    a = masters.admin
    config = tmp_path / "config.yaml"
    config.write_text(f"endpoints: {','.join(masters.endpoints)}\nca-file: {a.ca_file}\n"
                      f"cert-file: {a.cert_file}\nkey-file: {a.key_file}\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "auth", "whoami"])
    assert result.exit_code == 0 and "admin" in result.output, result.output
    result = runner.invoke(cli, ["--config", str(config), "token", "create", "reader", "--role", "view"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[0]
    result = runner.invoke(cli, ["--config", str(config), "--token", token, "auth", "can-i", "delete", "pods"])
    assert result.exit_code == 1 and result.output.startswith("no"), result.output
    result = runner.invoke(cli, ["--config", str(config), "--token", token, "auth", "can-i", "get", "po"])
    assert result.exit_code == 0 and result.output.startswith("yes"), result.output


# -- joining -------------------------------------------------------------------------------------

@pytest.fixture
def joinable(masters: LocalMasters) -> Iterator[tuple[LocalMasters, auth_pb2.CreateTokenResponse]]:
    with masters.client() as admin:
        yield masters, admin.auth.create_token(join=True, ttl=3600)


def test_join_gives_a_certificate_for_the_nodes_own_name(joinable: tuple[LocalMasters, auth_pb2.CreateTokenResponse]
                                                        ) -> None:
    masters, join = joinable
    cert = certs.join(masters.endpoints, "node-x", "127.0.0.1", join.token, join.ca_hash)
    subject = x509.load_pem_x509_certificate(cert.cert_pem).subject.rfc4514_string()
    assert subject == "CN=system:node:node-x"
    with Client(masters.endpoints, credentials=cert.credentials()) as node:
        assert node.auth.whoami().kind == "node"
    # A CSR for another node's name is refused.
    key = pki.new_key()
    csr = pki.make_csr(key, "system:node:node-y", [])
    with rpc.channel(masters.endpoints[0], rpc.Credentials(cert.ca_pem, token=join.token)) as chan:
        from raftorch.api.v1 import auth_pb2_grpc

        with pytest.raises(grpc.RpcError) as info:
            auth_pb2_grpc.AuthStub(chan).Join(auth_pb2.JoinRequest(node="node-x", csr=csr), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "may only ask for 'system:node:node-x'" in (info.value.details() or "")


def test_join_refuses_a_wrong_ca_pin(joinable: tuple[LocalMasters, auth_pb2.CreateTokenResponse]) -> None:
    masters, join = joinable
    with pytest.raises(Invalid, match="CA pin mismatch"):
        certs.join(masters.endpoints, "node-x", "127.0.0.1", join.token, "sha256:" + "0" * 64)


def test_join_refuses_revoked_and_expired_tokens(joinable: tuple[LocalMasters, auth_pb2.CreateTokenResponse]) -> None:
    masters, join = joinable
    with masters.client() as admin:
        admin.auth.delete_token(join.info.id)
        short = admin.auth.create_token(join=True, ttl=1)
    with pytest.raises(Unauthenticated, match=f"token {join.info.id}: revoked"):
        certs.join(masters.endpoints, "node-x", "127.0.0.1", join.token, join.ca_hash)
    # Used once while valid, then again after its expiry.
    certs.join(masters.endpoints, "node-y", "127.0.0.1", short.token, short.ca_hash)
    eventually(lambda: time.time() > short.info.expires, what="the token to expire")
    with pytest.raises(Unauthenticated, match=f"token {short.info.id}: expired"):
        certs.join(masters.endpoints, "node-z", "127.0.0.1", short.token, short.ca_hash)
    logs = "".join(m.log_path.read_text() for m in masters.masters.values())
    assert "join_refused" in logs and "revoked" in logs and "expired" in logs


def test_agent_renews_its_certificate_without_restarting_pods(tmp_path: Path) -> None:
    masters = LocalMasters(tmp_path / "masters", extra_args=["--node-cert-ttl", "12"])
    masters.start()
    agents = None
    try:
        masters.wait_ready()
        with masters.client() as admin:
            join = admin.auth.create_token(join=True)
        agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["node-r"], runtime="fake",
                             extra_args=["--join-token", join.token, "--ca-hash", join.ca_hash])
        agents.start()
        with masters.client() as admin:
            p = pod("steady")
            p.spec.node_name = "node-r"
            admin.objects.create(p)

            def running() -> objects_pb2.Pod | None:
                got = admin.objects.get("pods", "steady", "default")
                assert isinstance(got, objects_pb2.Pod)
                return got if got.status.phase == "Running" else None

            eventually(lambda: running() is not None, 60, "the pod to run")
            before = running()
            assert before is not None
            crt = agents.agents["node-r"].data_dir / "pki" / "node.crt"
            first = crt.read_bytes()
            log_path = agents.agents["node-r"].log_path
            eventually(lambda: crt.read_bytes() != first, 60, "a renewed certificate")
            eventually(lambda: log_path.read_text().count("node_certificate_renewed") >= 2, 60,
                       "a second renewal")
            after = running()
            assert after is not None
            assert after.metadata.uid == before.metadata.uid
            assert [c.restart_count for c in after.status.container_statuses] == \
                [c.restart_count for c in before.status.container_statuses]
            assert [c.container_id for c in after.status.container_statuses] == \
                [c.container_id for c in before.status.container_statuses]
            # The node still heartbeats (with its renewed certificate): it stays Ready.
            node = admin.objects.get("nodes", "node-r")
            assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)  # type: ignore[attr-defined]
    finally:
        if agents is not None:
            agents.kill()
        masters.kill()
