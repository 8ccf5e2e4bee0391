"""Node restriction against real masters: with node-1's certificate, nothing of node-2's can be
touched; and the attacks an agent identity (or no identity) could make on main now fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from raftorch import rpc
from raftorch.api.v1 import agents_pb2, agents_pb2_grpc, objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.auth import node_identity
from raftorch.auth.pki import ensure_ca, issue_pair
from raftorch.client import Client
from raftorch.errors import NotFound
from raftorch.local.masters import LocalMasters
from raftorch.objects import wrap
from tests.integration._wait import eventually

pytestmark = pytest.mark.processes

DENIED = grpc.StatusCode.PERMISSION_DENIED



def node_credentials(masters: LocalMasters, name: str) -> rpc.Credentials:
    assert masters.pki_dir is not None
    ca, _ = ensure_ca(masters.pki_dir)
    pair = issue_pair(ca, node_identity(name))
    return rpc.Credentials(ca.cert_pem, pair.cert_pem, pair.key_pem)


def node_object(name: str, endpoint: str) -> objects_pb2.Node:
    return objects_pb2.Node(
        metadata=objects_pb2.ObjectMeta(name=name),
        status=objects_pb2.NodeStatus(runtime="fake", agent_endpoint=endpoint,
                                      capacity={"cpu": "4", "memory": "8Gi", "pods": "110"},
                                      addresses=[objects_pb2.NodeAddress(type="InternalIP", address="127.0.0.1")]))


class NodeCaller:
    """Raw Agents and Resources calls to one master with one identity (or none)."""

    def __init__(self, endpoint: str, creds: rpc.Credentials | None) -> None:
        self.channel = rpc.channel(endpoint, creds)
        self.agents = agents_pb2_grpc.AgentsStub(self.channel)
        self.resources = resources_pb2_grpc.ResourcesStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def heartbeat(self, node: str, *more: str) -> agents_pb2.HeartbeatResponse:
        beat = agents_pb2.HeartbeatRequest(node=node, nodes=more, sequence=1)
        return next(iter(self.agents.Heartbeat(iter([beat]), timeout=10)))

    def report(self, node: str, pod: objects_pb2.Pod, phase: str) -> agents_pb2.ReportPodStatusResponse:
        update = agents_pb2.PodStatusUpdate(namespace=pod.metadata.namespace, name=pod.metadata.name,
                                            uid=pod.metadata.uid, status=objects_pb2.PodStatus(phase=phase))
        return self.agents.ReportPodStatus(agents_pb2.ReportPodStatusRequest(node=node, updates=[update]),
                                           timeout=10)

    def first_pod_event(self, node: str) -> resources_pb2.ObjectEvent:
        stream = self.agents.WatchNodePods(agents_pb2.WatchNodePodsRequest(node=node), timeout=10)
        try:
            return next(iter(stream))
        finally:
            stream.cancel()


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


@pytest.fixture
def two_nodes(masters: LocalMasters) -> Iterator[tuple[NodeCaller, NodeCaller, objects_pb2.Pod]]:
    """node-1 and node-2 registered with their own certificates, and a pod bound to node-2."""
    endpoint = masters.endpoints[0]
    one = NodeCaller(endpoint, node_credentials(masters, "node-1"))
    two = NodeCaller(endpoint, node_credentials(masters, "node-2"))
    try:
        one.agents.RegisterNode(agents_pb2.RegisterNodeRequest(node=node_object("node-1", "127.0.0.1:10001")),
                                timeout=10)
        two.agents.RegisterNode(agents_pb2.RegisterNodeRequest(node=node_object("node-2", "127.0.0.1:10002")),
                                timeout=10)
        with masters.client() as c:
            eventually(lambda: _exists(c, "namespaces", "default"), what="namespace default")
            created = c.objects.create(objects_pb2.Pod(
                metadata=objects_pb2.ObjectMeta(name="theirs", namespace="default"),
                spec=objects_pb2.PodSpec(node_name="node-2", containers=[objects_pb2.Container(name="c", image="i")])))
        assert isinstance(created, objects_pb2.Pod)
        # The nodes talk to the first master, which checks their reports against its own copy of
        # the store: a linearizable read there returns once that copy has the pod.
        first = next(name for name, m in masters.masters.items() if m.client_addr == endpoint)
        with masters.client([first]) as c:
            c.objects.get("pods", "theirs", "default")
        yield one, two, created
    finally:
        one.close()
        two.close()


def _exists(c: Client, kind: str, name: str, namespace: str = "") -> bool:
    try:
        c.objects.get(kind, name, namespace)
    except NotFound:
        return False
    return True


def test_node_1_cannot_heartbeat_report_or_watch_as_node_2(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, two, theirs = two_nodes
    # Its own calls work.
    assert one.heartbeat("node-1").sequence == 1
    assert one.first_pod_event("node-1").type == "BOOKMARK"
    # node-2's are refused, naming who asked for what.
    code, details = code_of(lambda: one.heartbeat("node-2"))
    assert code == DENIED and details == 'node "node-1" may not heartbeat as node "node-2": a node acts only as itself'
    code, details = code_of(lambda: one.report("node-2", theirs, "Failed"))
    assert code == DENIED and 'may not report pod status as node "node-2"' in details
    code, details = code_of(lambda: one.first_pod_event("node-2"))
    assert code == DENIED and 'may not watch the pods as node "node-2"' in details
    # Claiming to be itself does not reach node-2's pod either.
    code, details = code_of(lambda: one.report("node-1", theirs, "Failed"))
    assert code == DENIED and "is not bound to node node-1" in details
    with masters.client() as c:
        assert c.objects.get("pods", "theirs", "default").status.phase != "Failed"  # type: ignore[attr-defined]
    # node-2 itself may, but not point its pod at an address that means "this host" to other nodes.
    update = agents_pb2.PodStatusUpdate(namespace="default", name="theirs", uid=theirs.metadata.uid,
                                        status=objects_pb2.PodStatus(phase="Running", pod_ip="127.0.0.2"))
    code, details = code_of(lambda: two.agents.ReportPodStatus(
        agents_pb2.ReportPodStatusRequest(node="node-2", updates=[update]), timeout=10))
    assert code == DENIED and "127.0.0.2 is a host-local address" in details
    two.report("node-2", theirs, "Running")
    with masters.client() as c:
        assert c.objects.get("pods", "theirs", "default").status.phase == "Running"  # type: ignore[attr-defined]


def test_a_node_reads_only_its_own_pods_and_writes_only_its_mirror_pod(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, two, theirs = two_nodes
    get = resources_pb2.GetRequest(kind="Pod", namespace="default", name="theirs")
    code, details = code_of(lambda: one.resources.Get(get, timeout=10))
    assert code == DENIED and "not bound to that node" in details
    assert two.resources.Get(get, timeout=10).pod.metadata.uid == theirs.metadata.uid
    code, _ = code_of(lambda: next(iter(one.resources.Watch(resources_pb2.WatchObjectsRequest(kind="Pod"),
                                                            timeout=10))))
    assert code == DENIED
    code, _ = code_of(lambda: one.resources.Delete(resources_pb2.DeleteRequest(kind="Pod", namespace="default",
                                                                               name="theirs"), timeout=10))
    assert code == DENIED
    node2 = two.resources.Get(resources_pb2.GetRequest(kind="Node", name="node-2"), timeout=10).node
    node2.spec.unschedulable = True
    code, details = code_of(lambda: one.resources.Update(resources_pb2.UpdateRequest(object=wrap(node2)),
                                                         timeout=10))
    assert code == DENIED and 'node "node-1" may not write Node' in details
    # Services, endpoints and nodes are readable for its rules.
    items = one.resources.List(resources_pb2.ListRequest(kind="Node"), timeout=10).items
    assert {i.node.metadata.name for i in items} == {"node-1", "node-2"}
    one.resources.List(resources_pb2.ListRequest(kind="Service"), timeout=10)
    one.resources.List(resources_pb2.ListRequest(kind="Endpoints"), timeout=10)


# -- the attacks of the issue, each of which worked on main ----------------------------------------


def test_another_nodes_agent_endpoint_cannot_be_rewritten(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, _, _ = two_nodes
    # As node-1, re-registering node-2 with an endpoint of its choice.
    code, _ = code_of(lambda: one.agents.RegisterNode(
        agents_pb2.RegisterNodeRequest(node=node_object("node-2", "127.0.0.2:22")), timeout=10))
    assert code == DENIED
    # Without credentials at all.
    with rpc.channel(masters.endpoints[0]) as plain, pytest.raises(grpc.RpcError):
        agents_pb2_grpc.AgentsStub(plain).RegisterNode(
            agents_pb2.RegisterNodeRequest(node=node_object("node-2", "127.0.0.2:22")), timeout=10)
    # Even the admin's object update keeps the address the agent registered.
    with masters.client() as c:
        node = c.objects.get("nodes", "node-2")
        assert isinstance(node, objects_pb2.Node)
        node.status.agent_endpoint = "127.0.0.2:22"
        c.objects.update(node)
        assert c.objects.get("nodes", "node-2").status.agent_endpoint == "127.0.0.1:10002"  # type: ignore[attr-defined]


def test_a_pod_cannot_be_marked_failed_by_claiming_its_node(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, _, theirs = two_nodes
    code, _ = code_of(lambda: one.report("node-2", theirs, "Failed"))
    assert code == DENIED
    anonymous = NodeCaller(masters.endpoints[0], None)
    try:
        with pytest.raises(grpc.RpcError):
            anonymous.report("node-2", theirs, "Failed")
    finally:
        anonymous.close()
    with masters.client() as c:
        assert c.objects.get("pods", "theirs", "default").status.phase != "Failed"  # type: ignore[attr-defined]


def test_a_fake_node_cannot_be_kept_ready_with_forged_heartbeats(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, _, _ = two_nodes
    code, _ = code_of(lambda: one.agents.RegisterNode(
        agents_pb2.RegisterNodeRequest(node=node_object("ghost", "127.0.0.1:9")), timeout=10))
    assert code == DENIED
    code, _ = code_of(lambda: one.heartbeat("ghost"))
    assert code == DENIED
    # A beat for many nodes (the hollow fleet's) is checked for every node it names.
    code, details = code_of(lambda: one.heartbeat("node-1", "node-2"))
    assert code == DENIED and details == 'node "node-1" may not heartbeat as node "node-2": a node acts only as itself'
    # A follower's batch path is for masters only.
    code, details = code_of(lambda: one.agents.ForwardHeartbeats(agents_pb2.HeartbeatBatch(nodes=["ghost", "node-2"]),
                                                                 timeout=10))
    assert code == DENIED and "only masters do" in details
    with masters.client() as c:
        assert not _exists(c, "nodes", "ghost")


def test_an_admin_may_heartbeat_many_nodes_in_one_beat(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    """What a hollow fleet does: one credential that may act as any node (a cluster-wide admin)."""
    admin = NodeCaller(masters.endpoints[0], masters.credentials)
    try:
        assert admin.heartbeat("node-1", "node-2").sequence == 1
    finally:
        admin.close()


def _update(pod: objects_pb2.Pod, node: str, phase: str = "Running") -> agents_pb2.PodStatusUpdate:
    return agents_pb2.PodStatusUpdate(namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid,
                                      node=node, status=objects_pb2.PodStatus(phase=phase))


def test_a_report_for_many_nodes_is_checked_for_every_node_and_applied_whole(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    """What a hollow fleet sends: one report whose updates name their nodes, one transaction."""
    one, _, theirs = two_nodes
    with masters.client() as c:
        mine = c.objects.create(objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(name="mine", namespace="default"),
            spec=objects_pb2.PodSpec(node_name="node-1", containers=[objects_pb2.Container(name="c", image="i")])))
        assert isinstance(mine, objects_pb2.Pod)
    first = next(name for name, m in masters.masters.items() if m.client_addr == masters.endpoints[0])
    with masters.client([first]) as c:
        c.objects.get("pods", "mine", "default")  # the first master has the pod (linearizable read)

    def phases() -> tuple[str, str]:
        with masters.client() as c:
            return (c.objects.get("pods", "mine", "default").status.phase,  # type: ignore[attr-defined]
                    c.objects.get("pods", "theirs", "default").status.phase)  # type: ignore[attr-defined]

    # node-1 may not speak for node-2's pod by naming node-2 in an update: nothing is applied.
    both = agents_pb2.ReportPodStatusRequest(node="node-1", updates=[_update(mine, "node-1"),
                                                                     _update(theirs, "node-2", "Failed")])
    code, details = code_of(lambda: one.agents.ReportPodStatus(both, timeout=10))
    assert code == DENIED and details == 'node "node-1" may not report pod status as node "node-2": a node acts ' \
                                         "only as itself"
    assert phases() == ("", "")
    # Nor watch node-2's pods by naming node-2 beside itself.
    code, details = code_of(lambda: next(iter(one.agents.WatchNodePods(
        agents_pb2.WatchNodePodsRequest(node="node-1", nodes=["node-2"]), timeout=10))))
    assert code == DENIED and 'may not watch the pods as node "node-2"' in details
    admin = NodeCaller(masters.endpoints[0], masters.credentials)
    try:
        # One watch for both nodes' pods (the hollow fleet's): both pods, then the bookmark.
        stream = admin.agents.WatchNodePods(agents_pb2.WatchNodePodsRequest(node="node-1", nodes=["node-2"]),
                                            timeout=10)
        try:
            first = [next(iter(stream)) for _ in range(3)]
        finally:
            stream.cancel()
        assert [(e.type, e.object.pod.metadata.name) for e in first] == [
            ("ADDED", "mine"), ("ADDED", "theirs"), ("BOOKMARK", "")]
        # An update whose pod is bound to another node than it names: the whole report is refused.
        wrong = agents_pb2.ReportPodStatusRequest(node="node-1", updates=[_update(mine, "node-1"),
                                                                          _update(theirs, "node-1")])
        code, details = code_of(lambda: admin.agents.ReportPodStatus(wrong, timeout=10))
        assert code == DENIED and "pod default/theirs is not bound to node node-1" in details
        assert phases() == ("", "")
        # Each pod named with its own node: both applied, in one transaction (one revision).
        right = agents_pb2.ReportPodStatusRequest(node="node-1", updates=[_update(mine, "node-1"),
                                                                          _update(theirs, "node-2")])
        assert list(admin.agents.ReportPodStatus(right, timeout=10).gone) == []
    finally:
        admin.close()
    with masters.client() as c:
        pods = [c.objects.get("pods", name, "default") for name in ("mine", "theirs")]
    assert [p.status.phase for p in pods] == ["Running", "Running"]  # type: ignore[attr-defined]
    assert pods[0].metadata.resource_version == pods[1].metadata.resource_version  # type: ignore[attr-defined]


def _event_about(pod: objects_pb2.Pod, reason: str = "Started") -> objects_pb2.Event:
    return objects_pb2.Event(involved_object=objects_pb2.ObjectReference(
        kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid),
        reason=reason, message="Started container c", type="Normal", count=1)


def _usage_of(node: str, pod: objects_pb2.Pod) -> agents_pb2.NodeUsage:
    return agents_pb2.NodeUsage(node=node, cpu_millicores=5, memory_bytes=1 << 20, window_seconds=15, pods=[
        agents_pb2.PodUsage(namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid,
                            containers=[agents_pb2.ContainerUsage(name="c", cpu_millicores=5, memory_bytes=1 << 20)])])


def test_node_1_reports_events_and_usage_only_for_itself_and_its_pods(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, two, theirs = two_nodes
    events = agents_pb2.ReportEventsRequest(node="node-2", events=[_event_about(theirs)])
    code, details = code_of(lambda: one.agents.ReportEvents(events, timeout=10))
    assert code == DENIED and details == 'node "node-1" may not report events as node "node-2": a node acts only ' \
                                         "as itself"
    mine = agents_pb2.ReportEventsRequest(node="node-1", events=[_event_about(theirs)])
    code, details = code_of(lambda: one.agents.ReportEvents(mine, timeout=10))
    assert code == DENIED and 'pod default/theirs is not bound to node "node-1"' in details
    code, details = code_of(lambda: one.agents.ReportUsage(_usage_of("node-2", theirs), timeout=10))
    assert code == DENIED and 'may not report usage as node "node-2"' in details
    code, details = code_of(lambda: one.agents.ReportUsage(_usage_of("node-1", theirs), timeout=10))
    assert code == DENIED and 'pod default/theirs is not bound to node "node-1"' in details
    # Usage is not for nodes to read; bad figures are refused with the field named.
    code, details = code_of(lambda: one.agents.GetUsage(agents_pb2.GetUsageRequest(), timeout=10))
    assert code == DENIED
    bad = _usage_of("node-2", theirs)
    bad.pods[0].containers[0].memory_bytes = -1
    code, details = code_of(lambda: two.agents.ReportUsage(bad, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pods[0].containers[0].memory_bytes" in details
    # node-2 reports about its own pod: stored, and read back by a user.
    assert two.agents.ReportEvents(agents_pb2.ReportEventsRequest(node="node-2", events=[_event_about(theirs)]),
                                   timeout=10).written == 1
    two.agents.ReportUsage(_usage_of("node-2", theirs), timeout=10)
    with masters.client() as c:
        events_seen = [e for e in c.objects.list("events", "default")[0]
                       if e.involved_object.name == "theirs"]  # type: ignore[attr-defined]
        assert [e.source for e in events_seen] == ["agent/node-2"]  # type: ignore[attr-defined]
        eventually(lambda: [p.name for u in c.usage() for p in u.pods] == ["theirs"], what="usage of node-2")


def test_a_node_reads_only_the_secrets_its_pods_use(
        masters: LocalMasters, two_nodes: tuple[NodeCaller, NodeCaller, objects_pb2.Pod]) -> None:
    one, two, _ = two_nodes
    with masters.client() as c:
        c.objects.create(objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name="db", namespace="default"),
                                            data={"password": b"hunter2"}))
        c.objects.create(objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(name="user", namespace="default"),
            spec=objects_pb2.PodSpec(node_name="node-2", containers=[objects_pb2.Container(name="c", image="i")],
                                     volumes=[objects_pb2.Volume(name="s", secret=objects_pb2.SecretVolumeSource(
                                         secret_name="db"))])))
    get = resources_pb2.GetRequest(kind="Secret", namespace="default", name="db")
    assert two.resources.Get(get, timeout=10).secret.data["password"] == b"hunter2"
    code, details = code_of(lambda: one.resources.Get(get, timeout=10))
    assert code == DENIED and "no pod bound to that node uses it" in details
    code, _ = code_of(lambda: one.resources.List(resources_pb2.ListRequest(kind="Secret"), timeout=10))
    assert code == DENIED
