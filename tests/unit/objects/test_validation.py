from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.kinds import wrap
from raftorch.objects.validation import validate

Mutation = Callable[[Any], object]
_PART = re.compile(r"\.?(?P<attr>\w+)|\[(?P<item>[^\]]*)\]")


def put(path: str, value: object) -> Mutation:
    """Set the field at `path`: snake_case names, `[i]` into repeated fields, `[key]` into maps."""
    parts = [(m.group("attr"), m.group("item")) for m in _PART.finditer(path)]

    def step(target: Any, attr: str | None, item: str | None) -> Any:
        if attr is not None:
            return getattr(target, attr)
        return target[item] if hasattr(target, "keys") else target[int(str(item))]

    def mutate(msg: Any) -> None:
        target = msg
        for attr, item in parts[:-1]:
            target = step(target, attr, item)
        attr, item = parts[-1]
        if attr is not None:
            setattr(target, attr, value)
        else:
            target[item if hasattr(target, "keys") else int(str(item))] = value

    return mutate


def _fail(msg: Message, mutation: Mutation) -> str:
    validate(msg)  # the fixture is valid before the mutation
    mutation(msg)
    with pytest.raises(Invalid) as exc:
        validate(msg)
    return str(exc.value)


DNS_LABEL = ("must be a DNS label: at most 63 characters of a-z, 0-9 and '-', "
             "starting and ending with a letter or digit, got ")
DNS_SUBDOMAIN = ("must be a DNS subdomain: at most 253 characters of a-z, 0-9, '-' and '.', "
                 "each dot-separated part starting and ending with a letter or digit, got ")
LABEL_NAME = "the name must consist of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
LABEL_VALUE = "must be empty or consist of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit"
PORT_NAME = ("must be a port name: at most 15 characters of a-z, 0-9 and '-', with at least one letter "
             "and no leading, trailing or double '-', got ")
C0 = "spec.containers[0]"

