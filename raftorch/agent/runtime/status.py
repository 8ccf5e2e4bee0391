"""Runtime facts as the API shows them: container states, the pod phase, the Ready conditions.

Pure, like the reconciler that uses it. Each container of a pod is put in one class for the
phase, as the kubelet does: RUNNING, PENDING (never ran yet), STOPPED (ran and exited, whether
or not it will run again) or SUCCEEDED (exited 0 for good).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raftorch.agent.runtime.base import ContainerInfo, exit_reason
from raftorch.api.v1 import objects_pb2
from raftorch.objects import format_time, set_condition

__all__ = ["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "Exit", "container_state", "pod_phase", "pod_status",
           "terminated"]

RUNNING = "running"
PENDING = "pending"
STOPPED = "stopped"
SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class Exit:
    """One finished run of a container."""

    container_id: str
    attempt: int
    exit_code: int
    reason: str
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    killed: bool = False  # by a signal from outside (see ContainerInfo.killed)

    @classmethod
    def of(cls, info: ContainerInfo) -> Exit:
        return cls(info.id, info.attempt, info.exit_code, info.reason or exit_reason(info.exit_code), info.message,
                   info.started_at, info.finished_at, info.killed)


def container_state(state: str, *, reason: str = "", message: str = "", exit_code: int = 0,
                    started_at: float | None = None, finished_at: float | None = None) -> objects_pb2.ContainerState:
    return objects_pb2.ContainerState(
        state=state, reason=reason, message=message, exit_code=exit_code,
        started_at=format_time(started_at) if started_at is not None else "",
        finished_at=format_time(finished_at) if finished_at is not None else "")


def terminated(last: Exit) -> objects_pb2.ContainerState:
    return container_state("terminated", reason=last.reason, message=last.message, exit_code=last.exit_code,
                           started_at=last.started_at, finished_at=last.finished_at)


def pod_phase(restart_policy: str, classes: Sequence[str]) -> str:
    """The pod phase from its containers' classes, as the kubelet decides it."""
    running, pending = classes.count(RUNNING), classes.count(PENDING)
    succeeded = classes.count(SUCCEEDED)
    stopped = classes.count(STOPPED) + succeeded
    if pending or not classes:
        return "Pending"
    if running or restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def pod_status(pod: objects_pb2.Pod, containers: Sequence[objects_pb2.ContainerStatus], classes: Sequence[str], *,
               pod_ip: str, host_ip: str, start_time: str, now: float) -> objects_pb2.PodStatus:
    """The status to report; the conditions build on the pod's current ones so transition times carry over."""
    phase = pod_phase(pod.spec.restart_policy or "Always", classes)
    status = objects_pb2.PodStatus(phase=phase, pod_ip=pod_ip, host_ip=host_ip, start_time=start_time,
                                   container_statuses=containers)
    status.conditions.extend(pod.status.conditions)
    unready = [s.name for s in containers if not (s.ready and s.state.state == "running")]
    if phase in ("Succeeded", "Failed"):
        reason, message = "PodCompleted", ""
    elif unready:
        reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    else:
        reason, message = "", ""
    ready = "True" if not unready and phase == "Running" else "False"
    for condition in ("ContainersReady", "Ready"):
        set_condition(status.conditions, condition, ready, reason, message, format_time(now))
    return status
