"""NoExecute taints, pure: which pods must leave their node now, and when the next one must.

A pod on a node with a NoExecute taint it does not tolerate is evicted at once; one that
tolerates it for `tolerationSeconds` is evicted that long after the taint was added; one that
tolerates it without a limit stays. Mirror pods (the masters' own) are never evicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.master.constraints import Taint, constraints_of, eviction_time
from raftorch.master.controllers._util import pod_is_terminal, pod_is_terminating
from raftorch.objects import is_mirror


@dataclass(frozen=True, slots=True)
class TaintEvictionPlan:
    evict: tuple[objects_pb2.Pod, ...]
    wake_at: float | None


def plan_taint_evictions(taints: Mapping[str, tuple[Taint, ...]], pods: Sequence[objects_pb2.Pod],
                         now: float) -> TaintEvictionPlan:
    """`taints`: the taints of each node by name (nodes without NoExecute taints may be left out)."""
    evict: list[objects_pb2.Pod] = []
    wake: float | None = None
    for pod in pods:
        node_taints = taints.get(pod.spec.node_name)
        if not node_taints or pod_is_terminating(pod) or pod_is_terminal(pod):
            continue
        if is_mirror(pod):
            continue
        when = eviction_time(node_taints, constraints_of(pod.spec).tolerations, now)
        if when is None:
            continue
        if when <= now:
            evict.append(pod)
        else:
            wake = when if wake is None else min(wake, when)
    return TaintEvictionPlan(tuple(evict), wake)
