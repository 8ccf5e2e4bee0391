"""Probe trackers (pure: delays, periods, thresholds) and running probes (exec, HTTP, TCP on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raftorch.agent.probes import LIVENESS, READINESS, ProbeSettings, ProbeTracker, probe_port, run_probe
from raftorch.agent.runtime.base import ContainerSpec
from raftorch.agent.runtime.fake import FakeRuntime
from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid

T0 = 1000.0


def tracker(kind: str = READINESS, *, delay: float = 0, period: float = 10, success: int = 1,
            failure: int = 3) -> ProbeTracker:
    return ProbeTracker.start(kind, ProbeSettings(delay, period, 1, success, failure), "c1", T0)


def test_initial_delay_then_every_period() -> None:
    t = tracker(delay=5, period=10)
    assert not t.due(T0 + 4.9)
    assert t.due(T0 + 5)
    t = t.record(True, T0 + 5)
    assert not t.due(T0 + 14.9)
    assert t.due(T0 + 15) and t.next_due == T0 + 15


def test_readiness_starts_failing_and_needs_success_threshold() -> None:
    t = tracker(READINESS, success=3)
    assert not t.passing
    t = t.record(True, T0).record(True, T0 + 10)
    assert not t.passing
    t = t.record(False, T0 + 20).record(True, T0 + 30).record(True, T0 + 40)
    assert not t.passing  # a failure restarts the count
    assert t.record(True, T0 + 50).passing


def test_failure_threshold_counts_consecutive_failures() -> None:
    t = tracker(LIVENESS, failure=3)
    assert t.passing and not t.failed
    t = t.record(False, T0).record(False, T0 + 10).record(True, T0 + 20)
    t = t.record(False, T0 + 30).record(False, T0 + 40)
    assert t.passing
    t = t.record(False, T0 + 50)
    assert t.failed and t.failures == 3
    assert t.record(True, T0 + 60).passing  # success threshold 1


def test_settings_from_proto_fill_defaults() -> None:
    assert ProbeSettings.from_proto(objects_pb2.Probe()) == ProbeSettings(0, 10, 1, 1, 3)
    probe = objects_pb2.Probe(initial_delay_seconds=2, period_seconds=3, timeout_seconds=4, success_threshold=5,
                              failure_threshold=6)
    assert ProbeSettings.from_proto(probe) == ProbeSettings(2, 3, 4, 5, 6)


def test_kind_is_checked_and_verdict_can_be_seeded() -> None:
    with pytest.raises(Invalid):
        ProbeTracker.start("startup", ProbeSettings(), "c1", T0)
    assert ProbeTracker.start(READINESS, ProbeSettings(), "c1", T0, passing=True).passing


def test_probe_port_by_number_or_name() -> None:
    assert probe_port("8080", {}) == 8080
    assert probe_port("http", {"http": 80}) == 80
    with pytest.raises(Invalid, match="not a number nor a named port"):
        probe_port("metrics", {"http": 80})


# -- running probes -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/moved": 302, "/broken": 500, "/missing": 404}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("path", "ok"), [("/ok", True), ("/moved", True), ("/broken", False), ("/missing", False)])
def test_http_get_probe(http_port: int, path: str, ok: bool) -> None:
    probe = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path=path, port="web"), timeout_seconds=2)
    assert run_probe(probe, "127.0.0.1", "c1", FakeRuntime(), {"web": http_port}) is ok


def test_http_probe_to_a_closed_port_fails() -> None:
    probe = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/", port=str(free_port())))
    assert run_probe(probe, "127.0.0.1", "c1", FakeRuntime()) is False


def test_tcp_probe() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=str(port)))
        assert run_probe(probe, "127.0.0.1", "c1", FakeRuntime()) is True
    assert run_probe(probe, "127.0.0.1", "c1", FakeRuntime()) is False


def test_exec_probe_uses_the_runtime() -> None:
    runtime = FakeRuntime()
    info = runtime.create_and_start(ContainerSpec("u", "ns", "p", "n", "c", "img"))
    probe = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["cat", "/tmp/healthy"]), timeout_seconds=3)
    assert run_probe(probe, "", info.id, runtime) is True
    assert runtime.calls[-1] == ("exec", info.id, "cat", "/tmp/healthy")
    runtime.set_exec_result(info.id, 1)
    assert run_probe(probe, "", info.id, runtime) is False
    runtime.set_exec_result(info.id, None)  # times out
    assert run_probe(probe, "", info.id, runtime) is False
    assert run_probe(probe, "", "no-such-container", runtime) is False


def test_probe_without_an_action_is_invalid() -> None:
    with pytest.raises(Invalid):
        run_probe(objects_pb2.Probe(), "127.0.0.1", "c1", FakeRuntime())
