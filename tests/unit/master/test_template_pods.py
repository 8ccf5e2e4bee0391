"""The narrow create of a replica set's pods (template_pods.py, Registry.create_many), over an
in-memory replica: a pod that is its replica set's stored template takes it; anything else gets
the full create's checks, so no invalid or unknown content is stored this way."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import AlreadyExists, Invalid, NotFound
from raftorch.master.controllers.replicaset import _new_pod
from raftorch.master.registry import Registry
from raftorch.master.template_pods import TemplatePods
from raftorch.objects import POD, kind_of
from raftorch.store.memory import MemoryReplica

REPLICA_SET = kind_of("ReplicaSet")


@pytest.fixture
def registry() -> Registry:
    reg = Registry(MemoryReplica())  # type: ignore[arg-type]
    reg.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="default"))).result()
    return reg


def replica_set(registry: Registry, name: str = "web-1") -> objects_pb2.ReplicaSet:
    labels = {"app": "web"}
    rs = objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.ReplicaSetSpec(
            replicas=3, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
                    name="web", image="web:v1", ports=[objects_pb2.ContainerPort(container_port=80)])]))))
    made = registry.create(rs).result()
    assert isinstance(made, objects_pb2.ReplicaSet)
    return made


def templates(registry: Registry) -> TemplatePods:
    def current(key: str) -> object:
        with registry.replica.reading() as machine:
            return machine.index.current(key)
    return TemplatePods(current)


def stored_pod(registry: Registry, name: str) -> objects_pb2.Pod:
    pod = registry.get(POD, "default", name)
    assert isinstance(pod, objects_pb2.Pod)
    return pod


def test_a_replica_sets_pods_take_the_narrow_path(registry: Registry) -> None:
    rs = replica_set(registry)
    pods = [_new_pod(rs, f"web-1-{i}") for i in range(3)]
    check = templates(registry)
    assert all(check.checked(p) for p in pods)
    futures = registry.create_many(pods, checked=check.checked)
    assert [f.result().metadata.name for f in futures] == [p.metadata.name for p in pods]  # type: ignore[attr-defined]
    for i in range(3):
        pod = stored_pod(registry, f"web-1-{i}")
        assert pod.spec == rs.spec.template.spec
        assert pod.metadata.uid and pod.metadata.generation == 1 and pod.metadata.creation_timestamp
        assert pod.metadata.owner_references[0].uid == rs.metadata.uid
        assert pod.status.phase == "Pending"
    assert len({stored_pod(registry, f"web-1-{i}").metadata.uid for i in range(3)}) == 3


def narrow_or_refused(registry: Registry, pod: objects_pb2.Pod) -> tuple[bool, BaseException | None]:
    check = templates(registry)
    (future,) = registry.create_many([pod], checked=check.checked)
    return check.checked(pod), future.exception()


def test_a_pod_whose_spec_is_not_its_template_gets_the_full_checks(registry: Registry) -> None:
    rs = replica_set(registry)
    pod = _new_pod(rs, "web-1-bad")
    pod.spec.containers[0].ports[0].container_port = 70000  # invalid, and not the template
    narrow, error = narrow_or_refused(registry, pod)
    assert not narrow
    assert isinstance(error, Invalid) and "containerPort" in error.message
    with pytest.raises(NotFound):
        stored_pod(registry, "web-1-bad")


def test_unknown_fields_in_a_template_pod_are_refused(registry: Registry) -> None:
    rs = replica_set(registry)
    pod = _new_pod(rs, "web-1-unknown")
    # A field number this schema does not know, inside the spec, and then inside the metadata.
    pod.spec.containers[0].MergeFromString(b"\xf8\x3f\x01")
    narrow, error = narrow_or_refused(registry, pod)
    assert not narrow and isinstance(error, Invalid) and "unknown field" in error.message
    pod = _new_pod(rs, "web-1-unknown")
    pod.metadata.MergeFromString(b"\xf8\x3f\x01")
    narrow, error = narrow_or_refused(registry, pod)
    assert not narrow and isinstance(error, Invalid) and "unknown field" in error.message
    with pytest.raises(NotFound):
        stored_pod(registry, "web-1-unknown")


def test_a_template_pods_metadata_is_still_validated(registry: Registry) -> None:
    rs = replica_set(registry)
    pod = _new_pod(rs, "Not_A_Name")
    narrow, error = narrow_or_refused(registry, pod)
    assert not narrow and isinstance(error, Invalid) and "metadata.name" in error.message
    pod = _new_pod(rs, "web-1-labels")
    pod.metadata.labels["bad key!"] = "x"
    narrow, error = narrow_or_refused(registry, pod)
    assert not narrow and isinstance(error, Invalid) and "metadata.labels" in error.message


def pod_claiming(rs: objects_pb2.ReplicaSet, pod_name: str, **change: str) -> objects_pb2.Pod:
    pod = _new_pod(rs, pod_name)
    for field, value in change.items():
        setattr(pod.metadata.owner_references[0], field, value)
    return pod


@pytest.mark.parametrize("change", [{"uid": "another-uid"}, {"name": "no-such-rs"}, {"kind": "DaemonSet"}])
def test_only_the_owner_named_with_its_uid_lends_its_template(registry: Registry, change: dict[str, str]) -> None:
    rs = replica_set(registry)
    pod = pod_claiming(rs, "web-1-x", **change)
    assert not templates(registry).checked(pod)


def test_a_preset_status_or_a_second_owner_is_not_narrow(registry: Registry) -> None:
    rs = replica_set(registry)
    pod = _new_pod(rs, "web-1-ip")
    pod.status.pod_ip = "10.0.0.9"
    assert not templates(registry).checked(pod)
    pod = _new_pod(rs, "web-1-owners")
    pod.metadata.owner_references.add(kind="ReplicaSet", name="web-1", uid=rs.metadata.uid, controller=False)
    assert not templates(registry).checked(pod)
    pod = _new_pod(rs, "web-1-other-ns")
    pod.metadata.namespace = "elsewhere"
    assert not templates(registry).checked(pod)


def test_a_replica_set_changed_since_is_the_template_that_counts(registry: Registry) -> None:
    rs = replica_set(registry)
    old = _new_pod(rs, "web-1-old")
    rs.spec.template.spec.containers[0].image = "web:v2"
    registry.update(rs).result()
    assert not templates(registry).checked(old)
    assert templates(registry).checked(_new_pod(rs, "web-1-new"))


def test_creates_in_one_call_fail_alone(registry: Registry) -> None:
    """Each create ends as it would alone: a name taken, or a namespace missing, fails that
    create only."""
    rs = replica_set(registry)
    registry.create(_new_pod(rs, "web-1-taken")).result()
    lost = _new_pod(rs, "web-1-lost")
    lost.metadata.namespace = "gone"
    pods: list[Message] = [_new_pod(rs, "web-1-a"), _new_pod(rs, "web-1-taken"), lost, _new_pod(rs, "web-1-b")]
    futures = registry.create_many(pods, checked=templates(registry).checked)
    assert futures[0].result(timeout=10).metadata.name == "web-1-a"  # type: ignore[attr-defined]
    assert isinstance(futures[1].exception(timeout=10), AlreadyExists)
    assert isinstance(futures[2].exception(timeout=10), NotFound)
    assert futures[3].result(timeout=10).metadata.name == "web-1-b"  # type: ignore[attr-defined]


def test_a_name_twice_in_one_call_is_created_once(registry: Registry) -> None:
    rs = replica_set(registry)
    first, second = _new_pod(rs, "web-1-a"), _new_pod(rs, "web-1-a")
    second.spec.containers[0].image = "other:v1"
    futures = registry.create_many([first, second], checked=templates(registry).checked)
    assert futures[0].result(timeout=10).metadata.name == "web-1-a"  # type: ignore[attr-defined]
    assert isinstance(futures[1].exception(timeout=10), AlreadyExists)
    assert stored_pod(registry, "web-1-a").spec.containers[0].image == "web:v1"
