"""Validation of pod specs, shared by pods and the templates of deployments and replica sets."""

from __future__ import annotations

import re
from collections.abc import Callable

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import (
    Problems,
    dns1123_label_error,
    dns1123_subdomain_error,
    env_name_error,
    port_name_error,
    port_number_or_name_error,
    quote,
)
from raftorch.objects._volumes import validate_env_sources, validate_mounts, validate_volumes
from raftorch.objects.quantity import format_cpu, format_memory, parse_cpu, parse_memory
from raftorch.objects.scheduling import validate_scheduling

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP")
HTTP_SCHEMES = ("HTTP", "HTTPS")
# Caps on a pod's size (README "Limits"): each item costs validation, scheduling and an agent's
# work on every pass, so a pod that would need more is a mistake or an attack.
MAX_CONTAINERS = 64
MAX_ENV_PER_CONTAINER = 256
MAX_PORTS_PER_CONTAINER = 64
MAX_ARGS_PER_CONTAINER = 256
MAX_UID = 2**31 - 1
MAX_CAPABILITIES = 64
_CAPABILITY = re.compile(r"(?!CAP_)[A-Z][A-Z0-9_]{0,31}")

_RESOURCES: dict[str, tuple[Callable[[str], int], Callable[[int], str]]] = {
    "cpu": (parse_cpu, format_cpu),
    "memory": (parse_memory, format_memory),
}


