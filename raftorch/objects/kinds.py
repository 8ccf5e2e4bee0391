"""The kinds of cluster objects: their names, their messages and where the store keeps them."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import quote

__all__ = [
    "CONFIG_MAP",
    "CRON_JOB",
    "DAEMON_SET",
    "DEPLOYMENT",
    "ENDPOINTS",
    "EVENT",
    "JOB",
    "KINDS",
    "NAMESPACE",
    "NODE",
    "PERSISTENT_VOLUME_CLAIM",
    "POD",
    "REPLICA_SET",
    "SECRET",
    "SERVICE",
    "Kind",
    "kind_of",
    "kind_of_message",
    "parse_store_key",
    "store_key",
    "store_prefix",
    "unwrap",
    "wrap",
]

REGISTRY_PREFIX = "/registry/"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    message: type[Message]
    # The field of the `Object` oneof that holds this kind.
    field: str


POD = Kind("Pod", "pods", ("po",), True, objects_pb2.Pod, "pod")
DEPLOYMENT = Kind("Deployment", "deployments", ("deploy",), True, objects_pb2.Deployment, "deployment")
REPLICA_SET = Kind("ReplicaSet", "replicasets", ("rs",), True, objects_pb2.ReplicaSet, "replica_set")
SERVICE = Kind("Service", "services", ("svc",), True, objects_pb2.Service, "service")
ENDPOINTS = Kind("Endpoints", "endpoints", ("ep",), True, objects_pb2.Endpoints, "endpoints")
NODE = Kind("Node", "nodes", ("no",), False, objects_pb2.Node, "node")
NAMESPACE = Kind("Namespace", "namespaces", ("ns",), False, objects_pb2.Namespace, "namespace")
EVENT = Kind("Event", "events", ("ev",), True, objects_pb2.Event, "event")
JOB = Kind("Job", "jobs", (), True, objects_pb2.Job, "job")
CRON_JOB = Kind("CronJob", "cronjobs", ("cj",), True, objects_pb2.CronJob, "cron_job")
DAEMON_SET = Kind("DaemonSet", "daemonsets", ("ds",), True, objects_pb2.DaemonSet, "daemon_set")
CONFIG_MAP = Kind("ConfigMap", "configmaps", ("cm",), True, objects_pb2.ConfigMap, "config_map")
SECRET = Kind("Secret", "secrets", (), True, objects_pb2.Secret, "secret")
PERSISTENT_VOLUME_CLAIM = Kind("PersistentVolumeClaim", "persistentvolumeclaims", ("pvc",), True,
                               objects_pb2.PersistentVolumeClaim, "persistent_volume_claim")

KINDS: tuple[Kind, ...] = (POD, DEPLOYMENT, REPLICA_SET, SERVICE, ENDPOINTS, NODE, NAMESPACE, EVENT,
                           JOB, CRON_JOB, DAEMON_SET, CONFIG_MAP, SECRET,
                           PERSISTENT_VOLUME_CLAIM)

_BY_TEXT: dict[str, Kind] = {
    spelling: kind
    for kind in KINDS
    for spelling in (kind.name.lower(), kind.plural, *kind.short_names)
}
_BY_PLURAL: dict[str, Kind] = {kind.plural: kind for kind in KINDS}
_BY_MESSAGE: dict[str, Kind] = {kind.message.DESCRIPTOR.full_name: kind for kind in KINDS}
_BY_FIELD: dict[str, Kind] = {kind.field: kind for kind in KINDS}


def kind_of(text: str) -> Kind:
    """The kind a user means by `text`: its name, plural or short name, in any case."""
    kind = _BY_TEXT.get(text.lower())
    if kind is None:
        known = ", ".join(k.name for k in KINDS)
        raise Invalid(f'unknown kind {quote(text)}; known kinds: {known}')
    return kind


def kind_of_message(msg: Message) -> Kind:
    kind = _BY_MESSAGE.get(msg.DESCRIPTOR.full_name)
    if kind is None:
        raise Invalid(f"{msg.DESCRIPTOR.name} is not a kind of object; known kinds: {', '.join(k.name for k in KINDS)}")
    return kind


def wrap(msg: Message) -> objects_pb2.Object:
    """A copy of `msg` inside an `Object`."""
    kind = kind_of_message(msg)
    obj = objects_pb2.Object()
    getattr(obj, kind.field).CopyFrom(msg)
    return obj


def unwrap(obj: objects_pb2.Object) -> tuple[Kind, Message]:
    """The kind and the message inside `obj`; the message is `obj`'s own, not a copy."""
    field = obj.WhichOneof("kind")
    if field is None:
        raise Invalid("object: no kind is set")
    inner: Message = getattr(obj, field)
    return _BY_FIELD[field], inner


def _check_segment(what: str, value: str) -> None:
    # Store keys are split on '/', so a segment holding one would name another object.
    if not value:
        raise Invalid(f"{what}: required")
    if "/" in value:
        raise Invalid(f'{what}: must not contain "/", got "{value}"')


def store_key(kind: Kind, namespace: str, name: str) -> str:
    """Where the store keeps an object. Cluster-scoped kinds ignore `namespace`, as kubectl does."""
    _check_segment("name", name)
    if not kind.namespaced:
        return f"{REGISTRY_PREFIX}{kind.plural}/{name}"
    _check_segment("namespace", namespace)
    return f"{REGISTRY_PREFIX}{kind.plural}/{namespace}/{name}"


def store_prefix(kind: Kind, namespace: str | None) -> str:
    """The prefix of the keys of one kind: in one namespace, or in all of them for None or ""."""
    if not namespace or not kind.namespaced:
        return f"{REGISTRY_PREFIX}{kind.plural}/"
    _check_segment("namespace", namespace)
    return f"{REGISTRY_PREFIX}{kind.plural}/{namespace}/"


def parse_store_key(key: str) -> tuple[Kind, str, str]:
    """(kind, namespace, name) of a store key; namespace is "" for cluster-scoped kinds."""
    if not key.startswith(REGISTRY_PREFIX):
        raise Invalid(f'store key "{key}": does not start with "{REGISTRY_PREFIX}"')
    parts = key[len(REGISTRY_PREFIX):].split("/")
    kind = _BY_PLURAL.get(parts[0])
    if kind is None:
        raise Invalid(f'store key "{key}": unknown kind "{parts[0]}"')
    expected = 3 if kind.namespaced else 2
    if len(parts) != expected or not all(parts):
        shape = "namespace/name" if kind.namespaced else "name"
        raise Invalid(f'store key "{key}": expected {REGISTRY_PREFIX}{kind.plural}/{shape}')
    if kind.namespaced:
        return kind, parts[1], parts[2]
    return kind, "", parts[1]
