from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.kinds import (
    DEPLOYMENT,
    ENDPOINTS,
    EVENT,
    KINDS,
    NAMESPACE,
    NODE,
    POD,
    REPLICA_SET,
    SERVICE,
    Kind,
    kind_of,
    kind_of_message,
    parse_store_key,
    store_key,
    store_prefix,
    unwrap,
    wrap,
)


def test_kinds_cover_every_field_of_the_object_oneof() -> None:
    oneof = objects_pb2.Object.DESCRIPTOR.oneofs_by_name["kind"]
    assert [kind.field for kind in KINDS] == [field.name for field in oneof.fields]
    for kind in KINDS:
        assert objects_pb2.Object.DESCRIPTOR.fields_by_name[kind.field].message_type is kind.message.DESCRIPTOR


def test_kind_is_frozen() -> None:
    with pytest.raises(AttributeError):
        POD.name = "Other"  # type: ignore[misc]


@pytest.mark.parametrize(("text", "kind"), [
    ("Pod", POD), ("pod", POD), ("POD", POD), ("pods", POD), ("po", POD), ("PO", POD),
    ("Deployment", DEPLOYMENT), ("deployments", DEPLOYMENT), ("deploy", DEPLOYMENT),
    ("ReplicaSet", REPLICA_SET), ("replicaset", REPLICA_SET), ("replicasets", REPLICA_SET), ("rs", REPLICA_SET),
    ("Service", SERVICE), ("services", SERVICE), ("svc", SERVICE),
    ("Endpoints", ENDPOINTS), ("endpoints", ENDPOINTS), ("ep", ENDPOINTS),
    ("Node", NODE), ("nodes", NODE), ("no", NODE),
    ("Namespace", NAMESPACE), ("namespaces", NAMESPACE), ("ns", NAMESPACE),
    ("Event", EVENT), ("events", EVENT), ("ev", EVENT),
])
def test_kind_of_accepts_every_spelling(text: str, kind: Kind) -> None:
    assert kind_of(text) is kind


@pytest.mark.parametrize("text", ["", "pood", "replica_set", " pods", "sekrets"])
def test_kind_of_rejects_unknown_kinds_listing_the_known_ones(text: str) -> None:
    with pytest.raises(Invalid) as exc:
        kind_of(text)
    assert str(exc.value) == (f'unknown kind "{text}"; known kinds: '
                              "Pod, Deployment, ReplicaSet, Service, Endpoints, Node, Namespace, Event, "
                              "Job, CronJob, DaemonSet, ConfigMap, Secret, "
                              "PersistentVolumeClaim")


@pytest.mark.parametrize(("kind", "namespaced"), [
    (POD, True), (DEPLOYMENT, True), (REPLICA_SET, True), (SERVICE, True), (ENDPOINTS, True), (EVENT, True),
    (NODE, False), (NAMESPACE, False),
])
def test_scope(kind: Kind, namespaced: bool) -> None:
    assert kind.namespaced is namespaced


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_wrap_and_unwrap_round_trip(kind: Kind) -> None:
    msg = kind.message()
    getattr(msg, "metadata").name = "x"  # noqa: B009
    obj = wrap(msg)
    assert obj.WhichOneof("kind") == kind.field
    got_kind, got = unwrap(obj)
    assert got_kind is kind
    assert got == msg
    assert kind_of_message(msg) is kind


def test_wrap_copies_and_unwrap_does_not() -> None:
    pod = objects_pb2.Pod()
    obj = wrap(pod)
    pod.metadata.name = "later"
    _, inner = unwrap(obj)
    assert isinstance(inner, objects_pb2.Pod)
    assert inner.metadata.name == ""
    inner.metadata.name = "changed"
    assert obj.pod.metadata.name == "changed"


def test_unwrap_of_an_empty_object_is_invalid() -> None:
    with pytest.raises(Invalid, match=r"^object: no kind is set$"):
        unwrap(objects_pb2.Object())