def validate_pod_spec(problems: Problems, path: str, spec: objects_pb2.PodSpec) -> None:
    if not spec.containers:
        problems.add(f"{path}.containers", "at least one container is required")
    _at_most(problems, f"{path}.containers", len(spec.containers), MAX_CONTAINERS, "containers")
    names: set[str] = set()
    host_ports: set[tuple[int, str]] = set()
    volumes = validate_volumes(problems, path, spec)
    # Past the cap the object is refused anyway: checking the rest would only cost time.
    for i, container in enumerate(spec.containers[:MAX_CONTAINERS]):
        where = f"{path}.containers[{i}]"
        if container.name in names:
            problems.add(f"{where}.name", f"duplicate name {quote(container.name)}")
        names.add(container.name)
        _container(problems, where, container, spec.host_network, host_ports)
        validate_mounts(problems, where, container, volumes)
        validate_env_sources(problems, where, container)
    _at_most(problems, f"{path}.initContainers", len(spec.init_containers), MAX_CONTAINERS, "containers")
    for i, container in enumerate(spec.init_containers[:MAX_CONTAINERS]):
        where = f"{path}.initContainers[{i}]"
        if container.name in names:
            problems.add(f"{where}.name", f"duplicate name {quote(container.name)}")
        names.add(container.name)
        _container(problems, where, container, spec.host_network, host_ports)
        validate_mounts(problems, where, container, volumes)
        validate_env_sources(problems, where, container)
        for probe in ("liveness_probe", "readiness_probe"):
            if container.HasField(probe):
                problems.add(f"{where}.{'livenessProbe' if probe == 'liveness_probe' else 'readinessProbe'}",
                             "init containers run to completion: no probes")
    problems.one_of(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    if spec.node_name:
        problems.check(f"{path}.nodeName", dns1123_subdomain_error(spec.node_name))
    problems.labels(f"{path}.nodeSelector", spec.node_selector)
    problems.not_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    validate_scheduling(problems, path, spec)


def _container(problems: Problems, path: str, container: objects_pb2.Container, host_network: bool,
               host_ports: set[tuple[int, str]]) -> None:
    problems.check(f"{path}.name", dns1123_label_error(container.name))
    if not container.image:
        problems.add(f"{path}.image", "required")
    elif container.image != container.image.strip():
        problems.add(f"{path}.image", f"must not have leading or trailing whitespace, got {quote(container.image)}")
    problems.one_of(f"{path}.imagePullPolicy", container.image_pull_policy, PULL_POLICIES)
    _at_most(problems, f"{path}.env", len(container.env), MAX_ENV_PER_CONTAINER, "entries")
    _at_most(problems, f"{path}.ports", len(container.ports), MAX_PORTS_PER_CONTAINER, "ports")
    _at_most(problems, f"{path}.command", len(container.command), MAX_ARGS_PER_CONTAINER, "items")
    _at_most(problems, f"{path}.args", len(container.args), MAX_ARGS_PER_CONTAINER, "items")
    port_names: set[str] = set()
    for i, port in enumerate(container.ports[:MAX_PORTS_PER_CONTAINER]):
        where = f"{path}.ports[{i}]"
        if port.name:
            if port.name in port_names:
                problems.add(f"{where}.name", f"duplicate name {quote(port.name)}")
            port_names.add(port.name)
            problems.check(f"{where}.name", port_name_error(port.name))
        problems.in_range(f"{where}.containerPort", port.container_port, 1, 65535)
        problems.in_range(f"{where}.hostPort", port.host_port, 0, 65535)
        problems.one_of(f"{where}.protocol", port.protocol, PROTOCOLS)
        if host_network and port.host_port and port.host_port != port.container_port:
            problems.add(f"{where}.hostPort", f"must equal containerPort {port.container_port} with hostNetwork, "
                                              f"got {port.host_port}")
        if port.host_port:
            # Two containers cannot both bind one port of the host.
            key = (port.host_port, port.protocol or "TCP")
            if key in host_ports:
                problems.add(f"{where}.hostPort", f"duplicate host port {key[0]}/{key[1]} in the pod")
            host_ports.add(key)
    for i, env in enumerate(container.env[:MAX_ENV_PER_CONTAINER]):
        problems.check(f"{path}.env[{i}].name", env_name_error(env.name))
    if container.HasField("security_context"):
        _security_context(problems, f"{path}.securityContext", container.security_context)
    if container.HasField("resources"):
        _resources(problems, f"{path}.resources", container.resources)
    if container.HasField("liveness_probe"):
        _probe(problems, f"{path}.livenessProbe", container.liveness_probe, liveness=True)
    if container.HasField("readiness_probe"):
        _probe(problems, f"{path}.readinessProbe", container.readiness_probe, liveness=False)


def _at_most(problems: Problems, path: str, count: int, limit: int, what: str) -> None:
    if count > limit:
        problems.add(path, f"must have at most {limit} {what}, got {count}")


def _security_context(problems: Problems, path: str, sc: objects_pb2.SecurityContext) -> None:
    if sc.HasField("run_as_user"):
        problems.in_range(f"{path}.runAsUser", sc.run_as_user, 0, MAX_UID)
        if sc.run_as_user == 0 and sc.run_as_non_root:
            problems.add(f"{path}.runAsUser", "must not be 0 (root) with runAsNonRoot")
    if sc.privileged and sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation:
        problems.add(f"{path}.allowPrivilegeEscalation", "cannot be false for a privileged container")
    for group, names in (("add", sc.capabilities.add), ("drop", sc.capabilities.drop)):
        if len(names) > MAX_CAPABILITIES:
            problems.add(f"{path}.capabilities.{group}", f"at most {MAX_CAPABILITIES} capabilities")
            continue
        for i, name in enumerate(names):
            if not _CAPABILITY.fullmatch(name):
                problems.add(f"{path}.capabilities.{group}[{i}]",
                             f"expected a capability name like NET_ADMIN (no CAP_ prefix) or ALL, got {quote(name)}")


def _resources(problems: Problems, path: str, resources: objects_pb2.ResourceRequirements) -> None:
    parsed: dict[str, dict[str, int]] = {"requests": {}, "limits": {}}
    for group, values in (("requests", resources.requests), ("limits", resources.limits)):
        for name in sorted(values):
            where = f"{path}.{group}[{name}]"
            if name not in _RESOURCES:
                problems.add(where, f"unsupported resource {quote(name)}; supported: {', '.join(_RESOURCES)}")
                continue
            try:
                parsed[group][name] = _RESOURCES[name][0](values[name])
            except Invalid as exc:
                problems.add(where, exc.message)
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            formatted = _RESOURCES[name][1]
            problems.add(f"{path}.requests[{name}]",
                         f"must be less than or equal to the limit {formatted(limit)}, got {formatted(request)}")


def _probe(problems: Problems, path: str, probe: objects_pb2.Probe, liveness: bool) -> None:
    present = (("exec", probe.HasField("exec")), ("httpGet", probe.HasField("http_get")),
               ("tcpSocket", probe.HasField("tcp_socket")))
    handlers = [name for name, has in present if has]
    if len(handlers) != 1:
        got = ", ".join(handlers) or "none"
        problems.add(path, f"must have exactly one handler of exec, httpGet and tcpSocket, got {got}")
    if probe.HasField("exec") and not probe.exec.command:
        problems.add(f"{path}.exec.command", "required")
    if probe.HasField("http_get"):
        problems.check(f"{path}.httpGet.port", port_number_or_name_error(probe.http_get.port))
        problems.one_of(f"{path}.httpGet.scheme", probe.http_get.scheme, HTTP_SCHEMES)
        if probe.http_get.path and not probe.http_get.path.startswith("/"):
            problems.add(f"{path}.httpGet.path", f'must start with "/", got {quote(probe.http_get.path)}')
    if probe.HasField("tcp_socket"):
        problems.check(f"{path}.tcpSocket.port", port_number_or_name_error(probe.tcp_socket.port))
    for field, value in (("initialDelaySeconds", probe.initial_delay_seconds), ("periodSeconds", probe.period_seconds),
                         ("timeoutSeconds", probe.timeout_seconds), ("successThreshold", probe.success_threshold),
                         ("failureThreshold", probe.failure_threshold)):
        problems.not_negative(f"{path}.{field}", value)
    if liveness and probe.success_threshold > 1:
        # One success is proof enough of life; Kubernetes rejects more for the same reason.
        problems.add(f"{path}.successThreshold", f"must be 1 for a liveness probe, got {probe.success_threshold}")
