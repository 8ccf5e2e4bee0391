"""Kubernetes manifests (YAML/JSON documents) to protobuf objects and back.

A manifest written for Kubernetes should work as is: its field names are Kubernetes' (camelCase,
`clusterIP`, `podCIDR`), int-or-string fields may be numbers (`targetPort: 8080`), quantities
may be numbers (`cpu: 1`), and fields Kubernetes fills in on its side (`status`,
`metadata.managedFields`, `progressDeadlineSeconds`, ...) are accepted and ignored. Anything
else raftorch does not know is refused with its path, so a typo never passes silently.

`load_documents` reads the YAML (or JSON) text of a manifest file within bounds: nesting depth,
and the size of each document with its aliases expanded (a few KB of nested aliases can stand
for billions of nodes: the "billion laughs"), so no file costs more than its bounded size.

`to_manifest` writes what Kubernetes would: apiVersion and kind first, Kubernetes' names,
numbers where Kubernetes has numbers, empty fields left out. Its output read back with
`from_manifest` gives the same message.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from raftorch.errors import Invalid
from raftorch.objects._checks import Problems, quote
from raftorch.objects.kinds import (
    CONFIG_MAP,
    CRON_JOB,
    DAEMON_SET,
    DEPLOYMENT,
    JOB,
    KINDS,
    NAMESPACE,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    REPLICA_SET,
    SECRET,
    SERVICE,
    Kind,
    kind_of_message,
)
from raftorch.objects.meta import format_time

__all__ = [
    "APPLICABLE_KINDS",
    "api_version",
    "from_manifest",
    "kind_of_manifest",
    "load_documents",
    "to_manifest",
]

_API_VERSIONS: dict[str, str] = {kind.name: "v1" for kind in KINDS} | {
    DEPLOYMENT.name: "apps/v1", REPLICA_SET.name: "apps/v1", DAEMON_SET.name: "apps/v1",
    JOB.name: "batch/v1", CRON_JOB.name: "batch/v1"}

# What a manifest may create; the other kinds are written by the masters and agents only.
APPLICABLE_KINDS: tuple[Kind, ...] = (DEPLOYMENT, REPLICA_SET, DAEMON_SET, JOB, CRON_JOB, POD, SERVICE, NAMESPACE,
                                     CONFIG_MAP, SECRET, PERSISTENT_VOLUME_CLAIM)

# Bounds of one manifest document. Real objects nest about 10 levels and hold a few thousand
# nodes; an object is at most 1 MiB in the store, so nothing valid comes near these.
MAX_DEPTH = 100
MAX_NODES = 200_000

# Kubernetes capitalises these acronyms; proto3 JSON names do not.
_TO_PROTO = {"clusterIP": "clusterIp", "podCIDR": "podCidr", "podIP": "podIp", "hostIP": "hostIp",
             "containerID": "containerId"}
_TO_KUBERNETES = {proto: k8s for k8s, proto in _TO_PROTO.items()}

# Fields Kubernetes has (and prints in `kubectl get -o yaml`) that mean nothing here.
_IGNORED: dict[str, frozenset[str]] = {
    "raftorch.v1.ObjectMeta": frozenset({"managedFields", "selfLink", "finalizers", "deletionGracePeriodSeconds"}),
    "raftorch.v1.OwnerReference": frozenset({"apiVersion", "blockOwnerDeletion"}),
    "raftorch.v1.Namespace": frozenset({"spec"}),
    "raftorch.v1.DeploymentSpec": frozenset({"progressDeadlineSeconds"}),
    "raftorch.v1.PodSpec": frozenset({"dnsPolicy", "schedulerName", "securityContext", "enableServiceLinks"}),
    "raftorch.v1.Container": frozenset({"terminationMessagePath", "terminationMessagePolicy"}),
    # Docker's default seccomp profile always applies; Kubernetes' restricted level asks for it.
    "raftorch.v1.SecurityContext": frozenset({"seccompProfile"}),
    "raftorch.v1.ServiceSpec": frozenset({"sessionAffinity", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
                                          "internalTrafficPolicy", "externalTrafficPolicy"}),
}

# Fields Kubernetes has whose meaning raftorch lacks: refused with a hint instead of "unknown".
_UNSUPPORTED: dict[tuple[str, str], str] = {
    ("raftorch.v1.LabelSelector", "matchExpressions"): "not supported by raftorch; use matchLabels",
    ("raftorch.v1.ObjectMeta", "generateName"): "not supported by raftorch; set metadata.name",
    ("raftorch.v1.Affinity", "podAffinity"): "not supported by raftorch; podAntiAffinity and nodeAffinity are",
    ("raftorch.v1.NodeSelectorTerm", "matchFields"): "not supported by raftorch; use matchExpressions on labels",
    ("raftorch.v1.PodAffinityTerm", "namespaces"): "not supported by raftorch; terms match the pod's namespace",
    ("raftorch.v1.PodAffinityTerm", "namespaceSelector"): "not supported by raftorch; terms match the pod's namespace",
    ("raftorch.v1.JobSpec", "completionMode"): "not supported by raftorch; jobs are NonIndexed",
    ("raftorch.v1.JobSpec", "suspend"): "not supported by raftorch",
    ("raftorch.v1.JobSpec", "manualSelector"): "not supported by raftorch; the selector is job-name=NAME",
    ("raftorch.v1.JobSpec", "podFailurePolicy"): "not supported by raftorch; use backoffLimit",
    ("raftorch.v1.RollingUpdateDaemonSet", "maxSurge"): "not supported by raftorch; use maxUnavailable",
}

# Kubernetes' int-or-string fields, stored as strings: numbers are written back as numbers.
_INT_OR_STRING = frozenset({
    "raftorch.v1.ServicePort.target_port",
    "raftorch.v1.RollingUpdateDeployment.max_surge",
    "raftorch.v1.RollingUpdateDeployment.max_unavailable",
    "raftorch.v1.RollingUpdateDaemonSet.max_unavailable",
    "raftorch.v1.HTTPGetAction.port",
    "raftorch.v1.TCPSocketAction.port",
})
# Kubernetes writes this int64 as a string; so do we, and both are read.
_RESOURCE_VERSION = "raftorch.v1.ObjectMeta.resource_version"
_CONTAINER_STATE = "raftorch.v1.ContainerState"

_INT_TYPES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def api_version(kind: Kind) -> str:
    return _API_VERSIONS[kind.name]


def _known() -> str:
    return ", ".join(f"{api_version(k)} {k.name}" for k in APPLICABLE_KINDS)


def kind_of_manifest(doc: object) -> Kind:
    """The kind a manifest describes, from its apiVersion and kind."""
    if not isinstance(doc, Mapping):
        raise Invalid(f"expected a mapping with apiVersion and kind, got {_type_name(doc)}")
    version, name = doc.get("apiVersion"), doc.get("kind")
    for field, value in (("apiVersion", version), ("kind", name)):
        if value is None or value == "":
            raise Invalid(f"{field}: required")
        if not isinstance(value, str):
            raise Invalid(f"{field}: expected a string, got {_type_name(value)}")
    kind = next((k for k in APPLICABLE_KINDS if k.name == name and api_version(k) == version), None)
    if kind is None:
        hint = next((f" ({k.name} is {api_version(k)})" for k in APPLICABLE_KINDS if k.name == name), "")
        raise Invalid(f'unknown kind "{name}" (apiVersion {version}){hint}; raftctl knows: {_known()}')
    return kind


class _ManifestLimit(yaml.YAMLError):
    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting bound (its composer recurses: deep nesting would
    end in RecursionError) and a bound on each document's size with aliases expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _ManifestLimit(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _check_expanded_size(node)
        return node


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes a document stands for once every alias is expanded, without expanding."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node reached again while counting it: a recursive alias
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        if total > MAX_NODES:
            raise _ManifestLimit(f"expands to more than {MAX_NODES} values (through aliases, perhaps)",
                                 node.start_mark)
        sizes[id(node)] = total
        return total

    size(root)


def load_documents(text: str) -> list[Any]:
    """The documents of a YAML or JSON text, empty ones left out. Raises Invalid with the
    place of the problem for bad YAML and for a document beyond the bounds."""
    try:
        return [d for d in yaml.load_all(text, Loader=_BoundedLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(exc, _ManifestLimit):
            raise Invalid(f"document too large{where}: {exc.problem}") from None
        problem = getattr(exc, "problem", None) or "not YAML"
        raise Invalid(f"invalid YAML{where}: {problem}") from None


def from_manifest(doc: Mapping[str, Any]) -> Message:
    """The object a Kubernetes-style manifest describes. Raises Invalid naming every bad field."""
    kind = kind_of_manifest(doc)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "status")}
    problems = Problems()
    normalised = _message(problems, "", body, cast(Descriptor, kind.message.DESCRIPTOR))
    problems.raise_if_any()
    msg = kind.message()
    try:
        json_format.ParseDict(normalised, msg)
    except json_format.ParseError as exc:  # pragma: no cover - the walk above checks what ParseDict does
        raise Invalid(str(exc)) from None
    return msg


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _message(problems: Problems, path: str, value: object, desc: Descriptor) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        problems.add(path or desc.name, f"expected a mapping, got {_type_name(value)}")
        return {}
    fields = {f.json_name: f for f in desc.fields}
    ignored = _IGNORED.get(desc.full_name, frozenset())
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = str(raw_key)
        where = _join(path, key)
        field = fields.get(_TO_PROTO.get(key, key))
        if field is None or key in _TO_KUBERNETES:
            # A proto spelling such as "clusterIp" is not Kubernetes' and is not accepted either.
            if key not in ignored:
                problems.add(where, _UNSUPPORTED.get((desc.full_name, key), "unknown field"))
            continue
        if item is None:
            continue  # YAML's `key:` or `key: null`, as Kubernetes: unset
        converted = _field(problems, where, item, field)
        if converted is not None:
            out[field.json_name] = converted
    return out


def _field(problems: Problems, path: str, value: object, field: FieldDescriptor) -> Any:
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        if not isinstance(value, Mapping):
            problems.add(path, f"expected a mapping, got {_type_name(value)}")
            return None
        value_field = message_type.fields_by_name["value"]
        return {str(k): _single(problems, f"{path}[{k}]", v, value_field) for k, v in value.items()
                if v is not None}
    if field.is_repeated:
        if not isinstance(value, list):
            problems.add(path, f"expected a list, got {_type_name(value)}")
            return None
        return [_single(problems, f"{path}[{i}]", item, field) for i, item in enumerate(value)]
    return _single(problems, path, value, field)


def _single(problems: Problems, path: str, value: object, field: FieldDescriptor) -> Any:
    if field.message_type is not None:
        return _message(problems, path, value, field.message_type)
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return _string(problems, path, value)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            problems.add(path, f"expected true or false, got {_type_name(value)}")
        return value
    if cpp in _INT_TYPES:
        if field.full_name == _RESOURCE_VERSION and isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(path, f"expected an integer, got {_type_name(value)}")
            return 0
        low, high = _INT_TYPES[cpp]
        if not low <= value <= high:
            problems.add(path, f"must be between {low} and {high}, got {value}")
            return 0
        return value
    problems.add(path, "unsupported field type")  # pragma: no cover - objects.proto has no others
    return None


def _string(problems: Problems, path: str, value: object) -> str:
    """Kubernetes' int-or-string fields, quantities and env values may be written as numbers."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dt.datetime):
        # YAML reads an unquoted timestamp as a datetime; Kubernetes means the RFC 3339 text.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return format_time(aware.timestamp())
    if isinstance(value, dt.date):
        return value.isoformat()
    problems.add(path, f"expected a string, got {_type_name(value)}")
    return ""