@pytest.mark.parametrize("msg", [objects_pb2.Object(), objects_pb2.Container(), objects_pb2.ObjectMeta()])
def test_messages_that_are_not_kinds_are_invalid(msg: objects_pb2.Object) -> None:
    with pytest.raises(Invalid, match=f"^{msg.DESCRIPTOR.name} is not a kind of object; known kinds: Pod, "):
        kind_of_message(msg)
    with pytest.raises(Invalid):
        wrap(msg)


@pytest.mark.parametrize(("kind", "namespace", "name", "key"), [
    (POD, "default", "web-1", "/registry/pods/default/web-1"),
    (DEPLOYMENT, "prod", "web", "/registry/deployments/prod/web"),
    (REPLICA_SET, "prod", "web-5d4f8", "/registry/replicasets/prod/web-5d4f8"),
    (SERVICE, "default", "web", "/registry/services/default/web"),
    (ENDPOINTS, "default", "web", "/registry/endpoints/default/web"),
    (EVENT, "default", "web.1", "/registry/events/default/web.1"),
    (NODE, "", "n1", "/registry/nodes/n1"),
    (NAMESPACE, "", "prod", "/registry/namespaces/prod"),
    # Cluster-scoped kinds ignore a namespace, as kubectl does.
    (NODE, "default", "n1", "/registry/nodes/n1"),
])
def test_store_key_and_back(kind: Kind, namespace: str, name: str, key: str) -> None:
    assert store_key(kind, namespace, name) == key
    assert parse_store_key(key) == (kind, namespace if kind.namespaced else "", name)


@pytest.mark.parametrize(("kind", "namespace", "name", "message"), [
    (POD, "", "web", "namespace: required"),
    (POD, "default", "", "name: required"),
    (NODE, "", "", "name: required"),
    (POD, "a/b", "web", 'namespace: must not contain "/", got "a/b"'),
    (POD, "default", "x/y", 'name: must not contain "/", got "x/y"'),
])
def test_store_key_rejects_segments_that_would_not_parse_back(kind: Kind, namespace: str, name: str,
                                                             message: str) -> None:
    with pytest.raises(Invalid) as exc:
        store_key(kind, namespace, name)
    assert str(exc.value) == message


@pytest.mark.parametrize(("kind", "namespace", "prefix"), [
    (POD, None, "/registry/pods/"),
    (POD, "", "/registry/pods/"),
    (POD, "prod", "/registry/pods/prod/"),
    (NODE, None, "/registry/nodes/"),
    (NODE, "prod", "/registry/nodes/"),
])
def test_store_prefix(kind: Kind, namespace: str | None, prefix: str) -> None:
    assert store_prefix(kind, namespace) == prefix


def test_store_prefixes_of_namespaces_do_not_overlap() -> None:
    assert not store_key(POD, "prod2", "web").startswith(store_prefix(POD, "prod"))
    assert not store_key(EVENT, "prod", "x").startswith(store_prefix(ENDPOINTS, None))


def test_store_prefix_rejects_a_slash() -> None:
    with pytest.raises(Invalid, match=r'^namespace: must not contain "/", got "a/b"$'):
        store_prefix(POD, "a/b")


@pytest.mark.parametrize(("key", "message"), [
    ("/other/pods/default/web", 'store key "/other/pods/default/web": does not start with "/registry/"'),
    ("/registry/sekrets/default/x", 'store key "/registry/sekrets/default/x": unknown kind "sekrets"'),
    ("/registry/pods/web", 'store key "/registry/pods/web": expected /registry/pods/namespace/name'),
    ("/registry/pods/default/", 'store key "/registry/pods/default/": expected /registry/pods/namespace/name'),
    ("/registry/pods/a/b/c", 'store key "/registry/pods/a/b/c": expected /registry/pods/namespace/name'),
    ("/registry/nodes/default/n1", 'store key "/registry/nodes/default/n1": expected /registry/nodes/name'),
    ("/registry/nodes/", 'store key "/registry/nodes/": expected /registry/nodes/name'),
])
def test_parse_store_key_rejects_malformed_keys(key: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_store_key(key)
    assert str(exc.value) == message
