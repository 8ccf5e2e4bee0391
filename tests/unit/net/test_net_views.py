"""views_from: Services and Endpoints flattened into one view per service port."""

from __future__ import annotations

from collections.abc import Sequence

from raftorch.api.v1 import objects_pb2
from raftorch.net import EndpointView, ServiceView, views_from


def _service(name: str, *ports: objects_pb2.ServicePort, type_: str = "ClusterIP",
             cluster_ip: str = "10.96.0.10", namespace: str = "shop") -> objects_pb2.Service:
    return objects_pb2.Service(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace),
        spec=objects_pb2.ServiceSpec(type=type_, cluster_ip=cluster_ip, ports=list(ports)),
    )


def _endpoints(name: str, *subsets: objects_pb2.EndpointSubset, namespace: str = "shop") -> objects_pb2.Endpoints:
    return objects_pb2.Endpoints(metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace),
                                 subsets=list(subsets))


def _subset(ports: list[tuple[str, int, str]], ready: Sequence[str], not_ready: Sequence[str] = ()
            ) -> objects_pb2.EndpointSubset:
    return objects_pb2.EndpointSubset(
        addresses=[objects_pb2.EndpointAddress(ip=ip, node_name=f"node-{ip.rsplit('.', 1)[-1]}") for ip in ready],
        not_ready_addresses=[objects_pb2.EndpointAddress(ip=ip) for ip in not_ready],
        ports=[objects_pb2.EndpointPort(name=n, port=p, protocol=proto) for n, p, proto in ports],
    )


def test_one_view_per_port_with_ready_endpoints_matched_by_name() -> None:
    svc = _service("web", objects_pb2.ServicePort(name="http", protocol="TCP", port=80, target_port="http"),
                   objects_pb2.ServicePort(name="admin", protocol="TCP", port=9000, target_port="9001"))
    eps = _endpoints("web", _subset([("http", 8080, "TCP"), ("admin", 9001, "TCP")],
                                    ready=["10.1.0.3", "10.1.0.2"], not_ready=["10.1.0.9"]))
    views = views_from([svc], [eps])
    assert views == [
        ServiceView("shop", "web", "admin", "TCP", 9000, "10.96.0.10", 0,
                    (EndpointView("10.1.0.2", 9001, "node-2"), EndpointView("10.1.0.3", 9001, "node-3"))),
        ServiceView("shop", "web", "http", "TCP", 80, "10.96.0.10", 0,
                    (EndpointView("10.1.0.2", 8080, "node-2"), EndpointView("10.1.0.3", 8080, "node-3"))),
    ]
    assert views[1].key == "shop/web:http"


def test_named_target_port_resolved_differently_per_subset() -> None:
    svc = _service("web", objects_pb2.ServicePort(name="http", port=80, target_port="http"))
    eps = _endpoints("web", _subset([("http", 8080, "TCP")], ready=["10.1.0.2"]),
                     _subset([("http", 8081, "TCP")], ready=["10.1.0.3"]))
    (view,) = views_from([svc], [eps])
    assert view.protocol == "TCP"
    assert [(e.ip, e.port) for e in view.endpoints] == [("10.1.0.2", 8080), ("10.1.0.3", 8081)]


def test_protocol_must_match_and_udp_is_kept() -> None:
    svc = _service("dns", objects_pb2.ServicePort(name="dns", protocol="UDP", port=53),
                   objects_pb2.ServicePort(name="dns-tcp", protocol="TCP", port=53))
    eps = _endpoints("dns", _subset([("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("dns", 5353, "TCP")],
                                    ready=["10.1.0.2"]))
    views = {v.port_name: v for v in views_from([svc], [eps])}
    assert views["dns"].protocol == "UDP"
    assert [(e.ip, e.port) for e in views["dns"].endpoints] == [("10.1.0.2", 53)]
    assert [(e.ip, e.port) for e in views["dns-tcp"].endpoints] == [("10.1.0.2", 53)]


def test_node_port_only_for_nodeport_services() -> None:
    port = objects_pb2.ServicePort(name="http", port=80, node_port=30080)
    node = views_from([_service("a", port, type_="NodePort")], [])
    cluster = views_from([_service("b", port, type_="ClusterIP")], [])
    assert node[0].node_port == 30080
    assert node[0].endpoints == ()
    assert cluster[0].node_port == 0


def test_unusable_inputs_are_left_out() -> None:
    svc = _service("odd", objects_pb2.ServicePort(name="sctp", protocol="SCTP", port=80),
                   objects_pb2.ServicePort(name="zero", port=0),
                   objects_pb2.ServicePort(name="ok", port=80), cluster_ip="None")
    eps = _endpoints("odd", _subset([("ok", 8080, "TCP")], ready=["fd00::1", "not-an-ip", "10.1.0.2", "10.1.0.2"]))
    (view,) = views_from([svc], [eps])
    assert view.port_name == "ok"
    assert view.cluster_ip == ""
    assert [e.ip for e in view.endpoints] == ["10.1.0.2"]


def test_endpoints_of_another_namespace_do_not_count() -> None:
    svc = _service("web", objects_pb2.ServicePort(name="http", port=80))
    eps = _endpoints("web", _subset([("http", 8080, "TCP")], ready=["10.1.0.2"]), namespace="other")
    assert views_from([svc], [eps])[0].endpoints == ()


def test_views_sorted_and_unnamed_port_matches_unnamed() -> None:
    b = _service("b", objects_pb2.ServicePort(port=80))
    a = _service("a", objects_pb2.ServicePort(port=80), namespace="zz")
    a0 = _service("a", objects_pb2.ServicePort(port=80))
    eps = _endpoints("b", _subset([("", 8080, "")], ready=["10.1.0.2"]))
    views = views_from([b, a, a0], [eps])
    assert [(v.namespace, v.name) for v in views] == [("shop", "a"), ("shop", "b"), ("zz", "a")]
    assert views[1].key == "shop/b"
    assert [(e.ip, e.port) for e in views[1].endpoints] == [("10.1.0.2", 8080)]
