"""plan_daemonset: one pod per eligible node, node changes, and rolling updates with maxUnavailable."""

from __future__ import annotations

import itertools

from controller_sim import rfc3339

from raftorch.api.v1 import objects_pb2
from raftorch.master.constraints import Taint
from raftorch.master.controllers import DaemonNode, plan_daemonset
from raftorch.master.controllers.daemonset import REVISION_LABEL
from raftorch.objects import apply_defaults, validate

NOW = 1_800_000_000.0


def _ds(image: str = "agent:v1", max_unavailable: str = "1") -> objects_pb2.DaemonSet:
    ds = objects_pb2.DaemonSet(
        metadata=objects_pb2.ObjectMeta(name="agent", namespace="default", uid="ds-uid", generation=1),
        spec=objects_pb2.DaemonSetSpec(
            selector=objects_pb2.LabelSelector(match_labels={"app": "agent"}),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels={"app": "agent"}),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="a", image=image)])),
            update_strategy=objects_pb2.DaemonSetUpdateStrategy(
                rolling_update=objects_pb2.RollingUpdateDaemonSet(max_unavailable=max_unavailable))))
    apply_defaults(ds)
    validate(ds)
    return ds


def _nodes(*names: str) -> list[DaemonNode]:
    return [DaemonNode(n, {"kubernetes.io/hostname": n}, True, False) for n in names]


class Sim:
    def __init__(self, ds: objects_pb2.DaemonSet, nodes: list[DaemonNode]) -> None:
        self.ds, self.nodes = ds, nodes
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.counter = itertools.count()
        self.min_ready_seen = 99

    def step(self, ready_new: bool = True) -> objects_pb2.DaemonSetStatus:
        plan = plan_daemonset(self.ds, self.nodes, list(self.pods.values()), NOW,
                              lambda: f"{next(self.counter):05d}")
        for name in plan.delete:
            del self.pods[name]
        self.min_ready_seen = min(self.min_ready_seen, self.ready())
        for pod in plan.create:
            pod.metadata.creation_timestamp = rfc3339(next(self.counter))
            pod.status.phase = "Running"
            if ready_new:
                pod.status.conditions.add(type="Ready", status="True")
            self.pods[pod.metadata.name] = pod
        return plan.status

    def ready(self) -> int:
        return sum(1 for p in self.pods.values() if any(c.type == "Ready" and c.status == "True"
                                                        for c in p.status.conditions))

    def by_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pods.values():
            out[p.spec.node_name] = out.get(p.spec.node_name, 0) + 1
        return out


def test_one_pod_per_node_bound_directly() -> None:
    sim = Sim(_ds(), _nodes("a", "b", "c"))
    sim.step()
    assert sim.by_node() == {"a": 1, "b": 1, "c": 1}
    status = sim.step()
    assert (status.desired_number_scheduled, status.current_number_scheduled, status.number_ready,
            status.updated_number_scheduled, status.number_available) == (3, 3, 3, 3, 3)
    assert all(p.metadata.owner_references[0].kind == "DaemonSet" for p in sim.pods.values())


def test_new_node_gets_one_and_removed_node_loses_its_pod() -> None:
    sim = Sim(_ds(), _nodes("a", "b"))
    sim.step()
    sim.nodes = _nodes("b", "c")
    sim.step()
    assert sim.by_node() == {"b": 1, "c": 1}


def test_cordoned_tainted_and_unselected_nodes_get_none() -> None:
    ds = _ds()
    ds.spec.template.spec.node_selector["role"] = "edge"
    nodes = [DaemonNode("a", {"role": "edge"}, True, False),
             DaemonNode("b", {"role": "edge"}, True, True),  # cordoned
             DaemonNode("c", {"role": "edge"}, True, False, (Taint("gpu", "", "NoSchedule"),)),
             DaemonNode("d", {"role": "core"}, True, False),
             DaemonNode("e", {"role": "edge"}, False, False)]  # not ready: waits
    sim = Sim(ds, nodes)
    status = sim.step()
    assert sim.by_node() == {"a": 1}
    assert status.desired_number_scheduled == 2  # a, and e once Ready; c needs a toleration
    ds.spec.template.spec.tolerations.add(key="gpu", operator="Exists")
    sim.step()
    assert sim.by_node() == {"a": 1, "c": 1}


def test_rolling_update_keeps_all_but_max_unavailable_ready() -> None:
    sim = Sim(_ds(), _nodes("a", "b", "c"))
    sim.step()
    sim.min_ready_seen = sim.ready()
    sim.ds.spec.template.spec.containers[0].image = "agent:v2"
    for _ in range(12):
        sim.step()
    assert sim.min_ready_seen >= 2
    images = {p.spec.containers[0].image for p in sim.pods.values()}
    assert images == {"agent:v2"} and sim.by_node() == {"a": 1, "b": 1, "c": 1}


def test_rolling_update_waits_for_new_pods_to_be_ready() -> None:
    sim = Sim(_ds(), _nodes("a", "b", "c"))
    sim.step()
    sim.ds.spec.template.spec.containers[0].image = "agent:v2"
    for _ in range(5):
        sim.step(ready_new=False)
    revision = {p.metadata.labels[REVISION_LABEL] for p in sim.pods.values()}
    assert len(revision) == 2  # one node updated (and not ready), the other two still old
    assert sim.ready() == 2


def test_on_delete_strategy_never_replaces_by_itself() -> None:
    ds = _ds()
    ds.spec.update_strategy.type = "OnDelete"
    ds.spec.update_strategy.ClearField("rolling_update")
    sim = Sim(ds, _nodes("a", "b"))
    sim.step()
    before = set(sim.pods)
    ds.spec.template.spec.containers[0].image = "agent:v2"
    sim.step()
    assert set(sim.pods) == before
