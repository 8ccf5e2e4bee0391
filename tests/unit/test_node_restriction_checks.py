"""Node restriction: a node's identity acts only as that node."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.auth import Identity, master_identity, node_identity
from raftorch.errors import Invalid, PermissionDenied
from raftorch.master.node_restriction import (
    authorize_heartbeat_forwarding,
    authorize_node,
    authorize_node_config_read,
    authorize_node_delete,
    authorize_node_read,
    authorize_node_write,
    check_pod_address,
)
from raftorch.objects import kind_of

NODE1 = node_identity("node-1")
ADMIN = Identity("user", "alice", "admin")
EDITOR = Identity("user", "bob", "edit")
NS_ADMIN = Identity("user", "carol", "admin", namespace="team-a")


def test_a_node_acts_as_itself_only() -> None:
    authorize_node(NODE1, "node-1", "heartbeat")
    with pytest.raises(PermissionDenied, match=r'^node "node-1" may not heartbeat as node "node-2": '
                                               r'a node acts only as itself$'):
        authorize_node(NODE1, "node-2", "heartbeat")


def test_masters_and_cluster_admins_act_for_any_node_and_others_for_none() -> None:
    authorize_node(master_identity("m1"), "node-2", "heartbeat")
    authorize_node(ADMIN, "hollow-7", "register")
    for caller in (EDITOR, NS_ADMIN):
        with pytest.raises(PermissionDenied, match="only that node's agent may"):
            authorize_node(caller, "node-1", "report pod status")


def test_only_masters_forward_heartbeats() -> None:
    authorize_heartbeat_forwarding(master_identity("m2"))
    with pytest.raises(PermissionDenied, match='node "node-1" may not forward heartbeats'):
        authorize_heartbeat_forwarding(NODE1)


def mirror(node: str, name: str | None = None, namespace: str = "raftorch-system") -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name or f"agent-{node}", namespace=namespace,
                                        annotations={"raftorch.io/mirror": "true"}),
        spec=objects_pb2.PodSpec(node_name=node))


def test_a_node_writes_only_its_own_mirror_pod() -> None:
    authorize_node_write(NODE1, mirror("node-1"))
    for other in (mirror("node-2"), mirror("node-1", name="agent-node-2"), mirror("node-1", namespace="default"),
                  objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="node-1"))):
        with pytest.raises(PermissionDenied, match='node "node-1" may not write'):
            authorize_node_write(NODE1, other)
    authorize_node_write(EDITOR, mirror("node-2"))  # the role decides for users


def test_a_node_reads_pods_bound_to_it_one_at_a_time_and_deletes_nothing() -> None:
    pods, nodes = kind_of("Pod"), kind_of("Node")
    authorize_node_read(NODE1, pods, mirror("node-1"))
    authorize_node_read(NODE1, nodes)
    with pytest.raises(PermissionDenied, match="not bound to that node"):
        authorize_node_read(NODE1, pods, mirror("node-2"))
    with pytest.raises(PermissionDenied, match="WatchNodePods"):
        authorize_node_read(NODE1, pods)
    authorize_node_read(EDITOR, pods)
    with pytest.raises(PermissionDenied, match="agents delete nothing"):
        authorize_node_delete(NODE1, nodes)
    authorize_node_delete(ADMIN, nodes)


def test_a_node_reads_secrets_and_config_maps_by_name_only() -> None:
    for kind in (kind_of("Secret"), kind_of("ConfigMap")):
        authorize_node_read(NODE1, kind, kind.message())
        with pytest.raises(PermissionDenied, match="by name"):
            authorize_node_read(NODE1, kind)
        authorize_node_read(EDITOR, kind)


def test_a_node_reads_only_the_config_its_own_pods_use() -> None:
    secret = kind_of("Secret")
    user = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default"), spec=objects_pb2.PodSpec(
        node_name="node-1", volumes=[objects_pb2.Volume(name="v", secret=objects_pb2.SecretVolumeSource(
            secret_name="db"))]))
    authorize_node_config_read(NODE1, secret, "default", "db", [user])
    with pytest.raises(PermissionDenied, match="no pod bound to that node uses it"):
        authorize_node_config_read(NODE1, secret, "default", "other", [user])
    with pytest.raises(PermissionDenied):
        authorize_node_config_read(NODE1, secret, "team-a", "db", [user])
    user.spec.node_name = "node-2"
    with pytest.raises(PermissionDenied):
        authorize_node_config_read(NODE1, secret, "default", "db", [user])
    authorize_node_config_read(EDITOR, secret, "default", "db", [])


def test_reported_pod_ips_that_mean_this_host_must_be_the_nodes_own() -> None:
    node = objects_pb2.Node(status=objects_pb2.NodeStatus(addresses=[
        objects_pb2.NodeAddress(type="InternalIP", address="127.0.0.1")]))
    for ip in ("", "10.244.1.7", "127.0.0.1", "192.168.1.5"):
        check_pod_address(node, objects_pb2.PodStatus(pod_ip=ip), "default/web")
    for ip in ("127.0.0.2", "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1"):
        with pytest.raises(PermissionDenied, match=rf"^pod default/web: status.podIP: {ip} is a host-local"):
            check_pod_address(node, objects_pb2.PodStatus(pod_ip=ip), "default/web")
    with pytest.raises(Invalid, match="'nope' is not an IP address"):
        check_pod_address(None, objects_pb2.PodStatus(pod_ip="nope"), "default/web")
