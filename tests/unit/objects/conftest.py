"""Valid objects for the tests to break one field at a time."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2


def make_pod_spec() -> objects_pb2.PodSpec:
    spec = objects_pb2.PodSpec()
    container = spec.containers.add(name="web", image="nginx:1.25")
    container.ports.add(name="http", container_port=80)
    container.ports.add(name="metrics", container_port=9090)
    container.env.add(name="MODE", value="prod")
    container.resources.requests["cpu"] = "250m"
    container.resources.limits["cpu"] = "500m"
    container.resources.requests["memory"] = "64Mi"
    container.resources.limits["memory"] = "128Mi"
    container.liveness_probe.http_get.path = "/healthz"
    container.liveness_probe.http_get.port = "http"
    container.readiness_probe.tcp_socket.port = "80"
    spec.containers.add(name="sidecar", image="busybox").command.extend(["sleep", "3600"])
    return spec


@pytest.fixture
def pod() -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name = "web-1"
    pod.metadata.labels["app"] = "web"
    pod.spec.CopyFrom(make_pod_spec())
    return pod


@pytest.fixture
def deployment() -> objects_pb2.Deployment:
    deployment = objects_pb2.Deployment()
    deployment.metadata.name = "web"
    deployment.spec.replicas = 3
    deployment.spec.selector.match_labels["app"] = "web"
    deployment.spec.template.metadata.labels["app"] = "web"
    deployment.spec.template.metadata.labels["tier"] = "front"
    deployment.spec.template.spec.CopyFrom(make_pod_spec())
    return deployment


@pytest.fixture
def replica_set() -> objects_pb2.ReplicaSet:
    replica_set = objects_pb2.ReplicaSet()
    replica_set.metadata.name = "web-5d4f8"
    replica_set.spec.replicas = 2
    replica_set.spec.selector.match_labels["app"] = "web"
    replica_set.spec.template.metadata.labels["app"] = "web"
    replica_set.spec.template.spec.CopyFrom(make_pod_spec())
    return replica_set


@pytest.fixture
def service() -> objects_pb2.Service:
    service = objects_pb2.Service()
    service.metadata.name = "web"
    service.spec.selector["app"] = "web"
    service.spec.ports.add(name="http", port=80, target_port="http")
    service.spec.ports.add(name="metrics", port=9090)
    return service
