from __future__ import annotations

import pytest
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.defaults import DEFAULT_NAMESPACE, apply_defaults, default_pod_spec
from raftorch.objects.kinds import KINDS, Kind, wrap
from raftorch.objects.meta import meta
from raftorch.objects.validation import validate


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_namespace_defaults_only_for_namespaced_kinds(kind: Kind) -> None:
    msg = kind.message()
    apply_defaults(msg)
    assert meta(msg).namespace == (DEFAULT_NAMESPACE if kind.namespaced else "")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_namespace_the_user_chose_is_kept(kind: Kind) -> None:
    msg = kind.message()
    meta(msg).namespace = "prod"
    apply_defaults(msg)
    # Kept even where it is wrong (cluster-scoped kinds): validation reports it, defaults do not hide it.
    assert meta(msg).namespace == "prod"


def test_pod_defaults(pod: objects_pb2.Pod) -> None:
    apply_defaults(pod)
    spec = pod.spec
    assert spec.restart_policy == "Always"
    assert spec.termination_grace_period_seconds == 30
    assert [c.image_pull_policy for c in spec.containers] == ["IfNotPresent", "IfNotPresent"]
    assert [p.protocol for p in spec.containers[0].ports] == ["TCP", "TCP"]
    liveness, readiness = spec.containers[0].liveness_probe, spec.containers[0].readiness_probe
    for probe in (liveness, readiness):
        assert (probe.initial_delay_seconds, probe.period_seconds, probe.timeout_seconds, probe.success_threshold,
                probe.failure_threshold) == (0, 10, 1, 1, 3)
    assert (liveness.http_get.path, liveness.http_get.scheme) == ("/healthz", "HTTP")
    assert not spec.containers[1].HasField("liveness_probe")
    assert not spec.containers[1].HasField("readiness_probe")


def test_latest_images_are_not_pulled_always() -> None:
    spec = objects_pb2.PodSpec()
    spec.containers.add(name="app", image="app:latest")
    default_pod_spec(spec)
    assert spec.containers[0].image_pull_policy == "IfNotPresent"


def test_http_probe_path_and_scheme_default() -> None:
    spec = objects_pb2.PodSpec()
    spec.containers.add(name="app", image="app").readiness_probe.http_get.port = "8080"
    default_pod_spec(spec)
    http_get = spec.containers[0].readiness_probe.http_get
    assert (http_get.path, http_get.scheme, http_get.port) == ("/", "HTTP", "8080")


def test_pod_defaults_keep_what_the_user_chose(pod: objects_pb2.Pod) -> None:
    spec = pod.spec
    spec.restart_policy = "OnFailure"
    spec.termination_grace_period_seconds = 5
    container = spec.containers[0]
    container.image_pull_policy = "Never"
    container.ports[0].protocol = "UDP"
    container.liveness_probe.period_seconds = 3
    container.liveness_probe.failure_threshold = 7
    container.liveness_probe.http_get.scheme = "HTTPS"
    apply_defaults(pod)
    assert (spec.restart_policy, spec.termination_grace_period_seconds) == ("OnFailure", 5)
    assert (container.image_pull_policy, container.ports[0].protocol) == ("Never", "UDP")
    probe = container.liveness_probe
    assert (probe.period_seconds, probe.failure_threshold, probe.http_get.scheme) == (3, 7, "HTTPS")


def test_deployment_defaults() -> None:
    deployment = objects_pb2.Deployment()
    deployment.spec.template.spec.containers.add(name="web", image="nginx")
    apply_defaults(deployment)
    spec = deployment.spec
    assert spec.HasField("replicas") and spec.replicas == 1
    assert spec.HasField("revision_history_limit") and spec.revision_history_limit == 10
    assert spec.strategy.type == "RollingUpdate"
    assert (spec.strategy.rolling_update.max_surge, spec.strategy.rolling_update.max_unavailable) == ("25%", "25%")
    assert spec.template.spec.restart_policy == "Always"
    assert spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_deployment_defaults_keep_explicit_zeroes_and_choices(deployment: objects_pb2.Deployment) -> None:
    spec = deployment.spec
    spec.replicas = 0
    spec.revision_history_limit = 0
    spec.strategy.rolling_update.max_surge = "0"
    apply_defaults(deployment)
    assert (spec.replicas, spec.revision_history_limit) == (0, 0)
    assert (spec.strategy.rolling_update.max_surge, spec.strategy.rolling_update.max_unavailable) == ("0", "25%")


def test_recreate_deployments_get_no_rolling_update(deployment: objects_pb2.Deployment) -> None:
    deployment.spec.strategy.type = "Recreate"
    apply_defaults(deployment)
    assert not deployment.spec.strategy.HasField("rolling_update")
    validate(deployment)


def test_replica_set_defaults(replica_set: objects_pb2.ReplicaSet) -> None:
    replica_set.spec.replicas = 0
    apply_defaults(replica_set)
    # Not optional in the schema: 0 cannot be told from absent, so it stays 0.
    assert replica_set.spec.replicas == 0
    assert replica_set.spec.template.spec.restart_policy == "Always"
    assert replica_set.metadata.namespace == "default"


def test_service_defaults() -> None:
    service = objects_pb2.Service()
    service.spec.ports.add(port=80)
    service.spec.ports.add(port=53, protocol="UDP", target_port="dns")
    apply_defaults(service)
    assert service.spec.type == "ClusterIP"
    assert [(p.protocol, p.target_port) for p in service.spec.ports] == [("TCP", "80"), ("UDP", "dns")]


def test_service_type_chosen_is_kept() -> None:
    service = objects_pb2.Service(spec=objects_pb2.ServiceSpec(type="NodePort"))
    apply_defaults(service)
    assert service.spec.type == "NodePort"


def test_endpoints_and_namespace_defaults() -> None:
    endpoints = objects_pb2.Endpoints()
    endpoints.subsets.add().ports.add(port=80)
    apply_defaults(endpoints)
    assert endpoints.subsets[0].ports[0].protocol == "TCP"
    namespace = objects_pb2.Namespace()
    apply_defaults(namespace)
    assert namespace.status.phase == "Active"


def test_apply_defaults_reaches_into_an_object_wrapper(pod: objects_pb2.Pod) -> None:
    obj = wrap(pod)
    apply_defaults(obj)
    assert obj.pod.metadata.namespace == "default"
    assert obj.pod.spec.restart_policy == "Always"


@pytest.mark.parametrize("fixture", ["pod", "deployment", "replica_set", "service"])
def test_apply_defaults_is_idempotent_and_keeps_objects_valid(fixture: str, request: pytest.FixtureRequest) -> None:
    msg: Message = request.getfixturevalue(fixture)
    validate(msg)
    apply_defaults(msg)
    once = msg.SerializeToString(deterministic=True)
    apply_defaults(msg)
    assert msg.SerializeToString(deterministic=True) == once
    validate(msg)


@pytest.mark.parametrize("msg", [objects_pb2.Object(), objects_pb2.PodSpec()])
def test_apply_defaults_rejects_what_is_not_an_object(msg: Message) -> None:
    with pytest.raises(Invalid):
        apply_defaults(msg)
