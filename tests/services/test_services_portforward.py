"""port-forward to a service: local port -> master -> the pod's node's agent -> the pod.

The forwarder runs in this process (root namespace, 127.0.0.1, a free port); the masters
listen on the root side of the bridge and reach each agent's endpoint at its node address;
the agent, inside its node namespace, connects to the pod IP through the node's routes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from svc_http import request
from svc_topology import WEB, ServicesCluster, Web, eventually, pods_of, wait_serving

from raftorch.client import Client
from raftorch.client.portforward import PortForwarder, resolver

pytestmark = [pytest.mark.docker, pytest.mark.processes]


@pytest.fixture
def forwarder(svc_cluster: ServicesCluster, web: Web) -> Iterator[tuple[Client, PortForwarder]]:
    client = svc_cluster.client()
    pf = PortForwarder(client, resolver(client, f"service/{WEB}", "default", 80), 0)
    thread = threading.Thread(target=pf.serve_forever, name="port-forward", daemon=True)
    thread.start()
    try:
        yield client, pf
    finally:
        pf.close()
        thread.join(5)
        client.close()


def _get_many(port: int, count: int, workers: int) -> list[str]:
    def one(_: int) -> str:
        try:
            return request(f"127.0.0.1:{port}", timeout=15.0)
        except (OSError, ValueError) as exc:
            return f"error: {type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(count)))


def test_port_forward_concurrent_requests_and_pod_replacement(svc_cluster: ServicesCluster,
                                                              forwarder: tuple[Client, PortForwarder]) -> None:
    client, pf = forwarder
    target = pf.check()
    answers = _get_many(pf.port, 20, 20)
    assert answers == [f"served by {target.pod}"] * 20, answers
    assert target.port == 8080

    # Replace the pod it forwards to: the next connections go to another ready pod.
    client.objects.delete("pods", target.pod, "default")
    after = [_get_many(pf.port, 1, 1)[0] for _ in range(5)]
    assert all(a.startswith("served by ") and a != f"served by {target.pod}" for a in after), after
    concurrent = _get_many(pf.port, 20, 20)
    assert all(a.startswith("served by ") and a != f"served by {target.pod}" for a in concurrent), concurrent
    eventually(lambda: target.pod not in {p.metadata.name for p in pods_of(client, WEB)}, 30,
               f"{target.pod} gone")
    wait_serving(client, WEB, WEB, 3)
    final = _get_many(pf.port, 5, 5)
    assert all(a.startswith("served by ") for a in final), final
    print(f"port-forward: 20 concurrent via {target.pod}; after deleting it: {sorted(set(after + concurrent))}; "
          f"connections served: {pf.connections}")