POD_CASES: list[tuple[str, Mutation, str]] = [
    # metadata
    ("name required", put("metadata.name", ""), "metadata.name: required"),
    ("name upper case", put("metadata.name", "Web"), f'metadata.name: {DNS_SUBDOMAIN}"Web"'),
    # A long value is cut in the message: errors never echo big inputs back.
    ("name too long", put("metadata.name", "a" * 254),
     f'metadata.name: {DNS_SUBDOMAIN}"{"a" * 100}"... (254 characters)'),
    ("name trailing dash", put("metadata.name", "web-"), f'metadata.name: {DNS_SUBDOMAIN}"web-"'),
    ("name empty part", put("metadata.name", "web..1"), f'metadata.name: {DNS_SUBDOMAIN}"web..1"'),
    ("namespace", put("metadata.namespace", "Prod"), f'metadata.namespace: {DNS_LABEL}"Prod"'),
    ("namespace with a dot", put("metadata.namespace", "a.b"), f'metadata.namespace: {DNS_LABEL}"a.b"'),
    ("label key", put("metadata.labels[-app]", "web"), f'metadata.labels: key "-app": {LABEL_NAME}'),
    ("label key too long", put("metadata.labels[" + "k" * 64 + "]", "v"),
     f'metadata.labels: key "{"k" * 64}": the name must be at most 63 characters, got 64'),
    ("label key prefix", put("metadata.labels[Example.com/app]", "v"),
     "metadata.labels: key \"Example.com/app\": the prefix before '/' must be a DNS subdomain (like example.com)"),
    ("label key empty prefix", put("metadata.labels[/app]", "v"),
     "metadata.labels: key \"/app\": the prefix before '/' must not be empty"),
    ("label key empty name", put("metadata.labels[example.com/]", "v"),
     'metadata.labels: key "example.com/": the name must not be empty'),
    ("label value", put("metadata.labels[app]", "web!"), f'metadata.labels[app]: value "web!": {LABEL_VALUE}'),
    ("label value too long", put("metadata.labels[app]", "v" * 64),
     f'metadata.labels[app]: value "{"v" * 64}": must be at most 63 characters, got 64'),
    ("annotation key", put("metadata.annotations[a b]", "x"), f'metadata.annotations: key "a b": {LABEL_NAME}'),
    ("annotations too big", put("metadata.annotations[big]", "x" * 262142),
     "metadata.annotations: must be at most 262144 bytes in all, got 262145"),
    ("resource version", put("metadata.resource_version", -1),
     "metadata.resourceVersion: must not be negative, got -1"),
    ("generation", put("metadata.generation", -2), "metadata.generation: must not be negative, got -2"),
    ("creation timestamp", put("metadata.creation_timestamp", "today"),
     'metadata.creationTimestamp: invalid time "today": expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("deletion timestamp", put("metadata.deletion_timestamp", "2024-05-01T12:00:00"),
     'metadata.deletionTimestamp: invalid time "2024-05-01T12:00:00": expected RFC 3339 like '
     '"2024-05-01T12:00:00Z"'),
    ("owner reference", lambda p: p.metadata.owner_references.add(kind="ReplicaSet", name="web"),
     "metadata.ownerReferences[0].uid: required"),
    ("two controllers", lambda p: p.metadata.owner_references.extend([
        objects_pb2.OwnerReference(kind="ReplicaSet", name="a", uid="1", controller=True),
        objects_pb2.OwnerReference(kind="ReplicaSet", name="b", uid="2", controller=True)]),
     "metadata.ownerReferences[1].controller: only one owner may be the controller"),
    # containers
    ("no containers", lambda p: p.spec.ClearField("containers"),
     "spec.containers: at least one container is required"),
    ("container name required", put(f"{C0}.name", ""), f"{C0}.name: required"),
    ("container name", put(f"{C0}.name", "web_1"), f'{C0}.name: {DNS_LABEL}"web_1"'),
    ("container name with a dot", put(f"{C0}.name", "web.1"), f'{C0}.name: {DNS_LABEL}"web.1"'),
    ("duplicate container", put("spec.containers[1].name", "web"), 'spec.containers[1].name: duplicate name "web"'),
    ("image required", put(f"{C0}.image", ""), f"{C0}.image: required"),
    ("image whitespace", put(f"{C0}.image", "nginx "),
     f'{C0}.image: must not have leading or trailing whitespace, got "nginx "'),
    ("pull policy", put(f"{C0}.image_pull_policy", "Sometimes"),
     f'{C0}.imagePullPolicy: must be one of Always, IfNotPresent, Never, got "Sometimes"'),
    # ports
    ("container port", put(f"{C0}.ports[1].container_port", 70000),
     f"{C0}.ports[1].containerPort: must be between 1 and 65535, got 70000"),
    ("container port zero", put(f"{C0}.ports[0].container_port", 0),
     f"{C0}.ports[0].containerPort: must be between 1 and 65535, got 0"),
    ("host port", put(f"{C0}.ports[0].host_port", -1), f"{C0}.ports[0].hostPort: must be between 0 and 65535, got -1"),
    ("host port high", put(f"{C0}.ports[0].host_port", 65536),
     f"{C0}.ports[0].hostPort: must be between 0 and 65535, got 65536"),
    ("protocol", put(f"{C0}.ports[0].protocol", "SCTP"),
     f'{C0}.ports[0].protocol: must be one of TCP, UDP, got "SCTP"'),
    ("protocol lower case", put(f"{C0}.ports[0].protocol", "tcp"),
     f'{C0}.ports[0].protocol: must be one of TCP, UDP, got "tcp"'),
    ("port name upper case", put(f"{C0}.ports[0].name", "HTTP"), f'{C0}.ports[0].name: {PORT_NAME}"HTTP"'),
    ("port name digits only", put(f"{C0}.ports[0].name", "8080"), f'{C0}.ports[0].name: {PORT_NAME}"8080"'),
    ("port name too long", put(f"{C0}.ports[0].name", "a" * 16), f'{C0}.ports[0].name: {PORT_NAME}"{"a" * 16}"'),
    ("port name double dash", put(f"{C0}.ports[0].name", "a--b"), f'{C0}.ports[0].name: {PORT_NAME}"a--b"'),
    ("port name leading dash", put(f"{C0}.ports[0].name", "-http"), f'{C0}.ports[0].name: {PORT_NAME}"-http"'),
    ("duplicate port name", put(f"{C0}.ports[1].name", "http"), f'{C0}.ports[1].name: duplicate name "http"'),
    ("duplicate host port", lambda p: [p.spec.containers[0].ports[0].__setattr__("host_port", 8080),
                                       p.spec.containers[1].ports.add(container_port=81, host_port=8080)],
     "spec.containers[1].ports[0].hostPort: duplicate host port 8080/TCP in the pod"),
    ("host network port", lambda p: [p.spec.__setattr__("host_network", True),
                                     p.spec.containers[0].ports[0].__setattr__("host_port", 8080)],
     f"{C0}.ports[0].hostPort: must equal containerPort 80 with hostNetwork, got 8080"),
    # security context
    ("run as user negative", put(f"{C0}.security_context.run_as_user", -1),
     f"{C0}.securityContext.runAsUser: must be between 0 and 2147483647, got -1"),
    ("root with run as non root", lambda p: [put(f"{C0}.security_context.run_as_user", 0)(p),
                                             put(f"{C0}.security_context.run_as_non_root", True)(p)],
     f"{C0}.securityContext.runAsUser: must not be 0 (root) with runAsNonRoot"),
    ("privileged without escalation", lambda p: [put(f"{C0}.security_context.privileged", True)(p),
                                                 put(f"{C0}.security_context.allow_privilege_escalation", False)(p)],
     f"{C0}.securityContext.allowPrivilegeEscalation: cannot be false for a privileged container"),
    ("capability prefix", lambda p: p.spec.containers[0].security_context.capabilities.add.append("CAP_NET_ADMIN"),
     f"{C0}.securityContext.capabilities.add[0]: expected a capability name like NET_ADMIN (no CAP_ prefix) "
     'or ALL, got "CAP_NET_ADMIN"'),
    ("capability lower case", lambda p: p.spec.containers[0].security_context.capabilities.drop.append("all"),
     f"{C0}.securityContext.capabilities.drop[0]: expected a capability name like NET_ADMIN (no CAP_ prefix) "
     'or ALL, got "all"'),
    # env and resources
    ("env name required", put(f"{C0}.env[0].name", ""), f"{C0}.env[0].name: required"),
    ("env name digit", put(f"{C0}.env[0].name", "1MODE"),
     f"{C0}.env[0].name: must consist of letters, digits, '-', '_' and '.', not starting with a digit, "
     'got "1MODE"'),
    ("env name space", put(f"{C0}.env[0].name", "MY MODE"),
     f"{C0}.env[0].name: must consist of letters, digits, '-', '_' and '.', not starting with a digit, "
     'got "MY MODE"'),
    ("unsupported resource", put(f"{C0}.resources.limits[gpu]", "1"),
     f'{C0}.resources.limits[gpu]: unsupported resource "gpu"; supported: cpu, memory'),
    ("bad cpu", put(f"{C0}.resources.requests[cpu]", "fast"),
     f'{C0}.resources.requests[cpu]: invalid cpu quantity "fast": expected cores like "2" or "0.5", '
     'or millicores like "500m"'),
    ("bad memory", put(f"{C0}.resources.limits[memory]", "100m"),
     f'{C0}.resources.limits[memory]: invalid memory quantity "100m": "m" means thousandths of a byte; '
     'use "Mi" or "M" for megabytes'),
    ("cpu over limit", put(f"{C0}.resources.requests[cpu]", "1"),
     f"{C0}.resources.requests[cpu]: must be less than or equal to the limit 500m, got 1"),
    ("memory over limit", put(f"{C0}.resources.requests[memory]", "1Gi"),
     f"{C0}.resources.requests[memory]: must be less than or equal to the limit 128Mi, got 1Gi"),
    # pod spec
    ("restart policy", put("spec.restart_policy", "Sometimes"),
     'spec.restartPolicy: must be one of Always, OnFailure, Never, got "Sometimes"'),
    ("grace period", put("spec.termination_grace_period_seconds", -1),
     "spec.terminationGracePeriodSeconds: must not be negative, got -1"),
    ("node name", put("spec.node_name", "Node_1"), f'spec.nodeName: {DNS_SUBDOMAIN}"Node_1"'),
    ("node selector", put("spec.node_selector[disk type]", "ssd"),
     f'spec.nodeSelector: key "disk type": {LABEL_NAME}'),
    # probes
    ("probe without handler", lambda p: p.spec.containers[0].liveness_probe.ClearField("http_get"),
     f"{C0}.livenessProbe: must have exactly one handler of exec, httpGet and tcpSocket, got none"),
    ("probe with two handlers", lambda p: p.spec.containers[0].liveness_probe.exec.command.append("true"),
     f"{C0}.livenessProbe: must have exactly one handler of exec, httpGet and tcpSocket, got exec, httpGet"),
    ("exec without command", lambda p: p.spec.containers[1].readiness_probe.exec.SetInParent(),
     "spec.containers[1].readinessProbe.exec.command: required"),
    ("http port required", put(f"{C0}.liveness_probe.http_get.port", ""), f"{C0}.livenessProbe.httpGet.port: required"),
    ("http port number", put(f"{C0}.liveness_probe.http_get.port", "70000"),
     f"{C0}.livenessProbe.httpGet.port: must be between 1 and 65535, got 70000"),
    ("http port name", put(f"{C0}.liveness_probe.http_get.port", "Web"),
     f'{C0}.livenessProbe.httpGet.port: {PORT_NAME}"Web"'),
    ("http scheme", put(f"{C0}.liveness_probe.http_get.scheme", "FTP"),
     f'{C0}.livenessProbe.httpGet.scheme: must be one of HTTP, HTTPS, got "FTP"'),
    ("http path", put(f"{C0}.liveness_probe.http_get.path", "healthz"),
     f'{C0}.livenessProbe.httpGet.path: must start with "/", got "healthz"'),
    ("tcp port", put(f"{C0}.readiness_probe.tcp_socket.port", "0"),
     f"{C0}.readinessProbe.tcpSocket.port: must be between 1 and 65535, got 0"),
    ("probe period", put(f"{C0}.readiness_probe.period_seconds", -10),
     f"{C0}.readinessProbe.periodSeconds: must not be negative, got -10"),
    ("probe delay", put(f"{C0}.liveness_probe.initial_delay_seconds", -1),
     f"{C0}.livenessProbe.initialDelaySeconds: must not be negative, got -1"),
    ("probe timeout", put(f"{C0}.liveness_probe.timeout_seconds", -1),
     f"{C0}.livenessProbe.timeoutSeconds: must not be negative, got -1"),
    ("probe failure threshold", put(f"{C0}.liveness_probe.failure_threshold", -3),
     f"{C0}.livenessProbe.failureThreshold: must not be negative, got -3"),
    ("liveness success threshold", put(f"{C0}.liveness_probe.success_threshold", 2),
     f"{C0}.livenessProbe.successThreshold: must be 1 for a liveness probe, got 2"),
    # status
    ("phase", put("status.phase", "Exploded"),
     'status.phase: must be one of Pending, Running, Succeeded, Failed, Unknown, got "Exploded"'),
    ("condition status", lambda p: p.status.conditions.add(type="Ready", status="yes"),
     'status.conditions[0].status: must be one of True, False, Unknown, got "yes"'),
    ("condition type", lambda p: p.status.conditions.add(status="True"), "status.conditions[0].type: required"),
]


