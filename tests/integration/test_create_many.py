"""CreateMany, the controller manager's batch of creates, and its narrow path for a replica
set's pods (master/template_pods.py): nothing its checks would refuse is stored, and nobody but
the controller manager may call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from raftorch.api.v1 import objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.errors import Invalid, PermissionDenied
from raftorch.master.controllers.replicaset import _new_pod
from raftorch.objects import wrap
from tests.integration._inprocess import InProcessCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    # Process mode: the controller manager's local socket is what may call CreateMany.
    with InProcessCluster(tmp_path, masters=3, nodes=["node-a"], controllers="process") as c:
        yield c


def test_create_many_stores_nothing_its_checks_would_refuse(cluster: InProcessCluster) -> None:
    """A replica set's pods skip the full create only when they are its stored template: a pod
    that names the replica set but differs is checked in full (and refused if invalid); the
    public API cannot call CreateMany at all."""
    labels = {"app": "tmpl"}
    rs = objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(name="tmpl", namespace="default"),
        spec=objects_pb2.ReplicaSetSpec(
            replicas=0, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="web:v1")]))))
    leader = cluster.masters[cluster.leader()]
    with cluster.client() as c:
        stored = c.objects.create(rs)
        assert isinstance(stored, objects_pb2.ReplicaSet)
        with pytest.raises(grpc.RpcError) as refused:
            c._conn.stubs(leader.client_addr).resources.CreateMany(
                resources_pb2.CreateManyRequest(objects=[wrap(_new_pod(stored, "tmpl-public"))]), timeout=10)
        assert refused.value.code() == PermissionDenied.grpc_code  # type: ignore[attr-defined]

    bad = _new_pod(stored, "tmpl-bad")
    bad.spec.containers[0].ports.add(container_port=70000)
    unknown = _new_pod(stored, "tmpl-unknown")
    unknown.spec.MergeFromString(b"\xf8\x3f\x01")  # a field number this schema does not know
    assert leader.local_api is not None
    with grpc.insecure_channel(leader.local_api.address) as channel:
        stub = resources_pb2_grpc.ResourcesStub(channel)
        answer = stub.CreateMany(resources_pb2.CreateManyRequest(
            objects=[wrap(bad), wrap(_new_pod(stored, "tmpl-good"))]), timeout=15)
        # Unknown fields anywhere: the whole call is refused as it is parsed.
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateMany(resources_pb2.CreateManyRequest(objects=[wrap(unknown)]), timeout=15)
        assert refused.value.code() == Invalid.grpc_code  # type: ignore[attr-defined]
    invalid, good = answer.outcomes
    assert invalid.error_code == Invalid.code and "containerPort" in invalid.error_message
    assert not good.error_code and good.object.pod.spec == stored.spec.template.spec
    with cluster.client() as c:
        names = {p.metadata.name for p in c.objects.list("pods", "default")[0]}  # type: ignore[attr-defined]
    assert not names & {"tmpl-public", "tmpl-bad", "tmpl-unknown"}
