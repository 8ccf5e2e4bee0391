"""Node lifecycle, pure: which nodes changed readiness and which must give up their pods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2

READY = "Ready"


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    # A node not heard from for this long is NotReady.
    grace: float = 10.0
    # Pods of a node NotReady for this long are deleted, so their owners replace them elsewhere.
    eviction_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ReadinessChange:
    node: str
    ready: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class LifecyclePlan:
    changes: tuple[ReadinessChange, ...]
    evict: tuple[str, ...]


def ready_status(node: objects_pb2.Node) -> tuple[str, str]:
    """("True"/"False"/"Unknown", the last transition's time as written, or "")."""
    for cond in node.status.conditions:
        if cond.type == READY:
            return cond.status, cond.last_transition_time
    return "Unknown", ""


def plan_lifecycle(nodes: Sequence[objects_pb2.Node], last_seen: Mapping[str, float], since: float,
                   now_mono: float, now_wall: float, settings: LifecycleSettings) -> LifecyclePlan:
    """`last_seen` holds monotonic heartbeat times of this leader's term, which began at
    `since`: a node not heard from yet this term is judged from `since` (its grace period)."""
    from raftorch.objects import parse_time

    changes: list[ReadinessChange] = []
    evict: list[str] = []
    for node in nodes:
        name = node.metadata.name
        seen = last_seen.get(name, since)
        fresh = now_mono - seen <= settings.grace
        status, transition = ready_status(node)
        if fresh and status != "True":
            changes.append(ReadinessChange(name, True, "AgentReady", "the agent is posting heartbeats"))
        elif not fresh and status != "False":
            changes.append(ReadinessChange(
                name, False, "NodeStatusUnknown",
                f"no heartbeat from the agent for {now_mono - seen:.0f}s"))
        elif not fresh and transition and now_wall - parse_time(transition) >= settings.eviction_timeout:
            # Parsed only here: every node is looked at twice a second, and few are NotReady.
            evict.append(name)
    return LifecyclePlan(tuple(changes), tuple(evict))
