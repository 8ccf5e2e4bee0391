"""The pure parts of authentication and authorization: certificates, tokens, roles, proofs."""

from __future__ import annotations

import datetime as dt

import pytest

from raftorch.api.v1 import agents_pb2, auth_pb2, kv_pb2, objects_pb2, resources_pb2
from raftorch.auth import Identity, node_identity, pki, rbac, tokens
from raftorch.auth.proof import CertProof, ProofVerifier
from raftorch.errors import Invalid, PermissionDenied, Unauthenticated

ADMIN = Identity("user", "root", "admin")
VIEWER = Identity("user", "vic", "view")
EDITOR_A = Identity("user", "ed", "edit", "team-a")


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.create_ca()


def test_subjects_carry_identities_both_ways(ca: pki.CertKey) -> None:
    for ident in (ADMIN, EDITOR_A, node_identity("node-1"), Identity("master", "m1", "admin")):
        pair = pki.issue_pair(ca, ident)
        assert pki.CertVerifier(ca.cert_pem).identity(pair.cert_pem) == ident


def test_certificates_of_another_ca_or_expired_are_refused(ca: pki.CertKey) -> None:
    other = pki.create_ca()
    stranger = pki.issue_pair(other, ADMIN)
    with pytest.raises(Unauthenticated, match="not issued by this cluster's CA"):
        pki.CertVerifier(ca.cert_pem).identity(stranger.cert_pem)
    old = pki.issue_pair(ca, ADMIN, lifetime=dt.timedelta(seconds=1),
                         now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    with pytest.raises(Unauthenticated, match="expired"):
        pki.CertVerifier(ca.cert_pem).identity(old.cert_pem)


def test_node_csr_is_signed_for_its_own_name_only(ca: pki.CertKey) -> None:
    key = pki.new_key()
    csr = pki.make_csr(key, "system:node:node-1", ["10.0.0.21"])
    cert = pki.sign_node_csr(ca, csr, "node-1")
    assert pki.CertVerifier(ca.cert_pem).identity(cert) == node_identity("node-1")
    with pytest.raises(Invalid, match="may only ask for 'system:node:node-2'"):
        pki.sign_node_csr(ca, csr, "node-2")
    with pytest.raises(Invalid, match="not a PEM"):
        pki.sign_node_csr(ca, b"junk", "node-1")


def test_ca_hash_is_the_public_key_pin(ca: pki.CertKey) -> None:
    pin = pki.ca_hash(ca.cert_pem)
    assert pin.startswith("sha256:") and len(pin) == 7 + 64
    assert pki.ca_hash(pki.create_ca().cert_pem) != pin


def test_tokens_are_hashed_expire_and_revoke() -> None:
    text = tokens.generate()
    token_id, secret = tokens.parse(text)
    record = tokens.new_record(text, "user", "alice", "view", "", 10.0, now=100.0)
    assert secret not in record.to_json().decode() and record.hash == tokens.hash_secret(secret)
    assert tokens.verify(record, token_id, secret, 105.0, "user").identity() == Identity("user", "alice", "view")
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(record, token_id, secret, 110.0, "user")
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.verify(record.revoke(), token_id, secret, 105.0, "user")
    with pytest.raises(Unauthenticated, match="unknown token"):
        tokens.verify(record, token_id, "x" * 32, 105.0, "user")
    with pytest.raises(Unauthenticated, match="cannot join"):
        tokens.verify(record, token_id, secret, 105.0, "join")
    with pytest.raises(Unauthenticated, match="malformed"):
        tokens.parse("no-dot")
    with pytest.raises(Invalid, match="role"):
        tokens.new_record(tokens.generate(), "user", "bob", "root", "", 0, 0)
    join = tokens.new_record(tokens.generate(), "join", "", "", "", 0, now=0.0)
    assert join.expires == tokens.JOIN_TTL


def _create(ns: str, kind: str = "pod") -> resources_pb2.CreateRequest:
    obj = objects_pb2.Object()
    inner = getattr(obj, kind)
    inner.metadata.name = "x"
    inner.metadata.namespace = ns
    return resources_pb2.CreateRequest(object=obj)


@pytest.mark.parametrize(("ident", "method", "request_", "allowed"), [
    (VIEWER, "/raftorch.v1.Resources/List", resources_pb2.ListRequest(kind="pods"), True),
    (VIEWER, "/raftorch.v1.Resources/Create", _create("default"), False),
    (VIEWER, "/raftorch.v1.Pods/Logs", agents_pb2.LogsRequest(pod="p"), True),
    (VIEWER, "/raftorch.v1.Pods/PortForward", agents_pb2.PortForwardFrame(pod="p", port=80), False),
    (VIEWER, "/raftorch.v1.Auth/ListTokens", None, False),
    (EDITOR_A, "/raftorch.v1.Resources/Create", _create("team-a"), True),
    (EDITOR_A, "/raftorch.v1.Resources/Create", _create("team-b"), False),
    (EDITOR_A, "/raftorch.v1.Resources/List", resources_pb2.ListRequest(kind="pods"), False),
    (EDITOR_A, "/raftorch.v1.Resources/List", resources_pb2.ListRequest(kind="nodes"), True),
    (EDITOR_A, "/raftorch.v1.KV/Put", kv_pb2.PutRequest(key="k"), False),
    (ADMIN, "/raftorch.v1.KV/Put", kv_pb2.PutRequest(key="/registry/pods/default/x"), False),
    (ADMIN, "/raftorch.v1.KV/Range", kv_pb2.RangeRequest(key="", prefix=True), True),
    (VIEWER, "/raftorch.v1.KV/Range", kv_pb2.RangeRequest(key="/raftorch/tokens/", prefix=True), False),
    (ADMIN, "/raftorch.v1.Auth/CreateToken", auth_pb2.CreateTokenRequest(name="x"), True),
    (node_identity("n1"), "/raftorch.v1.Agents/ReportPodStatus", agents_pb2.ReportPodStatusRequest(node="n1"), True),
    (node_identity("n1"), "/raftorch.v1.Resources/Create", _create("default", "deployment"), False),
    (node_identity("n1"), "/raftorch.v1.Resources/List", resources_pb2.ListRequest(kind="services"), True),
    (node_identity("n1"), "/raftorch.v1.Auth/ListTokens", None, False),
])
def test_roles(ident: Identity, method: str, request_: object, allowed: bool) -> None:
    req = rbac.request_for(method, request_)  # type: ignore[arg-type]
    assert req is not None
    assert (rbac.decide(ident, req) is None) == allowed, rbac.decide(ident, req)


def test_refusals_name_identity_verb_and_resource() -> None:
    req = rbac.request_for("/raftorch.v1.Resources/Create", _create("team-b"))
    assert req is not None
    with pytest.raises(PermissionDenied) as info:
        rbac.check(EDITOR_A, req)
    assert str(info.value) == ('user "ed" (role edit in namespace team-a) may not create pods in namespace '
                               "team-b 'x': limited to namespace team-a")


def test_resource_names_as_users_write_them() -> None:
    assert rbac.parse_resource("po") == "pods"
    assert rbac.parse_resource("Deployment") == "deployments"
    assert rbac.parse_resource("pods/portforward") == "pods/portforward"
    with pytest.raises(Invalid, match="unknown resource"):
        rbac.parse_resource("widgets")


def test_certificate_proofs(ca: pki.CertKey) -> None:
    pair = pki.issue_pair(ca, ADMIN)
    now = [pki.not_before(pair.cert_pem).timestamp() + 600]
    plugin = CertProof(pair.cert_pem, pair.key_pem, clock=lambda: now[0])
    verifier = ProofVerifier(pki.CertVerifier(ca.cert_pem), clock=lambda: now[0])
    (_, cert), (_, proof) = plugin.metadata()
    assert verifier.identity(cert, proof) == ADMIN
    stamp, _, sig = proof.partition(".")
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier.identity(cert, f"{int(stamp) + 1}.{sig}")
    now[0] += 1000
    with pytest.raises(Unauthenticated, match="too old"):
        verifier.identity(cert, proof)