@pytest.mark.parametrize(("mutation", "message"), [case[1:] for case in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_problems_name_their_field(pod: objects_pb2.Pod, mutation: Mutation, message: str) -> None:
    assert _fail(pod, mutation) == message


@pytest.mark.parametrize("mutation", [
    put("metadata.name", "web.1"),
    put("metadata.name", "a" * 253),
    put("metadata.namespace", "prod"),
    put("metadata.labels[app.kubernetes.io/name]", "web"),
    put("metadata.labels[empty]", ""),
    put("metadata.labels[Mixed_Case.key-1]", "Mixed_Case.value-1"),
    put(f"{C0}.ports[0].name", "h2c-1"),
    put(f"{C0}.ports[0].protocol", "UDP"),
    put(f"{C0}.ports[0].host_port", 8080),
    put(f"{C0}.env[0].name", "my.var-name_2"),
    lambda p: [put(f"{C0}.security_context.run_as_user", 1000)(p),
               put(f"{C0}.security_context.run_as_non_root", True)(p),
               p.spec.containers[0].security_context.capabilities.drop.append("ALL")],
    put(f"{C0}.resources.requests[cpu]", "500m"),
    put(f"{C0}.liveness_probe.http_get.port", "8080"),
    put(f"{C0}.liveness_probe.success_threshold", 1),
    put("spec.termination_grace_period_seconds", 0),
    put("spec.restart_policy", "Never"),
    put("metadata.creation_timestamp", "2024-05-01T12:00:00Z"),
    lambda p: p.spec.containers[0].ClearField("resources"),
    lambda p: p.spec.containers[0].resources.ClearField("limits"),
    lambda p: p.metadata.owner_references.add(kind="ReplicaSet", name="web", uid="u1", controller=True),
    lambda p: [c.ports.add(container_port=53, host_port=53, protocol=proto)
               for c, proto in zip(p.spec.containers, ("TCP", "UDP"), strict=True)],
])
def test_valid_pods(pod: objects_pb2.Pod, mutation: Mutation) -> None:
    mutation(pod)
    validate(pod)
    validate(wrap(pod))


def test_the_brief_example(deployment: objects_pb2.Deployment) -> None:
    assert _fail(deployment, put("spec.template.spec.containers[0].ports[1].container_port", 70000)) == (
        "spec.template.spec.containers[0].ports[1].containerPort: must be between 1 and 65535, got 70000")


T = "spec.template"
ROLLING = "spec.strategy.rolling_update"
INT_OR_PERCENT = 'expected a non-negative whole number like "1" or a percentage like "25%"'

DEPLOYMENT_CASES: list[tuple[str, Mutation, str]] = [
    ("replicas", put("spec.replicas", -1), "spec.replicas: must not be negative, got -1"),
    ("no selector", lambda d: d.spec.selector.match_labels.clear(),
     "spec.selector.matchLabels: required: an empty selector would select every pod"),
    ("selector label", put("spec.selector.match_labels[app]", "web!"),
     f'spec.selector.matchLabels[app]: value "web!": {LABEL_VALUE}; spec.template.metadata.labels: '
     'must include spec.selector.matchLabels "app=web!", got "app=web,tier=front"'),
    ("selector mismatch", put("spec.selector.match_labels[app]", "db"),
     'spec.template.metadata.labels: must include spec.selector.matchLabels "app=db", got "app=web,tier=front"'),
    ("template without labels", lambda d: d.spec.template.metadata.labels.clear(),
     'spec.template.metadata.labels: must include spec.selector.matchLabels "app=web", got ""'),
    ("template label", put(f"{T}.metadata.labels[tier]", "-front"),
     f'spec.template.metadata.labels[tier]: value "-front": {LABEL_VALUE}'),
    ("template restart policy", put(f"{T}.spec.restart_policy", "Never"),
     'spec.template.spec.restartPolicy: must be Always for a Deployment, got "Never"'),
    ("template restart policy unknown", put(f"{T}.spec.restart_policy", "Maybe"),
     'spec.template.spec.restartPolicy: must be one of Always, OnFailure, Never, got "Maybe"'),
    ("template image", put(f"{T}.spec.containers[1].image", ""), "spec.template.spec.containers[1].image: required"),
    ("template containers", lambda d: d.spec.template.spec.ClearField("containers"),
     "spec.template.spec.containers: at least one container is required"),
    ("strategy type", put("spec.strategy.type", "BlueGreen"),
     'spec.strategy.type: must be one of RollingUpdate, Recreate, got "BlueGreen"'),
    ("recreate with rolling update", lambda d: [d.spec.strategy.__setattr__("type", "Recreate"),
                                                d.spec.strategy.rolling_update.__setattr__("max_surge", "1")],
     "spec.strategy.rollingUpdate: must not be set when spec.strategy.type is Recreate"),
    ("max surge", put(f"{ROLLING}.max_surge", "lots"),
     f'spec.strategy.rollingUpdate.maxSurge: invalid int or percent "lots": {INT_OR_PERCENT}'),
    ("max surge fraction", put(f"{ROLLING}.max_surge", "2.5%"),
     f'spec.strategy.rollingUpdate.maxSurge: invalid int or percent "2.5%": {INT_OR_PERCENT}'),
    ("max unavailable", put(f"{ROLLING}.max_unavailable", "-1"),
     f'spec.strategy.rollingUpdate.maxUnavailable: invalid int or percent "-1": {INT_OR_PERCENT}'),
    ("max unavailable over 100%", put(f"{ROLLING}.max_unavailable", "101%"),
     "spec.strategy.rollingUpdate.maxUnavailable: must not be more than 100%, got 101%"),
    ("both zero", lambda d: [d.spec.strategy.rolling_update.__setattr__("max_surge", "0"),
                             d.spec.strategy.rolling_update.__setattr__("max_unavailable", "0%")],
     "spec.strategy.rollingUpdate.maxUnavailable: must not be 0 when maxSurge is 0"),
    ("revision history limit", put("spec.revision_history_limit", -1),
     "spec.revisionHistoryLimit: must not be negative, got -1"),
    ("min ready seconds", put("spec.min_ready_seconds", -5), "spec.minReadySeconds: must not be negative, got -5"),
    ("rollback to", put("spec.rollback_to", -1), "spec.rollbackTo: must not be negative, got -1"),
    ("name", put("metadata.name", "Web"), f'metadata.name: {DNS_SUBDOMAIN}"Web"'),
    ("status condition", lambda d: d.status.conditions.add(type="Available", status="Maybe"),
     'status.conditions[0].status: must be one of True, False, Unknown, got "Maybe"'),
]


@pytest.mark.parametrize(("mutation", "message"), [case[1:] for case in DEPLOYMENT_CASES],
                         ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployment_problems_name_their_field(deployment: objects_pb2.Deployment, mutation: Mutation,
                                              message: str) -> None:
    assert _fail(deployment, mutation) == message


@pytest.mark.parametrize("mutation", [
    put("spec.replicas", 0),
    lambda d: d.spec.ClearField("replicas"),
    put("spec.revision_history_limit", 0),
    put("spec.strategy.type", "Recreate"),
    put("spec.strategy.type", "RollingUpdate"),
    put(f"{ROLLING}.max_surge", "0"),
    put(f"{ROLLING}.max_unavailable", "0"),
    put(f"{ROLLING}.max_surge", "200%"),
    put(f"{ROLLING}.max_unavailable", "100%"),
    lambda d: [d.spec.strategy.rolling_update.__setattr__("max_surge", "0"),
               d.spec.strategy.rolling_update.__setattr__("max_unavailable", "1")],
    put(f"{T}.spec.restart_policy", "Always"),
    put("spec.paused", True),
])
def test_valid_deployments(deployment: objects_pb2.Deployment, mutation: Mutation) -> None:
    mutation(deployment)
    validate(deployment)


@pytest.mark.parametrize(("mutation", "message"), [
    (put("spec.replicas", -1), "spec.replicas: must not be negative, got -1"),
    (put(f"{T}.spec.restart_policy", "OnFailure"),
     'spec.template.spec.restartPolicy: must be Always for a ReplicaSet, got "OnFailure"'),
    (lambda r: r.spec.selector.match_labels.clear(),
     "spec.selector.matchLabels: required: an empty selector would select every pod"),
    (put("spec.selector.match_labels[pod-template-hash]", "5d4f8"),
     'spec.template.metadata.labels: must include spec.selector.matchLabels "app=web,pod-template-hash=5d4f8", '
     'got "app=web"'),
    (put(f"{T}.spec.containers[0].ports[1].container_port", 70000),
     "spec.template.spec.containers[0].ports[1].containerPort: must be between 1 and 65535, got 70000"),
])
def test_replica_set_problems_name_their_field(replica_set: objects_pb2.ReplicaSet, mutation: Mutation,
                                               message: str) -> None:
    assert _fail(replica_set, mutation) == message


SERVICE_CASES: list[tuple[str, Mutation, str]] = [
    ("name with a dot", put("metadata.name", "web.app"), f'metadata.name: {DNS_LABEL}"web.app"'),
    ("type", put("spec.type", "LoadBalancer"), 'spec.type: must be one of ClusterIP, NodePort, got "LoadBalancer"'),
    ("no ports", lambda s: s.spec.ClearField("ports"), "spec.ports: at least one port is required"),
    ("port zero", put("spec.ports[0].port", 0), "spec.ports[0].port: must be between 1 and 65535, got 0"),
    ("port high", put("spec.ports[1].port", 65536), "spec.ports[1].port: must be between 1 and 65535, got 65536"),
    ("protocol", put("spec.ports[0].protocol", "SCTP"), 'spec.ports[0].protocol: must be one of TCP, UDP, got "SCTP"'),
    ("name required", put("spec.ports[1].name", ""),
     "spec.ports[1].name: required when the service has more than one port"),
    ("name format", put("spec.ports[0].name", "Http"), f'spec.ports[0].name: {DNS_LABEL}"Http"'),
    ("duplicate name", put("spec.ports[1].name", "http"), 'spec.ports[1].name: duplicate name "http"'),
    ("duplicate port", put("spec.ports[1].port", 80), "spec.ports[1].port: duplicate port 80/TCP"),
    ("target port zero", put("spec.ports[0].target_port", "0"),
     "spec.ports[0].targetPort: must be between 1 and 65535, got 0"),
    ("target port high", put("spec.ports[0].target_port", "70000"),
     "spec.ports[0].targetPort: must be between 1 and 65535, got 70000"),
    ("target port name", put("spec.ports[0].target_port", "web_http"),
     f'spec.ports[0].targetPort: {PORT_NAME}"web_http"'),
    ("node port range", lambda s: [s.spec.__setattr__("type", "NodePort"),
                                   s.spec.ports[0].__setattr__("node_port", 80)],
     "spec.ports[0].nodePort: must be 0 or between 30000 and 32767, got 80"),
    ("node port negative", put("spec.ports[0].node_port", -1),
     "spec.ports[0].nodePort: must be 0 or between 30000 and 32767, got -1"),
    ("node port on cluster ip", put("spec.ports[0].node_port", 30080),
     "spec.ports[0].nodePort: may only be set when spec.type is NodePort"),
    ("duplicate node port", lambda s: [s.spec.__setattr__("type", "NodePort"),
                                       [p.__setattr__("node_port", 30080) for p in s.spec.ports]],
     "spec.ports[1].nodePort: duplicate node port 30080"),
    ("selector", put("spec.selector[app]", "a b"), f'spec.selector[app]: value "a b": {LABEL_VALUE}'),
    ("cluster ip", put("spec.cluster_ip", "10.0.0.300"),
     'spec.clusterIP: must be an IPv4 address like 10.0.0.1, got "10.0.0.300"'),
    ("cluster ip v6", put("spec.cluster_ip", "fd00::1"),
     'spec.clusterIP: must be an IPv4 address like 10.0.0.1, got "fd00::1"'),
    ("headless", put("spec.cluster_ip", "None"), 'spec.clusterIP: must be an IPv4 address like 10.0.0.1, got "None"'),
]


@pytest.mark.parametrize(("mutation", "message"), [case[1:] for case in SERVICE_CASES],
                         ids=[c[0] for c in SERVICE_CASES])
def test_service_problems_name_their_field(service: objects_pb2.Service, mutation: Mutation, message: str) -> None:
    assert _fail(service, mutation) == message


@pytest.mark.parametrize("mutation", [
    lambda s: [s.spec.ports.pop(), s.spec.ports[0].ClearField("name")],
    lambda s: s.spec.ports.add(name="dns", port=80, protocol="UDP"),
    lambda s: [s.spec.__setattr__("type", "NodePort"), s.spec.ports[0].__setattr__("node_port", 30080),
               s.spec.ports[1].__setattr__("node_port", 32767)],
    put("spec.type", "ClusterIP"),
    put("spec.cluster_ip", "10.96.0.10"),
    put("spec.ports[0].target_port", "8080"),
    lambda s: s.spec.selector.clear(),
])
def test_valid_services(service: objects_pb2.Service, mutation: Mutation) -> None:
    mutation(service)
    validate(service)


def _node() -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = "node-1.example.com"
    node.spec.pod_cidr = "10.244.1.0/24"
    node.spec.unschedulable = True
    node.status.capacity.update({"cpu": "4", "memory": "16Gi", "pods": "110", "example.com/gpu": "2"})
    node.status.allocatable.update({"cpu": "3500m", "memory": "15Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="10.0.0.5")
    node.status.conditions.add(type="Ready", status="True")
    return node


def _event() -> objects_pb2.Event:
    event = objects_pb2.Event()
    event.metadata.name = "web-1.17a8b"
    event.involved_object.kind, event.involved_object.name = "Pod", "web-1"
    event.type, event.reason, event.count = "Warning", "BackOff", 3
    event.first_timestamp, event.last_timestamp = "2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z"
    return event


def _endpoints() -> objects_pb2.Endpoints:
    endpoints = objects_pb2.Endpoints()
    endpoints.metadata.name = "web"
    subset = endpoints.subsets.add()
    subset.addresses.add(ip="10.244.1.7", node_name="n1")
    subset.not_ready_addresses.add(ip="10.244.1.8")
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return endpoints


OTHER_CASES: list[tuple[str, Callable[[], Message], Mutation, str]] = [
    ("node namespace", _node, put("metadata.namespace", "default"),
     'metadata.namespace: must be empty for Node, which is cluster-scoped, got "default"'),
    ("node name", _node, put("metadata.name", "Node_1"), f'metadata.name: {DNS_SUBDOMAIN}"Node_1"'),
    ("node pod cidr", _node, put("spec.pod_cidr", "10.244.1.0"),
     'spec.podCIDR: must be an IPv4 network like 10.244.1.0/24, got "10.244.1.0"'),
    ("node pod cidr garbage", _node, put("spec.pod_cidr", "10.244.1.0/40"),
     'spec.podCIDR: must be an IPv4 network like 10.244.1.0/24, got "10.244.1.0/40"'),
    ("node capacity cpu", _node, put("status.capacity[cpu]", "four"),
     'status.capacity[cpu]: invalid cpu quantity "four": expected cores like "2" or "0.5", or millicores like "500m"'),
    ("node allocatable pods", _node, put("status.allocatable[pods]", "1.5"),
     'status.allocatable[pods]: invalid count quantity "1.5": not a whole number of items'),
    ("node resource name", _node, put("status.capacity[bad name]", "1"),
     f'status.capacity: key "bad name": {LABEL_NAME}'),
    ("node address type", _node, put("status.addresses[0].type", "Public"),
     'status.addresses[0].type: must be one of InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS, '
     'got "Public"'),
    ("node address", _node, put("status.addresses[0].address", ""), "status.addresses[0].address: required"),
    ("node condition", _node, put("status.conditions[0].status", "true"),
     'status.conditions[0].status: must be one of True, False, Unknown, got "true"'),
    ("namespace name", lambda: objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="team")),
     put("metadata.name", "team.a"), f'metadata.name: {DNS_LABEL}"team.a"'),
    ("namespace in a namespace", lambda: objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="team")),
     put("metadata.namespace", "default"),
     'metadata.namespace: must be empty for Namespace, which is cluster-scoped, got "default"'),
    ("namespace phase", lambda: objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="team")),
     put("status.phase", "Gone"), 'status.phase: must be one of Active, Terminating, got "Gone"'),
    ("event involved object", _event, put("involved_object.name", ""), "involvedObject.name: required"),
    ("event type", _event, put("type", "Error"), 'type: must be one of Normal, Warning, got "Error"'),
    ("event count", _event, put("count", -1), "count: must not be negative, got -1"),
    ("event time", _event, put("last_timestamp", "now"),
     'lastTimestamp: invalid time "now": expected RFC 3339 like "2024-05-01T12:00:00Z"'),
    ("endpoints ip", _endpoints, put("subsets[0].addresses[0].ip", "10.244.1"),
     'subsets[0].addresses[0].ip: must be an IPv4 address like 10.0.0.1, got "10.244.1"'),
    ("endpoints not ready ip", _endpoints, put("subsets[0].not_ready_addresses[0].ip", ""),
     "subsets[0].notReadyAddresses[0].ip: required"),
    ("endpoints port", _endpoints, put("subsets[0].ports[0].port", 0),
     "subsets[0].ports[0].port: must be between 1 and 65535, got 0"),
    ("endpoints protocol", _endpoints, put("subsets[0].ports[0].protocol", "HTTP"),
     'subsets[0].ports[0].protocol: must be one of TCP, UDP, got "HTTP"'),
]


