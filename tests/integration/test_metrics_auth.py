"""No port answers a stranger: a master's HTTP port bound off loopback is HTTPS and its /metrics
wants a bearer token with a role that reads (view and up); an agent's off-loopback /metrics
wants a client certificate from the cluster CA. /healthz stays open; the dashboard shows a
stranger its login page only."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters, free_ports
from tests.integration._inprocess import eventually

pytestmark = pytest.mark.processes


def host_address() -> str:
    """An address of this host that is not loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = str(s.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this host has no address besides loopback")
    return address


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[tuple[LocalMasters, str]]:
    """Three masters; m1's HTTP port on this host's own (non-loopback) address."""
    ip = host_address()
    (port,) = free_ports(1)
    masters = LocalMasters(tmp_path / "masters", extra_args=["--tls-sans", ip])
    m1 = next(iter(masters.masters.values()))
    m1.http_addr = f"{ip}:{port}"
    masters.start()
    try:
        masters.wait_ready()
        yield masters, m1.http_addr
    finally:
        masters.kill()


def _get(url: str, ctx: ssl.SSLContext, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        err.close()
        return err.code, body


def test_an_exposed_master_wants_https_and_a_token_for_metrics(exposed: tuple[LocalMasters, str]) -> None:
    masters, addr = exposed
    ctx = ssl.create_default_context(cafile=str(masters.admin.ca_file))
    base = f"https://{addr}"
    assert _get(base + "/healthz", ctx) == (200, "ok\n")
    code, body = _get(base + "/metrics", ctx)
    assert code == 401 and "bearer token" in body
    assert _get(base + "/metrics", ctx, "abcdefgh.not-a-real-secret-at-all-00000")[0] == 401
    with masters.client() as c:
        viewer = c.auth.create_token(name="prometheus", role="view").token
        limited = c.auth.create_token(name="team", role="edit", namespace="team-a").token
    # The exposed master checks tokens against its own copy of the store: wait until it has the
    # newer one (the viewer's was written before it).
    eventually(lambda: _get(base + "/metrics", ctx, limited)[0] != 401, what="the exposed master knows the tokens")
    code, body = _get(base + "/metrics", ctx, limited)
    assert code == 403 and "limited to namespace team-a" in body
    code, body = _get(base + "/metrics", ctx, viewer)
    assert code == 200
    names = {f.name for f in text_string_to_metric_families(body)}
    assert "raftorch_raft_term" in names
    # The dashboard: a stranger gets the login page, no data.
    code, body = _get(base + "/", ctx)
    assert code == 200 and 'id="login"' in body
    assert _get(base + "/api/overview", ctx)[0] == 401
    # Plain HTTP gets nothing from it.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).close()


def test_an_exposed_agent_wants_a_client_certificate_for_metrics(masters: LocalMasters, tmp_path: Path) -> None:
    ip = host_address()
    (port,) = free_ports(1)
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["exposed-a"], runtime="fake",
                         ca_dir=masters.pki_dir, extra_args=["--metrics-addr", f"{ip}:{port}"])
    agents.start()
    try:
        url = f"https://{ip}:{port}/metrics"
        stranger = ssl.create_default_context(cafile=str(masters.admin.ca_file))
        stranger.check_hostname = False  # the node's certificate names its node address, 127.0.0.1 here

        def refused() -> bool:
            try:
                urllib.request.urlopen(url, timeout=10, context=stranger).close()
            except urllib.error.URLError as err:
                return isinstance(err.reason, (ssl.SSLError, ConnectionResetError))
            except (ssl.SSLError, ConnectionResetError):
                return True
            return False

        eventually(refused, timeout=30, what="the agent's HTTPS port refusing a caller without a certificate")
        admin = ssl.create_default_context(cafile=str(masters.admin.ca_file))
        admin.check_hostname = False
        admin.load_cert_chain(str(masters.admin.cert_file), str(masters.admin.key_file))
        with urllib.request.urlopen(url, timeout=10, context=admin) as resp:
            names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        assert "raftorch_agent_containers" in names
    finally:
        agents.stop()
