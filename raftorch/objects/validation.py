"""Validation of cluster objects: every problem reported at once, each naming its field path.

Paths use the Kubernetes (camelCase) field names users write in manifests, for example
`spec.template.spec.containers[0].ports[1].containerPort: must be between 1 and 65535, got 70000`.
Validation accepts objects with and without defaults applied: an empty field is never wrong
where a default would fill it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import (
    MAX_ANNOTATIONS_BYTES,
    Problems,
    dns1123_label_error,
    dns1123_subdomain_error,
    port_number_or_name_error,
    qualified_name_error,
    quote,
)
from raftorch.objects._podspec import PROTOCOLS, RESTART_POLICIES, validate_pod_spec
from raftorch.objects._volumes import pod_references, validate_claim
from raftorch.objects.kinds import DEPLOYMENT, NAMESPACE, SERVICE, Kind, kind_of_message, unwrap
from raftorch.objects.meta import CONDITION_STATUSES, meta, parse_int_or_percent, parse_time
from raftorch.objects.quantity import parse_count, parse_cpu, parse_memory
from raftorch.objects.scheduling import validate_taints
from raftorch.objects.selectors import matches, selector_from_match_labels
from raftorch.objects.workloads import validate_cron_job, validate_daemon_set, validate_job

__all__ = [
    "MAX_OBJECT_BYTES",
    "check_object_size",
    "check_unknown_fields",
    "pod_references",
    "validate",
    "validate_metadata",
]

# An object is one value in the store, and the store's values are at most 1 MiB (README "Limits").
MAX_OBJECT_BYTES = 1024 * 1024

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
STRATEGY_TYPES = ("RollingUpdate", "Recreate")
SERVICE_TYPES = ("ClusterIP", "NodePort")
NODE_PORT_RANGE = (30000, 32767)
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")
NAMESPACE_PHASES = ("Active", "Terminating")
EVENT_TYPES = ("Normal", "Warning")


def validate(obj: objects_pb2.Object | Message) -> None:
    """Raise Invalid naming every problem of an object (or of the object inside an `Object`)."""
    kind, msg = unwrap(obj) if isinstance(obj, objects_pb2.Object) else (kind_of_message(obj), obj)
    problems = Problems()
    _metadata(problems, kind, meta(msg))
    if isinstance(msg, objects_pb2.Pod):
        validate_pod_spec(problems, "spec", msg.spec)
        problems.one_of("status.phase", msg.status.phase, POD_PHASES)
        _conditions(problems, "status.conditions", msg.status.conditions)
    elif isinstance(msg, objects_pb2.Deployment):
        _deployment(problems, msg.spec)
        _conditions(problems, "status.conditions", msg.status.conditions)
    elif isinstance(msg, objects_pb2.ReplicaSet):
        problems.not_negative("spec.replicas", msg.spec.replicas)
        _selector_and_template(problems, kind, msg.spec.selector, msg.spec.template)
    elif isinstance(msg, objects_pb2.Service):
        _service(problems, msg.spec)
    elif isinstance(msg, objects_pb2.Endpoints):
        _endpoints(problems, msg)
    elif isinstance(msg, objects_pb2.Node):
        _node(problems, msg)
    elif isinstance(msg, objects_pb2.Namespace):
        problems.one_of("status.phase", msg.status.phase, NAMESPACE_PHASES)
    elif isinstance(msg, objects_pb2.Event):
        _event(problems, msg)
    elif isinstance(msg, objects_pb2.ConfigMap):
        _config_data(problems, {"data": msg.data, "binaryData": msg.binary_data})
    elif isinstance(msg, objects_pb2.Secret):
        _config_data(problems, {"data": msg.data})
        if msg.HasField("sealed"):
            problems.add("sealed", "set by the masters only")
        if len(msg.type) > MAX_CONFIG_KEY:
            problems.add("type", f"at most {MAX_CONFIG_KEY} characters")
    elif isinstance(msg, objects_pb2.PersistentVolumeClaim):
        validate_claim(problems, msg)
    elif isinstance(msg, objects_pb2.Job):
        validate_job(problems, msg)
        _conditions(problems, "status.conditions", msg.status.conditions)
    elif isinstance(msg, objects_pb2.CronJob):
        validate_cron_job(problems, msg)
    elif isinstance(msg, objects_pb2.DaemonSet):
        validate_daemon_set(problems, msg)
    problems.raise_if_any()


def validate_metadata(kind: Kind, m: objects_pb2.ObjectMeta) -> None:
    """Raise Invalid naming every problem of an object's metadata alone (what `validate` checks
    of it): for writes whose rest was validated already (a replica set's pods, from its template)."""
    problems = Problems()
    _metadata(problems, kind, m)
    problems.raise_if_any()


_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_CONFIG_KEY = 253


def _config_data(problems: Problems, fields: Mapping[str, Mapping[str, str] | Mapping[str, bytes]]) -> None:
    """Keys become file names in a volume: no '/', not '.' or '..', unique across the fields; the
    values at most 1 MiB in all."""
    seen: set[str] = set()
    size = 0
    for path, keys in fields.items():
        for key in sorted(keys):
            if not _CONFIG_KEY.fullmatch(key) or key in (".", "..") or len(key) > MAX_CONFIG_KEY:
                problems.add(f"{path}[{quote(key)}]", "a key must be letters, digits, '-', '_' or '.', "
                                                     f"not '.' or '..', at most {MAX_CONFIG_KEY} characters")
            elif key in seen:
                problems.add(f"{path}[{quote(key)}]", "the key is also in data")
            seen.add(key)
            value = keys[key]
            size += len(key) + len(value.encode() if isinstance(value, str) else value)
    if size > MAX_OBJECT_BYTES:
        problems.add("data", f"{size} bytes in all is larger than the limit of {MAX_OBJECT_BYTES} bytes")


def check_object_size(kind_name: str, size: int) -> None:
    """Raise Invalid when an object, encoded, is larger than a store value may be."""
    if size > MAX_OBJECT_BYTES:
        raise Invalid(f"{kind_name}: {size} bytes encoded is larger than the limit of {MAX_OBJECT_BYTES} bytes "
                      "for one object")


def _metadata(problems: Problems, kind: Kind, m: objects_pb2.ObjectMeta) -> None:
    # Namespace and Service names become DNS labels (`<service>.<namespace>.svc`), so no dots.
    name_rule = dns1123_label_error if kind in (NAMESPACE, SERVICE) else dns1123_subdomain_error
    problems.check("metadata.name", name_rule(m.name))
    if kind.namespaced:
        if m.namespace:
            problems.check("metadata.namespace", dns1123_label_error(m.namespace))
    elif m.namespace:
        problems.add("metadata.namespace", f"must be empty for {kind.name}, which is cluster-scoped, "
                                           f"got {quote(m.namespace)}")
    problems.labels("metadata.labels", m.labels)
    for key in sorted(m.annotations):
        problems.check("metadata.annotations", qualified_name_error(key))
    size = sum(len(key.encode()) + len(value.encode()) for key, value in m.annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        problems.add("metadata.annotations", f"must be at most {MAX_ANNOTATIONS_BYTES} bytes in all, got {size}")
    problems.not_negative("metadata.resourceVersion", m.resource_version)
    problems.not_negative("metadata.generation", m.generation)
    _time(problems, "metadata.creationTimestamp", m.creation_timestamp)
    _time(problems, "metadata.deletionTimestamp", m.deletion_timestamp)
    controllers = 0
    for i, ref in enumerate(m.owner_references):
        for field, value in (("kind", ref.kind), ("name", ref.name), ("uid", ref.uid)):
            if not value:
                problems.add(f"metadata.ownerReferences[{i}].{field}", "required")
        controllers += ref.controller
        if ref.controller and controllers > 1:
            problems.add(f"metadata.ownerReferences[{i}].controller", "only one owner may be the controller")


def _time(problems: Problems, path: str, text: str) -> None:
    if text:
        try:
            parse_time(text)
        except Invalid as exc:
            problems.add(path, exc.message)


def _conditions(problems: Problems, path: str, conditions: Iterable[objects_pb2.Condition]) -> None:
    for i, condition in enumerate(conditions):
        if not condition.type:
            problems.add(f"{path}[{i}].type", "required")
        problems.one_of(f"{path}[{i}].status", condition.status, CONDITION_STATUSES, empty_ok=False)


def _selector_and_template(problems: Problems, kind: Kind, selector: objects_pb2.LabelSelector,
                           template: objects_pb2.PodTemplateSpec) -> None:
    match_labels = selector.match_labels
    if not match_labels:
        problems.add("spec.selector.matchLabels", "required: an empty selector would select every pod")
    problems.labels("spec.selector.matchLabels", match_labels)
    labels = template.metadata.labels
    problems.labels("spec.template.metadata.labels", labels)
    if match_labels and not matches(selector_from_match_labels(match_labels), labels):
        wanted = ",".join(f"{key}={match_labels[key]}" for key in sorted(match_labels))
        got = ",".join(f"{key}={labels[key]}" for key in sorted(labels))
        problems.add("spec.template.metadata.labels",
                     f'must include spec.selector.matchLabels "{wanted}", got "{got}"')
    validate_pod_spec(problems, "spec.template.spec", template.spec)
    policy = template.spec.restart_policy
    if policy in RESTART_POLICIES and policy != "Always":
        problems.add("spec.template.spec.restartPolicy", f'must be Always for a {kind.name}, got "{policy}"')


def _deployment(problems: Problems, spec: objects_pb2.DeploymentSpec) -> None:
    if spec.HasField("replicas"):
        problems.not_negative("spec.replicas", spec.replicas)
    _selector_and_template(problems, DEPLOYMENT, spec.selector, spec.template)
    strategy = spec.strategy
    problems.one_of("spec.strategy.type", strategy.type, STRATEGY_TYPES)
    rolling = strategy.rolling_update
    if strategy.type == "Recreate":
        if rolling.max_surge or rolling.max_unavailable:
            problems.add("spec.strategy.rollingUpdate", "must not be set when spec.strategy.type is Recreate")
    else:
        surge = _int_or_percent(problems, "spec.strategy.rollingUpdate.maxSurge", rolling.max_surge)
        unavailable = _int_or_percent(problems, "spec.strategy.rollingUpdate.maxUnavailable", rolling.max_unavailable)
        if unavailable is not None and unavailable[1] and unavailable[0] > 100:
            problems.add("spec.strategy.rollingUpdate.maxUnavailable",
                         f"must not be more than 100%, got {rolling.max_unavailable}")
        if surge is not None and unavailable is not None and surge[0] == 0 and unavailable[0] == 0:
            # Neither a new pod could start nor an old one stop: the rollout could never progress.
            problems.add("spec.strategy.rollingUpdate.maxUnavailable", "must not be 0 when maxSurge is 0")
    if spec.HasField("revision_history_limit"):
        problems.not_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    problems.not_negative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("rollback_to"):
        problems.not_negative("spec.rollbackTo", spec.rollback_to)


def _int_or_percent(problems: Problems, path: str, value: str) -> tuple[int, bool] | None:
    """The parsed value, or None when it is empty (a default applies) or invalid."""
    if not value:
        return None
    try:
        return parse_int_or_percent(value)
    except Invalid as exc:
        problems.add(path, exc.message)
        return None


def _service(problems: Problems, spec: objects_pb2.ServiceSpec) -> None:
    problems.one_of("spec.type", spec.type, SERVICE_TYPES)
    if not spec.ports:
        problems.add("spec.ports", "at least one port is required")
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    node_ports: set[int] = set()
    low, high = NODE_PORT_RANGE
    for i, port in enumerate(spec.ports):
        where = f"spec.ports[{i}]"
        if port.name:
            problems.check(f"{where}.name", dns1123_label_error(port.name))
            if port.name in names:
                problems.add(f"{where}.name", f"duplicate name {quote(port.name)}")
            names.add(port.name)
        elif len(spec.ports) > 1:
            problems.add(f"{where}.name", "required when the service has more than one port")
        problems.one_of(f"{where}.protocol", port.protocol, PROTOCOLS)
        problems.in_range(f"{where}.port", port.port, 1, 65535)
        key = (port.port, port.protocol or "TCP")
        if key in ports:
            problems.add(f"{where}.port", f"duplicate port {key[0]}/{key[1]}")
        ports.add(key)
        if port.target_port:
            problems.check(f"{where}.targetPort", port_number_or_name_error(port.target_port))
        if port.node_port:
            if not low <= port.node_port <= high:
                problems.add(f"{where}.nodePort", f"must be 0 or between {low} and {high}, got {port.node_port}")
            elif spec.type != "NodePort":
                problems.add(f"{where}.nodePort", "may only be set when spec.type is NodePort")
            if port.node_port in node_ports:
                problems.add(f"{where}.nodePort", f"duplicate node port {port.node_port}")
            node_ports.add(port.node_port)
    problems.labels("spec.selector", spec.selector)
    if spec.cluster_ip:
        problems.check("spec.clusterIP", _ipv4_error(spec.cluster_ip))


def _ipv4_error(text: str) -> str | None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return f"must be an IPv4 address like 10.0.0.1, got {quote(text)}"
    return None


def _endpoints(problems: Problems, endpoints: objects_pb2.Endpoints) -> None:
    for i, subset in enumerate(endpoints.subsets):
        where = f"subsets[{i}]"
        for field, addresses in (("addresses", subset.addresses), ("notReadyAddresses", subset.not_ready_addresses)):
            for j, address in enumerate(addresses):
                problems.check(f"{where}.{field}[{j}].ip", _ipv4_error(address.ip) if address.ip else "required")
        for j, port in enumerate(subset.ports):
            if port.name:
                problems.check(f"{where}.ports[{j}].name", dns1123_label_error(port.name))
            problems.in_range(f"{where}.ports[{j}].port", port.port, 1, 65535)
            problems.one_of(f"{where}.ports[{j}].protocol", port.protocol, PROTOCOLS)


def _node(problems: Problems, node: objects_pb2.Node) -> None:
    if node.spec.pod_cidr:
        try:
            ipaddress.IPv4Network(node.spec.pod_cidr, strict=False)
            valid = "/" in node.spec.pod_cidr
        except ValueError:
            valid = False
        if not valid:
            problems.add("spec.podCIDR", f"must be an IPv4 network like 10.244.1.0/24, got {quote(node.spec.pod_cidr)}")
    validate_taints(problems, "spec.taints", node.spec.taints)
    for group, values in (("capacity", node.status.capacity), ("allocatable", node.status.allocatable)):
        for name in sorted(values):
            parse = {"cpu": parse_cpu, "memory": parse_memory}.get(name, parse_count)
            error = qualified_name_error(name)
            if error is not None:
                problems.add(f"status.{group}", error)
                continue
            try:
                parse(values[name])
            except Invalid as exc:
                problems.add(f"status.{group}[{name}]", exc.message)
    for i, address in enumerate(node.status.addresses):
        problems.one_of(f"status.addresses[{i}].type", address.type, NODE_ADDRESS_TYPES, empty_ok=False)
        if not address.address:
            problems.add(f"status.addresses[{i}].address", "required")
    _conditions(problems, "status.conditions", node.status.conditions)


def _event(problems: Problems, event: objects_pb2.Event) -> None:
    if not event.involved_object.name:
        problems.add("involvedObject.name", "required")
    problems.one_of("type", event.type, EVENT_TYPES)
    problems.not_negative("count", event.count)
    _time(problems, "firstTimestamp", event.first_timestamp)
    _time(problems, "lastTimestamp", event.last_timestamp)


def check_unknown_fields(msg: Message) -> None:
    """Raise Invalid naming every place where `msg` carries fields this schema does not know.

    Such fields come from a newer sender; storing them silently would drop their meaning.
    """
    problems = Problems()
    if isinstance(msg, objects_pb2.Object):
        for number in _unknown_numbers(msg):
            problems.add("object", f"unknown field number {number}, perhaps a kind this version does not know")
        if msg.WhichOneof("kind") is not None:
            _unknown_fields(problems, "", unwrap(msg)[1])
    else:
        _unknown_fields(problems, "", msg)
    problems.raise_if_any()


def _unknown_numbers(msg: Message) -> list[int]:
    unknown = UnknownFieldSet(msg)
    return sorted({unknown[i].field_number for i in range(len(unknown))})


def _unknown_fields(problems: Problems, path: str, msg: Message) -> None:
    for number in _unknown_numbers(msg):
        problems.add(path or msg.DESCRIPTOR.name, f"unknown field number {number}")
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        child = f"{path}.{field.json_name}" if path else field.json_name
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key in sorted(value):
                    _unknown_fields(problems, f"{child}[{key}]", value[key])
        elif field.is_repeated:
            for i, item in enumerate(value):
                _unknown_fields(problems, f"{child}[{i}]", item)
        else:
            _unknown_fields(problems, child, value)
