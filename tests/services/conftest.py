"""Fixtures of the services tests: one cluster for the whole directory (see svc_topology).

`svc_cluster` builds the namespaces, starts three masters and two agents (iptables mode) and
tears everything down at the end, also when a test fails; `web` is the deployment the tests
share (3 httpd replicas behind the NodePort service `web`), brought back to 3 Ready replicas,
all in the endpoints and all in every node's rules, before each test that uses it.

Skipped without root, `ip netns`, iptables or Docker (and its raftorch/busybox image); with
CI set, those are failures instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from svc_topology import (
    WEB,
    ServicesCluster,
    Unusable,
    Web,
    ci,
    deployment,
    eventually,
    require_support,
    scale,
    service,
    wait_serving,
)

from raftorch.api.v1 import objects_pb2


@pytest.fixture(scope="session")
def svc_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesCluster]:
    try:
        require_support()
    except Unusable as why:
        if ci():
            pytest.fail(f"{why} (required when CI is set)")
        pytest.skip(str(why))
    cluster = ServicesCluster(tmp_path_factory.mktemp("services"))
    try:
        cluster.start()
        yield cluster
    finally:
        print(cluster.log_tails())
        cluster.teardown()


@pytest.fixture(scope="session")
def web_service(svc_cluster: ServicesCluster) -> Web:
    with svc_cluster.client() as c:
        c.objects.create(deployment(WEB, 3))
        svc = c.objects.create(service(WEB, WEB, "NodePort"))
        assert isinstance(svc, objects_pb2.Service)
        return Web(WEB, svc.spec.ports[0].node_port, svc.spec.cluster_ip)


@pytest.fixture
def web(svc_cluster: ServicesCluster, web_service: Web) -> Web:
    """3 Ready replicas, in the endpoints and in every node's rules (or proxy)."""
    with svc_cluster.client() as c:
        scale(c, WEB, 3)
        pods = wait_serving(c, WEB, WEB, 3)
    names = {p.metadata.name for p in pods}

    def every_node_reaches_every_pod() -> bool:
        for node, target in web_service.targets(svc_cluster).items():
            host = svc_cluster.hosts[node]
            if host.mode == "iptables":
                rules = svc_cluster.iptables_save(node, "nat")
                if not all(f"--to-destination {p.status.pod_ip}:8080" in rules for p in pods):
                    return False
            answer = svc_cluster.get(svc_cluster.client_ns, [target], count=1)[0]
            if answer.get("ok", "").removeprefix("served by ") not in names:
                return False
        return True

    eventually(every_node_reaches_every_pod, 30, "every node serving the web pods", period=0.2)
    return web_service
