"""plan_endpoints: which pod addresses and ports a service gets."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.master.controllers import endpoints_equal, plan_endpoints


def _service(*ports: objects_pb2.ServicePort) -> objects_pb2.Service:
    return objects_pb2.Service(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="shop", uid="svc-uid", labels={"tier": "front"},
                                        resource_version=12),
        spec=objects_pb2.ServiceSpec(selector={"app": "web"},
                                     ports=list(ports) or [objects_pb2.ServicePort(name="http", port=80,
                                                                                  target_port="8080")]),
    )


def _pod(name: str, ip: str = "", *, ready: bool = True, labels: dict[str, str] | None = None,
         http_port: int = 0, phase: str = "Running") -> objects_pb2.Pod:
    container = objects_pb2.Container(name="main")
    if http_port:
        container.ports.append(objects_pb2.ContainerPort(name="http", container_port=http_port))
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="shop", uid=f"uid-{name}",
                                        labels={"app": "web"} if labels is None else labels),
        spec=objects_pb2.PodSpec(node_name=f"node-{name}", containers=[container]),
        status=objects_pb2.PodStatus(phase=phase, pod_ip=ip or f"10.0.0.{len(name)}"),
    )
    pod.status.conditions.append(objects_pb2.Condition(type="Ready", status="True" if ready else "False"))
    return pod


def _ips(addresses: Iterable[objects_pb2.EndpointAddress]) -> list[str]:
    return [a.ip for a in addresses]


def test_ready_and_not_ready_pods_in_name_order() -> None:
    pods = [_pod("c", "10.0.0.3"), _pod("a", "10.0.0.1"), _pod("b", "10.0.0.2", ready=False)]
    endpoints = plan_endpoints(_service(), pods)
    assert endpoints.metadata == objects_pb2.ObjectMeta(name="web", namespace="shop", labels={"tier": "front"})
    (subset,) = endpoints.subsets
    assert _ips(subset.addresses) == ["10.0.0.1", "10.0.0.3"]
    assert _ips(subset.not_ready_addresses) == ["10.0.0.2"]
    assert list(subset.ports) == [objects_pb2.EndpointPort(name="http", port=8080, protocol="TCP")]
    first = subset.addresses[0]
    assert first.node_name == "node-a"
    assert first.target_ref == objects_pb2.ObjectReference(kind="Pod", namespace="shop", name="a", uid="uid-a")


def test_only_selected_live_pods_with_an_ip_are_listed() -> None:
    no_ip = _pod("no-ip")
    no_ip.status.pod_ip = ""
    leaving = _pod("leaving")
    leaving.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    elsewhere = _pod("elsewhere")
    elsewhere.metadata.namespace = "other"
    pods = [_pod("ok"), no_ip, leaving, elsewhere, _pod("other-app", labels={"app": "db"}),
            _pod("unlabelled", labels={}), _pod("failed", phase="Failed"), _pod("done", phase="Succeeded"),
            _pod("extra-labels", labels={"app": "web", "version": "2"})]
    (subset,) = plan_endpoints(_service(), pods).subsets
    assert [a.target_ref.name for a in subset.addresses] == ["extra-labels", "ok"]
    assert list(subset.not_ready_addresses) == []


def test_no_matching_pods_means_no_subsets() -> None:
    assert list(plan_endpoints(_service(), [_pod("x", labels={"app": "db"})]).subsets) == []


@pytest.mark.parametrize(("target", "expected"), [("", 80), ("9090", 9090), ("http", 8081)])
def test_target_port_forms(target: str, expected: int) -> None:
    service = _service(objects_pb2.ServicePort(name="web", port=80, target_port=target))
    (subset,) = plan_endpoints(service, [_pod("a", http_port=8081)]).subsets
    assert [p.port for p in subset.ports] == [expected]


def test_pods_disagreeing_on_a_named_port_form_several_subsets() -> None:
    service = _service(objects_pb2.ServicePort(name="http", port=80, target_port="http"),
                       objects_pb2.ServicePort(name="metrics", port=9100, target_port="9100", protocol="TCP"))
    pods = [_pod("a", "10.0.0.1", http_port=8080), _pod("b", "10.0.0.2", http_port=8081),
            _pod("c", "10.0.0.3", http_port=8080, ready=False), _pod("d", "10.0.0.4")]
    subsets = plan_endpoints(service, pods).subsets
    assert [([p.port for p in s.ports], _ips(s.addresses), _ips(s.not_ready_addresses)) for s in subsets] == [
        ([8080, 9100], ["10.0.0.1"], ["10.0.0.3"]),
        ([8081, 9100], ["10.0.0.2"], []),
        ([9100], ["10.0.0.4"], []),  # "d" has no port named http, but 9100 still applies
    ]
    assert plan_endpoints(service, pods[::-1]) == plan_endpoints(service, pods)


def test_a_pod_resolving_no_port_is_left_out() -> None:
    service = _service(objects_pb2.ServicePort(name="http", port=80, target_port="http"))
    (subset,) = plan_endpoints(service, [_pod("a", http_port=8080), _pod("b")]).subsets
    assert [a.target_ref.name for a in subset.addresses] == ["a"]


def test_named_ports_match_the_protocol() -> None:
    service = _service(objects_pb2.ServicePort(name="dns", port=53, target_port="http", protocol="UDP"))
    assert list(plan_endpoints(service, [_pod("a", http_port=8080)]).subsets) == []


def test_a_service_without_selector_has_no_planned_endpoints() -> None:
    service = _service()
    service.spec.selector.clear()
    with pytest.raises(Invalid, match="selector"):
        plan_endpoints(service, [_pod("a")])


def test_endpoints_equal_ignores_what_the_store_sets() -> None:
    planned = plan_endpoints(_service(), [_pod("a")])
    stored = objects_pb2.Endpoints()
    stored.CopyFrom(planned)
    stored.metadata.resource_version = 44
    stored.metadata.uid = "ep-uid"
    stored.metadata.creation_timestamp = "2024-01-01T00:00:00Z"
    assert endpoints_equal(planned, stored)
    assert endpoints_equal(planned, plan_endpoints(_service(), [_pod("a")]))
    assert not endpoints_equal(planned, plan_endpoints(_service(), [_pod("a", ready=False)]))
    assert not endpoints_equal(planned, plan_endpoints(_service(), [_pod("a"), _pod("b")]))
