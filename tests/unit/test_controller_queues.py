"""What a change puts in the controllers' work queues: a pod's change reaches its replica set,
that one's deployment and the services that select it; a deletion reaches what it owned."""

from __future__ import annotations

from typing import Any

from raftorch.api.v1 import objects_pb2
from raftorch.master.cache import ObjectCache
from raftorch.master.queues import Queues
from raftorch.master.registry import Registry
from raftorch.objects import kind_of
from raftorch.store.memory import MemoryReplica


def owned_by(meta: objects_pb2.ObjectMeta, kind: str, owner: Any) -> None:
    meta.owner_references.add(kind=kind, name=owner.metadata.name, uid=owner.metadata.uid, controller=True)


def setup() -> tuple[Registry, ObjectCache, Queues, dict[str, Any]]:
    registry = Registry(MemoryReplica())  # type: ignore[arg-type]
    registry.ensure_namespaces(["default"])
    made: dict[str, Any] = {}
    made["deploy"] = registry.create(objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="default"),
        spec=objects_pb2.DeploymentSpec(replicas=1, selector=objects_pb2.LabelSelector(match_labels={"app": "web"}),
                                        template=objects_pb2.PodTemplateSpec(
                                            metadata=objects_pb2.ObjectMeta(labels={"app": "web"}),
                                            spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
                                                name="c", image="x")]))))).result()
    rs = objects_pb2.ReplicaSet(metadata=objects_pb2.ObjectMeta(name="web-1", namespace="default"),
                                spec=objects_pb2.ReplicaSetSpec(
                                    replicas=1, selector=objects_pb2.LabelSelector(match_labels={"app": "web"}),
                                    template=made["deploy"].spec.template))
    owned_by(rs.metadata, "Deployment", made["deploy"])
    made["rs"] = registry.create(rs).result()
    for name, selector in (("web", {"app": "web"}), ("db", {"app": "db"})):
        made[f"svc-{name}"] = registry.create(objects_pb2.Service(
            metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
            spec=objects_pb2.ServiceSpec(selector=selector, ports=[objects_pb2.ServicePort(port=80)]))).result()
    cache = ObjectCache(registry.replica)  # type: ignore[arg-type]
    queues = Queues(lambda: 0.0)
    cache.listen(lambda change: queues.route(cache, change))
    return registry, cache, queues, made


def test_a_pods_change_queues_its_replica_set_deployment_and_selecting_services() -> None:
    registry, cache, queues, made = setup()
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web-1-a", namespace="default", labels={"app": "web"}),
                          spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="x")]))
    owned_by(pod.metadata, "ReplicaSet", made["rs"])
    registry.create(pod).result()
    queues.schedule = False
    cache.drain()
    assert queues.replicasets.drain() == [("default", "web-1")]
    assert queues.deployments.drain() == [("default", "web")]
    assert queues.endpoints.drain() == [("default", "web")]  # not "db": its selector does not pick the pod
    assert queues.gc.drain() == [("Pod", "default", "web-1-a")]
    assert queues.schedule


def test_a_deleted_owner_queues_what_it_controlled_for_collection() -> None:
    registry, cache, queues, _ = setup()
    cache.drain()
    registry.delete(kind_of("Deployment"), "default", "web").result()
    cache.drain()
    assert ("ReplicaSet", "default", "web-1") in queues.gc.drain()
    assert queues.deployments.drain() == [("default", "web")]


def test_unrelated_changes_queue_nothing_for_the_replica_sets() -> None:
    registry, cache, queues, _ = setup()
    cache.drain()
    for q in (queues.replicasets, queues.deployments, queues.endpoints, queues.gc):
        for key in q.drain():
            q.done(key)
    registry.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="other"))).result()
    cache.drain()
    assert not queues.replicasets.drain() and not queues.deployments.drain() and not queues.endpoints.drain()
