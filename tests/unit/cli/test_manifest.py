"""Kubernetes manifests to protobuf objects and back (raftorch.objects.manifest)."""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import pytest
import yaml

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import apply_defaults, validate
from raftorch.objects.manifest import APPLICABLE_KINDS, api_version, from_manifest, kind_of_manifest, to_manifest

# As a user would write them for Kubernetes: numbers for ports, int-or-string and quantities.
KUBERNETES_YAML = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 3
  selector:
    matchLabels:
      app: hello
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 25%
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: hello
        image: hashicorp/http-echo:1.0
        args: ["-text=hello", "-listen=:5678"]
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 5678
          name: http
        env:
        - name: REPLICAS
          value: 3
        - name: DEBUG
          value: true
        resources:
          requests:
            cpu: 0.1
            memory: 32Mi
          limits:
            cpu: 1
            memory: 64Mi
        readinessProbe:
          httpGet:
            path: /
            port: 5678
        livenessProbe:
          tcpSocket:
            port: http
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector:
    app: hello
  ports:
  - port: 80
    targetPort: 5678
    nodePort: 30080
    protocol: TCP
"""


def docs() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(KUBERNETES_YAML))


def test_kubernetes_deployment_is_read_with_kubernetes_isms_normalised() -> None:
    d = from_manifest(docs()[0])
    assert isinstance(d, objects_pb2.Deployment)
    assert d.metadata.name == "hello" and d.spec.replicas == 3
    assert dict(d.spec.selector.match_labels) == {"app": "hello"}
    assert d.spec.strategy.rolling_update.max_surge == "1"
    assert d.spec.strategy.rolling_update.max_unavailable == "25%"
    c = d.spec.template.spec.containers[0]
    assert c.ports[0].container_port == 5678 and c.ports[0].name == "http"
    assert [(e.name, e.value) for e in c.env] == [("REPLICAS", "3"), ("DEBUG", "true")]
    assert dict(c.resources.requests) == {"cpu": "0.1", "memory": "32Mi"}
    assert dict(c.resources.limits) == {"cpu": "1", "memory": "64Mi"}
    assert c.readiness_probe.http_get.port == "5678"
    assert c.liveness_probe.tcp_socket.port == "http"
    apply_defaults(d)
    validate(d)


def test_kubernetes_nodeport_service_is_read() -> None:
    svc = from_manifest(docs()[1])
    assert isinstance(svc, objects_pb2.Service)
    assert svc.spec.type == "NodePort" and svc.spec.cluster_ip == "10.96.0.10"
    port = svc.spec.ports[0]
    assert (port.port, port.target_port, port.node_port, port.protocol) == (80, "5678", 30080, "TCP")
    apply_defaults(svc)
    validate(svc)


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip_gives_the_same_message(index: int) -> None:
    msg = from_manifest(docs()[index])
    apply_defaults(msg)
    again = from_manifest(to_manifest(msg))
    assert again == msg
    # Through YAML text too, as `get -o yaml | apply -f -` does.
    assert from_manifest(yaml.safe_load(yaml.safe_dump(to_manifest(msg)))) == msg


def test_output_is_kubernetes_shaped() -> None:
    svc = from_manifest(docs()[1])
    out = to_manifest(svc)
    assert list(out)[:2] == ["apiVersion", "kind"] and out["apiVersion"] == "v1" and out["kind"] == "Service"
    assert out["spec"]["clusterIP"] == "10.96.0.10"
    assert out["spec"]["ports"][0]["targetPort"] == 5678  # an int again, as Kubernetes writes it
    d = to_manifest(from_manifest(docs()[0]))
    assert d["apiVersion"] == "apps/v1"
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "25%"}
    assert "status" not in d  # empty: left out


def test_server_fields_map_both_ways_and_status_is_ignored_on_input() -> None:
    pod = objects_pb2.Pod()
    pod.metadata.name = "p"
    pod.metadata.uid = "abc"
    pod.metadata.resource_version = 42
    pod.metadata.generation = 2
    pod.metadata.creation_timestamp = "2024-05-01T12:00:00Z"
    pod.spec.containers.add(name="c", image="i")
    pod.status.phase = "Running"
    pod.status.pod_ip = "10.244.0.5"
    pod.status.container_statuses.add(name="c", state=objects_pb2.ContainerState(state="waiting",
                                                                                   reason="CrashLoopBackOff"))
    out = to_manifest(pod)
    assert out["metadata"]["resourceVersion"] == "42"  # a string, as in Kubernetes
    assert out["status"]["podIP"] == "10.244.0.5"
    assert out["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    back = from_manifest(out)
    assert isinstance(back, objects_pb2.Pod)
    assert back.metadata.resource_version == 42 and back.metadata.uid == "abc"
    assert not back.HasField("status")


def test_fields_kubernetes_fills_in_are_accepted_and_ignored() -> None:
    doc = docs()[0]
    doc["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    doc["metadata"]["resourceVersion"] = "123"
    doc["metadata"]["creationTimestamp"] = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    doc["spec"]["progressDeadlineSeconds"] = 600
    doc["spec"]["template"]["metadata"]["creationTimestamp"] = None
    doc["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    doc["status"] = {"replicas": 3, "whatever": True}
    d = from_manifest(doc)
    assert isinstance(d, objects_pb2.Deployment)
    assert d.metadata.resource_version == 123
    assert d.metadata.creation_timestamp == "2024-05-01T12:00:00Z"
    assert not d.HasField("status")


def test_a_restricted_container_security_context_reads_as_kubernetes_writes_it() -> None:
    doc = docs()[0]
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    d = from_manifest(doc)
    assert isinstance(d, objects_pb2.Deployment)
    sc = d.spec.template.spec.containers[0].security_context
    assert sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation
    assert (sc.run_as_non_root, sc.run_as_user, list(sc.capabilities.drop)) == (True, 1000, ["ALL"])


def test_unknown_fields_are_named_by_path_all_at_once() -> None:
    doc = docs()[0]
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    doc["spec"]["replicaz"] = 3
    with pytest.raises(Invalid) as info:
        from_manifest(doc)
    message = str(info.value)
    assert "spec.template.spec.containers[0].imagePullPolicyy: unknown field" in message
    assert "spec.replicaz: unknown field" in message


@pytest.mark.parametrize(("path", "value", "needle"), [
    (("spec", "replicas"), "3", 'spec.replicas: expected an integer, got the string "3"'),
    (("spec", "replicas"), True, "spec.replicas: expected an integer, got a boolean"),
    (("spec", "replicas"), 2**40, "spec.replicas: must be between"),
    (("spec", "paused"), "yes please", "spec.paused: expected true or false"),
    (("spec", "template", "spec", "containers"), {"name": "x"}, "spec.template.spec.containers: expected a list"),
    (("metadata", "labels"), ["app"], "metadata.labels: expected a mapping"),
    (("spec", "selector", "matchExpressions"), [], "spec.selector.matchExpressions: not supported"),
    (("spec", "template", "spec", "containers", 0, "image"), {"a": 1},
     "spec.template.spec.containers[0].image: expected a string, got a mapping"),
])
def test_wrong_types_are_named_by_path(path: tuple[Any, ...], value: Any, needle: str) -> None:
    doc = docs()[0]
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(Invalid, match=re.escape(needle)):
        from_manifest(doc)


def test_proto_spellings_of_kubernetes_acronyms_are_refused() -> None:
    doc = docs()[1]
    doc["spec"]["clusterIp"] = doc["spec"].pop("clusterIP")
    with pytest.raises(Invalid, match=r"spec\.clusterIp: unknown field"):
        from_manifest(doc)


@pytest.mark.parametrize(("doc", "needle"), [
    ({"apiVersion": "v1", "kind": "Deployment"}, 'unknown kind "Deployment" (apiVersion v1) (Deployment is apps/v1)'),
    ({"apiVersion": "batch/v1beta1", "kind": "CronJob"},
     'unknown kind "CronJob" (apiVersion batch/v1beta1) (CronJob is batch/v1)'),
    ({"apiVersion": "batch/v1", "kind": "Lease"}, 'unknown kind "Lease" (apiVersion batch/v1); raftctl knows: '),
    ({"kind": "Pod"}, "apiVersion: required"),
    ({"apiVersion": "v1"}, "kind: required"),
    ({"apiVersion": 1, "kind": "Pod"}, "apiVersion: expected a string"),
    (["not", "a", "mapping"], "expected a mapping with apiVersion and kind, got a list"),
])
def test_unknown_kinds_say_what_is_known(doc: Any, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        kind_of_manifest(doc)
    assert needle in str(info.value)
    if "raftctl knows" in needle:
        assert "apps/v1 Deployment" in str(info.value) and "v1 Service" in str(info.value)


def test_every_applicable_kind_round_trips_its_api_version() -> None:
    for kind in APPLICABLE_KINDS:
        msg = kind.message()
        msg.metadata.name = "x"  # type: ignore[attr-defined]
        out = to_manifest(msg)
        assert out["apiVersion"] == api_version(kind) and out["kind"] == kind.name
        assert from_manifest(out) == msg


def test_empty_submessages_survive_a_round_trip() -> None:
    # Presence is part of the pod template's hash: losing `resources: {}` would start a rollout.
    doc = copy.deepcopy(docs()[0])
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    d = from_manifest(doc)
    assert isinstance(d, objects_pb2.Deployment)
    assert d.spec.template.spec.containers[0].HasField("resources")
    assert from_manifest(to_manifest(d)) == d
