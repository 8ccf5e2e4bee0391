"""Objects, scheduler and controllers across three masters, with hollow (fake-runtime) nodes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from raftorch import rpc
from raftorch.agent.hollow import HollowFleet
from raftorch.api.v1 import objects_pb2, resources_pb2, resources_pb2_grpc
from raftorch.client import Client
from raftorch.errors import AlreadyExists, Conflict, Invalid, NotFound
from raftorch.local.masters import LocalMasters
from tests.integration._wait import eventually

pytestmark = pytest.mark.processes

NODES = ["node-a", "node-b", "node-c"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalMasters]:
    masters = LocalMasters(tmp_path / "masters", extra_args=["--node-grace", "2", "--eviction-timeout", "2"])
    masters.start()
    try:
        masters.wait_ready()
        yield masters
    finally:
        masters.kill()


@pytest.fixture
def fleet(cluster: LocalMasters) -> Iterator[HollowFleet]:
    nodes = HollowFleet(cluster.endpoints, NODES, heartbeat_period=0.5)
    nodes.start()
    try:
        with cluster.client() as c:
            # Spread is decided when pods are bound: every node must be there first.
            eventually(lambda: all(_node_ready(c, n) for n in NODES), what="nodes Ready")
        yield nodes
    finally:
        nodes.stop()


def _node_ready(c: Client, name: str) -> bool:
    try:
        node = c.objects.get("node", name)
    except NotFound:
        return False
    assert isinstance(node, objects_pb2.Node)
    return any(cd.type == "Ready" and cd.status == "True" for cd in node.status.conditions)


def deployment(name: str, replicas: int, image: str = "web:v1", surge: str = "1",
               unavailable: str = "0") -> objects_pb2.Deployment:
    labels = {"app": name}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels=labels),
            strategy=objects_pb2.DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=objects_pb2.RollingUpdateDeployment(max_surge=surge, max_unavailable=unavailable)),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
                    name="web", image=image,
                    resources=objects_pb2.ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}))]))))


def pods_of(c: Client, app: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", "default", label_selector=f"app={app}")
    return [p for p in items if isinstance(p, objects_pb2.Pod)]



def running_spread(c: Client, app: str) -> Counter[str]:
    pods = pods_of(c, app)
    return Counter(p.spec.node_name for p in pods if p.status.phase == "Running")


def test_system_namespaces_exist(cluster: LocalMasters) -> None:
    with cluster.client() as c:
        eventually(lambda: {n.metadata.name for n in c.objects.list("namespaces")[0]}  # type: ignore[attr-defined]
                   >= {"default", "raftorch-system"}, what="namespaces")


def test_deployment_spreads_and_scales(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(deployment("web", 6))
        eventually(lambda: sorted(running_spread(c, "web").values()) == [2, 2, 2], what="6 pods, 2 per node")
        for replicas, spread in ((9, [3, 3, 3]), (2, None)):
            d = c.objects.get("deploy", "web", "default")
            assert isinstance(d, objects_pb2.Deployment)
            d.spec.replicas = replicas
            c.objects.update(d)
            if spread:
                eventually(lambda s=spread: sorted(running_spread(c, "web").values()) == s,
                           what=f"{replicas} pods spread {spread}")
            else:
                eventually(lambda r=replicas: len(pods_of(c, "web")) == r, what=f"{replicas} pods")
        eventually(lambda: _status(c, "web").ready_replicas == 2, what="status counts")


def _status(c: Client, name: str) -> objects_pb2.DeploymentStatus:
    d = c.objects.get("deploy", name, "default")
    assert isinstance(d, objects_pb2.Deployment)
    return d.status


class PodCounter:
    """Follows pods of one app through a watch and records the extremes of a rollout."""

    def __init__(self, c: Client, app: str) -> None:
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.max_total = 0
        self.min_ready = 10**9
        self.started = False
        self._watch = c.objects.watch("pods", "default", label_selector=f"app={app}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for ev in self._watch:
            pod = ev.object
            assert isinstance(pod, objects_pb2.Pod)
            if ev.type == "DELETED":
                self.pods.pop(pod.metadata.name, None)
            else:
                self.pods[pod.metadata.name] = pod
            if self.started:
                self.max_total = max(self.max_total, len(self.pods))
                ready = sum(1 for p in self.pods.values()
                            if any(cd.type == "Ready" and cd.status == "True" for cd in p.status.conditions))
                self.min_ready = min(self.min_ready, ready)

    def images(self) -> Counter[str]:
        return Counter(p.spec.containers[0].image for p in self.pods.values())

    def close(self) -> None:
        self._watch.close()


def _set_image(c: Client, name: str, image: str) -> None:
    d = c.objects.get("deploy", name, "default")
    assert isinstance(d, objects_pb2.Deployment)
    d.spec.template.spec.containers[0].image = image
    c.objects.update(d)


def _rollout_done(c: Client, name: str, image: str, replicas: int) -> bool:
    pods = pods_of(c, name)
    st = _status(c, name)
    return (len(pods) == replicas and all(p.spec.containers[0].image == image and p.status.phase == "Running"
                                          for p in pods)
            and st.updated_replicas == replicas and st.available_replicas == replicas)


def test_rolling_update_stays_within_bounds_and_rollback(cluster: LocalMasters, fleet: HollowFleet) -> None:
    replicas, surge, unavailable = 6, 2, 1
    with cluster.client() as c:
        c.objects.create(deployment("roll", replicas, "web:v1", str(surge), str(unavailable)))
        eventually(lambda: _rollout_done(c, "roll", "web:v1", replicas), what="v1 running")
        counter = PodCounter(c, "roll")
        eventually(lambda: len(counter.pods) == replicas, what="watch caught up")
        counter.started = True
        _set_image(c, "roll", "web:v2")
        eventually(lambda: _rollout_done(c, "roll", "web:v2", replicas), what="v2 rolled out")
        eventually(lambda: counter.images() == Counter({"web:v2": replicas}), what="watch saw v2")
        assert counter.max_total <= replicas + surge
        assert counter.min_ready >= replicas - unavailable
        # Roll back to the previous revision: v1 again.
        d = c.objects.get("deploy", "roll", "default")
        assert isinstance(d, objects_pb2.Deployment)
        d.spec.rollback_to = 0
        c.objects.update(d)
        eventually(lambda: _rollout_done(c, "roll", "web:v1", replicas), what="rolled back to v1")
        counter.close()
        rs, _ = c.objects.list("rs", "default", label_selector="app=roll")
        assert len(rs) == 2


def test_silent_node_goes_not_ready_and_its_pods_move(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(deployment("move", 6))
        eventually(lambda: sorted(running_spread(c, "move").values()) == [2, 2, 2], what="initial spread")
        victim = "node-b"
        fleet.silence(victim)

        def ready(name: str) -> str:
            node = c.objects.get("node", name)
            assert isinstance(node, objects_pb2.Node)
            return next((cd.status for cd in node.status.conditions if cd.type == "Ready"), "Unknown")

        eventually(lambda: ready(victim) == "False", what="node NotReady")
        eventually(lambda: victim not in running_spread(c, "move") and sum(running_spread(c, "move").values()) == 6,
                   what="pods replaced on other nodes")
        fleet.revive(victim)
        eventually(lambda: ready(victim) == "True", what="node Ready again")
        time.sleep(1.0)
        pods = pods_of(c, "move")
        assert len(pods) == 6
        assert len({p.metadata.name for p in pods}) == 6
        assert victim not in {p.spec.node_name for p in pods}


def test_leader_killed_mid_rollout_new_leader_finishes_within_bounds(cluster: LocalMasters,
                                                                     fleet: HollowFleet) -> None:
    replicas, surge, unavailable = 6, 1, 1
    with cluster.client() as c:
        c.objects.create(deployment("failover", replicas, "web:v1", str(surge), str(unavailable)))
        eventually(lambda: _rollout_done(c, "failover", "web:v1", replicas), what="v1 running")
        counter = PodCounter(c, "failover")
        eventually(lambda: len(counter.pods) == replicas, what="watch caught up")
        counter.started = True
        _set_image(c, "failover", "web:v2")
        eventually(lambda: counter.images()["web:v2"] >= 1, what="rollout started")
        cluster.kill(cluster.leader())
        eventually(lambda: _rollout_done(c, "failover", "web:v2", replicas), timeout=60, what="rollout finished")
        counter.close()
        assert counter.max_total <= replicas + surge
        assert counter.min_ready >= replicas - unavailable


def test_bad_input_is_rejected_with_clear_errors(cluster: LocalMasters) -> None:
    with cluster.client() as c:
        with pytest.raises(Invalid, match=r"metadata\.name"):
            c.objects.create(deployment("Bad_Name", 1))
        with pytest.raises(Invalid, match="replicas"):
            c.objects.create(deployment("neg", -1))
        with pytest.raises(Invalid, match="unknown kind"):
            c.objects.list("widgets")
        c.objects.create(deployment("ok", 1))
        with pytest.raises(AlreadyExists):
            c.objects.create(deployment("ok", 1))
        stale = c.objects.get("deploy", "ok", "default")
        assert isinstance(stale, objects_pb2.Deployment)
        for _attempt in range(20):
            # The controllers write the status too: re-read until our update lands.
            fresh = c.objects.get("deploy", "ok", "default")
            assert isinstance(fresh, objects_pb2.Deployment)
            fresh.spec.replicas = 3
            try:
                c.objects.update(fresh)
                break
            except Conflict:
                continue
        stale.spec.replicas = 5
        with pytest.raises(Conflict):
            c.objects.update(stale)
        with pytest.raises(NotFound):
            c.objects.get("deploy", "missing", "default")
        got = c.objects.get("deploy", "ok", "default")
        assert isinstance(got, objects_pb2.Deployment) and got.spec.replicas == 3
        names = {d.metadata.name for d in c.objects.list("deploy", "default")[0]}  # type: ignore[attr-defined]
        assert names == {"ok"}
    # Unknown fields (a newer client's message) are refused, not silently dropped.
    obj = objects_pb2.Object(deployment=deployment("unknown-fields", 1))
    data = obj.SerializeToString() + b"\xf8\x3e\x01"  # field 999, varint 1
    with rpc.channel(cluster.endpoints[0], cluster.credentials) as chan:
        stub = resources_pb2_grpc.ResourcesStub(chan)
        with pytest.raises(grpc.RpcError) as info:
            stub.Create(resources_pb2.CreateRequest(object=objects_pb2.Object.FromString(data)), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_service_allocations_follow_updates(cluster: LocalMasters) -> None:
    svc = objects_pb2.Service(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="default"),
        spec=objects_pb2.ServiceSpec(selector={"app": "web"}, ports=[objects_pb2.ServicePort(port=80)]))
    with cluster.client() as c:
        created = c.objects.create(svc)
        assert isinstance(created, objects_pb2.Service) and created.spec.cluster_ip.startswith("10.96.")
        created.spec.type = "NodePort"
        updated = c.objects.update(created)
        assert isinstance(updated, objects_pb2.Service)
        port = updated.spec.ports[0].node_port
        assert 30000 <= port <= 32767 and updated.spec.cluster_ip == created.spec.cluster_ip
        # A second service cannot take that NodePort.
        other = objects_pb2.Service(
            metadata=objects_pb2.ObjectMeta(name="other", namespace="default"),
            spec=objects_pb2.ServiceSpec(type="NodePort", selector={"app": "x"},
                                         ports=[objects_pb2.ServicePort(port=80, node_port=port)]))
        with pytest.raises(AlreadyExists, match="nodePort"):
            c.objects.create(other)
        # Back to ClusterIP releases it.
        updated.spec.type = "ClusterIP"
        c.objects.update(updated)
        created_other = c.objects.create(other)
        assert isinstance(created_other, objects_pb2.Service) and created_other.spec.ports[0].node_port == port


def test_object_watch_from_a_resource_version_replays_later_changes(cluster: LocalMasters) -> None:
    with cluster.client() as c:
        _, start = c.objects.list("namespaces")
        for name in ("team-a", "team-b", "team-c"):
            c.objects.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name=name)))
        c.objects.delete("namespace", "team-b")
        watch = c.objects.watch("namespaces", resource_version=start)
        seen: list[tuple[str, str]] = []
        for event in watch:
            seen.append((event.type, event.object.metadata.name))  # type: ignore[attr-defined]
            if len(seen) == 4:
                break
        watch.close()
        assert seen == [("ADDED", "team-a"), ("ADDED", "team-b"), ("ADDED", "team-c"), ("DELETED", "team-b")]
