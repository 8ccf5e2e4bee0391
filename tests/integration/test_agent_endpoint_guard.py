"""Only masters get into the agent endpoint: its TLS takes client certificates of the cluster CA
only (gRPC checks chain and validity in the handshake), and its guard lets masters through."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
import pytest

from raftorch import rpc
from raftorch.agent.certs import NodeCert
from raftorch.agent.endpoint import NodeAgentEndpoint, serve
from raftorch.agent.runtime.fake import FakeRuntime
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc
from raftorch.auth import Identity, master_identity, node_identity, pki
from raftorch.auth.master_only import MasterOnlyInterceptor


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.create_ca()


@pytest.fixture
def endpoint(ca: pki.CertKey) -> Iterator[str]:
    pair = pki.issue_node(ca, "n1", "127.0.0.1")
    cert = NodeCert(ca.cert_pem, pair.cert_pem, pair.key_pem)
    server, port = serve(NodeAgentEndpoint(lambda ns, name: None, FakeRuntime(), "n1"), "127.0.0.1:0",
                         interceptors=[MasterOnlyInterceptor()], tls=cert.server_tls())
    yield f"127.0.0.1:{port}"
    server.stop(0).wait(5)


def logs_code(address: str, ca_pem: bytes, client: pki.CertKey) -> grpc.StatusCode:
    """The status of a Logs call for a pod the node does not have (NOT_FOUND: the guard let it in)."""
    with rpc.channel(address, rpc.Credentials(ca_pem, client.cert_pem, client.key_pem)) as chan:
        stub = agents_pb2_grpc.NodeAgentStub(chan)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Logs(agents_pb2.LogsRequest(namespace="default", pod="web", container="c"), timeout=10))
    code: grpc.StatusCode = info.value.code()
    return code


def test_a_master_gets_in(ca: pki.CertKey, endpoint: str) -> None:
    assert logs_code(endpoint, ca.cert_pem, pki.issue_pair(ca, master_identity("m1"))) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("ident", [node_identity("n2"), Identity("user", "root", "admin")])
def test_nodes_and_users_are_refused(ca: pki.CertKey, endpoint: str, ident: Identity) -> None:
    assert logs_code(endpoint, ca.cert_pem, pki.issue_pair(ca, ident)) == grpc.StatusCode.PERMISSION_DENIED


def test_certificates_of_another_ca_and_expired_ones_are_refused(ca: pki.CertKey, endpoint: str) -> None:
    stranger = pki.issue_pair(pki.create_ca(), master_identity("m1"))
    assert logs_code(endpoint, ca.cert_pem, stranger) == grpc.StatusCode.UNAVAILABLE
    expired = pki.issue_pair(ca, master_identity("m1"), lifetime=dt.timedelta(hours=1),
                             now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    assert logs_code(endpoint, ca.cert_pem, expired) == grpc.StatusCode.UNAVAILABLE


def test_a_caller_without_a_certificate_is_refused(ca: pki.CertKey, endpoint: str) -> None:
    with rpc.channel(endpoint, rpc.Credentials(ca.cert_pem)) as chan, pytest.raises(grpc.RpcError) as info:
        list(agents_pb2_grpc.NodeAgentStub(chan).Logs(agents_pb2.LogsRequest(pod="web"), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