@pytest.mark.parametrize(("make", "mutation", "message"), [case[1:] for case in OTHER_CASES],
                         ids=[c[0] for c in OTHER_CASES])
def test_other_kinds_problems_name_their_field(make: Callable[[], Message], mutation: Mutation,
                                               message: str) -> None:
    assert _fail(make(), mutation) == message


def test_every_problem_is_reported_at_once(pod: objects_pb2.Pod) -> None:
    pod.metadata.name = ""
    pod.spec.containers[0].image = ""
    pod.spec.containers[0].ports[1].container_port = 70000
    with pytest.raises(Invalid) as exc:
        validate(pod)
    assert str(exc.value) == ("metadata.name: required; spec.containers[0].image: required; "
                              "spec.containers[0].ports[1].containerPort: must be between 1 and 65535, got 70000")


def test_long_lists_of_problems_are_cut_short(pod: objects_pb2.Pod) -> None:
    for i in range(12):
        pod.spec.containers[0].env.add(name=f"{i}X")
    with pytest.raises(Invalid) as exc:
        validate(pod)
    problems = str(exc.value).split("; ")
    assert len(problems) == 11
    assert problems[0].startswith("spec.containers[0].env[1].name: ")
    assert problems[-1] == "and 2 more"


def test_an_object_wrapper_is_validated_inside(pod: objects_pb2.Pod) -> None:
    pod.metadata.name = ""
    with pytest.raises(Invalid, match=r"^metadata\.name: required$"):
        validate(wrap(pod))
    with pytest.raises(Invalid, match=r"^object: no kind is set$"):
        validate(objects_pb2.Object())


def test_a_message_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(Invalid, match=r"^PodSpec is not a kind of object"):
        validate(objects_pb2.PodSpec())
