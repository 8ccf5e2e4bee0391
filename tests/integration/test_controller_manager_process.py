"""The scheduler and the controllers in their own process (masters with controllers=process):
the cluster converges through it, it shows up as a pod, it is restarted when it dies, and the
writes of a deposed leader's controller manager are refused by term."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from raftorch.api.v1 import objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.errors import Conflict, PermissionDenied
from raftorch.master.controller_manager import RemoteWriter
from raftorch.objects import wrap
from tests.integration._inprocess import InProcessCluster, eventually
from tests.integration.test_inprocess_cluster import running, web

NODES = ["node-a", "node-b"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[InProcessCluster]:
    with InProcessCluster(tmp_path, masters=3, nodes=NODES, controllers="process") as c:
        yield c


def mirror_ready(cluster: InProcessCluster, master: str) -> bool:
    with cluster.client() as c:
        pods, _ = c.objects.list("pods", "raftorch-system")
    return any(isinstance(p, objects_pb2.Pod) and p.metadata.name == f"controller-manager-{master}"
               and p.status.phase == "Running" and p.spec.node_name == master
               and any(x.type == "Ready" and x.status == "True" for x in p.status.conditions) for p in pods)


def stale_pod(name: str) -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                           spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="x")]))


def test_deployments_converge_through_the_controller_manager_process(cluster: InProcessCluster) -> None:
    leader = cluster.leader()
    process = cluster.masters[leader].controller_process
    assert process is not None and process.pid is not None and process.pid != os.getpid()
    with cluster.client() as c:
        c.objects.create(web("web", 4))
    eventually(lambda: len(running(cluster, "web")) == 4, what="4 pods Running")
    # `get pods -A` shows it, on its master, Ready while its master leads.
    eventually(lambda: mirror_ready(cluster, leader), what="the controller manager's mirror pod Ready")


def test_a_killed_controller_manager_is_restarted_and_a_deployment_converges(cluster: InProcessCluster) -> None:
    leader = cluster.leader()
    process = cluster.masters[leader].controller_process
    assert process is not None
    eventually(lambda: process.pid is not None, what="the controller manager to run")
    killed = process.pid
    assert killed is not None
    starts = process.starts
    os.kill(killed, signal.SIGKILL)
    with cluster.client() as c:
        c.objects.create(web("meanwhile", 3))
    eventually(lambda: process.starts > starts and process.pid not in (None, killed),
               what="a new controller-manager process")
    eventually(lambda: len(running(cluster, "meanwhile")) == 3, what="3 pods Running after the restart")


# pysyncobj reads its journal's meta file on start without closing it (journal.py, getMeta):
# harmless, but a restart in this process makes the warning visible.
@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_leader_change_fences_the_old_controller_managers_writes(cluster: InProcessCluster) -> None:
    old_name = cluster.leader()
    old_term = cluster.masters[old_name].replica.term
    cluster.stop_master(old_name)
    new_name = cluster.leader()
    new = cluster.masters[new_name]
    assert new.replica.term > old_term

    # The old leader comes back as a follower; what its controller manager would still send,
    # fenced by the term it led in, is refused by the store (FAILED_PRECONDITION).
    back = cluster.start_master(old_name)
    eventually(lambda: back.replica.term > old_term, what="the old leader to learn the new term")
    assert back.local_api is not None
    with grpc.insecure_channel(back.local_api.address) as channel:
        writer = RemoteWriter(resources_pb2_grpc.ResourcesStub(channel))
        with pytest.raises(Conflict, match=f"term {old_term}"):
            writer.create(stale_pod("stale"), fence_term=old_term).result(15)
        # The current term's writes go through the same socket (they are forwarded to the leader).
        written = writer.create(stale_pod("fresh"), fence_term=new.replica.term).result(15)
        assert written.metadata.name == "fresh"  # type: ignore[attr-defined]
    with cluster.client() as c:
        names = {p.metadata.name for p in c.objects.list("pods", "default")[0]}  # type: ignore[attr-defined]
        assert "stale" not in names and "fresh" in names
        # Only the controller manager may fence a write: on the public API it is refused.
        request = resources_pb2.CreateRequest(object=wrap(stale_pod("x")), fence_term=new.replica.term)
        with pytest.raises(grpc.RpcError) as refused:
            c._conn.stubs(new.client_addr).resources.Create(request, timeout=10)
        assert refused.value.code() == PermissionDenied.grpc_code  # type: ignore[attr-defined]
        # And so are its batch calls.
        with pytest.raises(grpc.RpcError) as refused:
            c._conn.stubs(new.client_addr).resources.CreateMany(
                resources_pb2.CreateManyRequest(objects=[wrap(stale_pod("y"))]), timeout=10)
        assert refused.value.code() == PermissionDenied.grpc_code  # type: ignore[attr-defined]

    # The new leader's controller manager runs a deployment created after the change.
    with cluster.client() as c:
        c.objects.create(web("after", 2))
    eventually(lambda: len(running(cluster, "after")) == 2, what="2 pods Running under the new leader")


def test_a_lost_nodes_pods_are_replaced_elsewhere(cluster: InProcessCluster) -> None:
    """Node lifecycle stays with the master (its heartbeats); the master's narrow cache lists
    the lost node's pods from the store, and the controller manager replaces them."""
    with cluster.client() as c:
        c.objects.create(web("spread", 4))
    eventually(lambda: len(running(cluster, "spread")) == 4, what="4 pods Running")
    assert cluster.fleet is not None
    cluster.fleet.silence("node-a")
    eventually(lambda: len(running(cluster, "spread")) == 4
               and all(p.spec.node_name == "node-b" for p in running(cluster, "spread")),
               what="the 4 pods Running on node-b alone")
