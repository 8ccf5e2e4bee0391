"""Endpoints controller, pure: the addresses and ports a service's selector picks out."""

from __future__ import annotations

from collections.abc import Sequence

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.master.controllers._util import labels_match, pod_is_ready, pod_is_terminal, pod_is_terminating

TCP = "TCP"

_PortsKey = tuple[tuple[str, int, str], ...]


def plan_endpoints(service: objects_pb2.Service, pods: Sequence[objects_pb2.Pod]) -> objects_pb2.Endpoints:
    """The Endpoints object for `service`, which must have a selector (endpoints of services
    without one are written by hand and never planned; raises Invalid).

    A pod is listed when it is in the service's namespace, carries every selector label, has
    an IP and is neither terminating nor finished; ready pods in `addresses`, the others in
    `not_ready_addresses`. Pods whose named target ports resolve to different numbers land in
    different subsets, one per distinct list of resolved ports; a pod resolving none of the
    service's ports is left out."""
    if not service.spec.selector:
        raise Invalid(f"service {service.metadata.name}: has no selector; its endpoints are not managed")
    subsets: dict[_PortsKey, objects_pb2.EndpointSubset] = {}
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        if not _selected(service, pod):
            continue
        ports = [port for sp in service.spec.ports if (port := _endpoint_port(sp, pod)) is not None]
        if service.spec.ports and not ports:
            continue
        key = tuple((p.name, p.port, p.protocol) for p in ports)
        subset = subsets.get(key)
        if subset is None:
            subset = subsets[key] = objects_pb2.EndpointSubset(ports=ports)
        address = objects_pb2.EndpointAddress(
            ip=pod.status.pod_ip,
            node_name=pod.spec.node_name,
            target_ref=objects_pb2.ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                                   name=pod.metadata.name, uid=pod.metadata.uid),
        )
        (subset.addresses if pod_is_ready(pod) else subset.not_ready_addresses).append(address)
    return objects_pb2.Endpoints(
        metadata=objects_pb2.ObjectMeta(name=service.metadata.name, namespace=service.metadata.namespace,
                                        labels=dict(service.metadata.labels)),
        subsets=[subsets[key] for key in sorted(subsets)],
    )


def endpoints_equal(a: objects_pb2.Endpoints, b: objects_pb2.Endpoints) -> bool:
    """Equal up to what the store sets: resource_version, and also uid, generation and
    creation_timestamp, so a planned object compares equal to its stored twin."""
    return _comparable(a) == _comparable(b)


def _comparable(endpoints: objects_pb2.Endpoints) -> objects_pb2.Endpoints:
    copy = objects_pb2.Endpoints()
    copy.CopyFrom(endpoints)
    for field in ("resource_version", "uid", "generation", "creation_timestamp"):
        copy.metadata.ClearField(field)
    return copy


def _selected(service: objects_pb2.Service, pod: objects_pb2.Pod) -> bool:
    return (pod.metadata.namespace == service.metadata.namespace
            and labels_match(service.spec.selector, pod.metadata.labels)
            and bool(pod.status.pod_ip)
            and not pod_is_terminating(pod)
            and not pod_is_terminal(pod))


def _endpoint_port(port: objects_pb2.ServicePort, pod: objects_pb2.Pod) -> objects_pb2.EndpointPort | None:
    protocol = port.protocol or TCP
    number = _target_port(port, protocol, pod)
    if number is None:
        return None
    return objects_pb2.EndpointPort(name=port.name, port=number, protocol=protocol)


def _target_port(port: objects_pb2.ServicePort, protocol: str, pod: objects_pb2.Pod) -> int | None:
    target = port.target_port.strip()
    if not target:
        return port.port
    if target.isdigit():
        return int(target)
    for container in pod.spec.containers:
        for cp in container.ports:
            if cp.name == target and (cp.protocol or TCP) == protocol:
                return cp.container_port
    return None
