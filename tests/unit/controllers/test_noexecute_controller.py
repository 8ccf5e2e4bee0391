"""plan_taint_evictions: NoExecute taints evict pods that do not tolerate them, when they must."""

from __future__ import annotations

from raftorch.api.v1 import objects_pb2
from raftorch.master.constraints import Taint
from raftorch.master.controllers import plan_taint_evictions

NOW = 1_800_000_000.0
TAINTS = {"n1": (Taint("maintenance", "yes", "NoExecute", added=NOW - 10),)}


def _pod(name: str, node: str = "n1", *tolerations: objects_pb2.Toleration) -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                           spec=objects_pb2.PodSpec(node_name=node, tolerations=list(tolerations)),
                           status=objects_pb2.PodStatus(phase="Running"))


def test_untolerated_pods_go_and_tolerating_pods_stay() -> None:
    forever = objects_pb2.Toleration(key="maintenance", operator="Exists", effect="NoExecute")
    pods = [_pod("plain"), _pod("tolerant", "n1", forever), _pod("elsewhere", "n2")]
    plan = plan_taint_evictions(TAINTS, pods, NOW)
    assert [p.metadata.name for p in plan.evict] == ["plain"]
    assert plan.wake_at is None


def test_toleration_seconds_delay_the_eviction() -> None:
    limited = objects_pb2.Toleration(key="maintenance", operator="Equal", value="yes", effect="NoExecute",
                                     toleration_seconds=30)
    pods = [_pod("limited", "n1", limited)]
    plan = plan_taint_evictions(TAINTS, pods, NOW)
    assert plan.evict == () and plan.wake_at == NOW + 20
    assert [p.metadata.name for p in plan_taint_evictions(TAINTS, pods, NOW + 20).evict] == ["limited"]


def test_mirror_finished_and_terminating_pods_are_left_alone() -> None:
    mirror = _pod("master")
    mirror.metadata.annotations["raftorch.io/mirror"] = "true"
    done = _pod("done")
    done.status.phase = "Succeeded"
    going = _pod("going")
    going.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"
    assert plan_taint_evictions(TAINTS, [mirror, done, going], NOW).evict == ()