# -- to manifests ---------------------------------------------------------------------------


def to_manifest(msg: Message) -> dict[str, Any]:
    """The Kubernetes-style manifest of an object: apiVersion and kind first, empty fields out."""
    kind = kind_of_message(msg)
    return {"apiVersion": api_version(kind), "kind": kind.name, **_dump(msg)}


def _dump(msg: Message) -> dict[str, Any]:
    if msg.DESCRIPTOR.full_name == _CONTAINER_STATE:
        return _container_state(msg)
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        name = _TO_KUBERNETES.get(field.json_name, field.json_name)
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value_field = message_type.fields_by_name["value"]
            nested = value_field.message_type is not None
            out[name] = {k: _dump(value[k]) if nested else _scalar(value_field, value[k]) for k in sorted(value)}
        elif field.is_repeated:
            out[name] = [_dump(v) for v in value] if message_type is not None else list(value)
        elif message_type is not None:
            out[name] = _dump(value)
        else:
            out[name] = _scalar(field, value)
    return out


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.full_name in _INT_OR_STRING and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if field.full_name == _RESOURCE_VERSION:
        return str(value)
    if isinstance(value, bytes):  # as Kubernetes writes Secret data and binaryData
        return base64.b64encode(value).decode()
    return value


def _container_state(state: Any) -> dict[str, Any]:
    """raftorch's flat state ({state: running, startedAt}) as Kubernetes' {running: {startedAt}}."""
    detail: dict[str, Any] = {}
    if state.state == "terminated":
        detail = {"exitCode": state.exit_code}
    for key, value in (("reason", state.reason), ("message", state.message), ("startedAt", state.started_at),
                       ("finishedAt", state.finished_at)):
        if value:
            detail[key] = value
    return {state.state: detail} if state.state else {}
