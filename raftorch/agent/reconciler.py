"""Pod reconciliation as a pure function: desired pods, the runtime's containers, memory and time in; a plan out.

The executor lists containers, calls `plan_pod_actions`, keeps `plan.state`, carries out
`plan.actions` in order (stops, removes, starts), reports `plan.statuses`, feeds failed starts
back with `record_start_failure` and probe results with `record_probe`, and plans again by
`plan.wake_at` at the latest. The rules, in the manner of the kubelet:

* Containers of pods not desired are stopped with the pod's grace (remembered, else the
  container's grace label, else `default_grace`) and removed; so are containers named in no pod
  spec, older attempts still running, and dead containers but the newest.
* A running container is adopted, never restarted (a restarted agent disturbs nothing), unless
  its liveness probe fails: then it is stopped and restarts as its policy says.
* A missing container starts. An exited one restarts as the restart policy says (Always;
  OnFailure on a non-zero exit; Never) after a back-off: none for the first restart, then
  `backoff_base` doubling up to `backoff_max`, from the exit time; a run of `backoff_reset`
  seconds forgets it. Meanwhile the container waits with reason CrashLoopBackOff. A container
  killed from outside (`ContainerInfo.killed`: `docker kill`, `docker stop`) did not crash: it
  restarts at once and its exit does not count towards the back-off.
* A container whose start is still in flight (`starting`) is neither started again nor, while
  Docker shows it created but not yet running, removed as half-made.
* A failed start (ErrImagePull, RunContainerError, ...) waits with that reason and message and
  is retried with the same back-off, at least `backoff_base`.
* The restart count is the attempt label of the newest container: it survives agent restarts.
* With `sandbox_image` set, each pod (but host-network ones) first gets a sandbox container
  that holds its network namespace; its containers join it and share its IP (the pod IP). A
  new sandbox of a pod none of whose containers runs carries the containers that start now
  (`StartContainer.then`): the executor creates them as soon as the sandbox exists, while it
  starts, instead of waiting for a plan that sees it run. Containers that joined another
  sandbox than the running one (it died and was replaced) are stopped, removed and started
  again in the new one. A pod's sandbox goes last, once none of its containers runs.
* A pod of exactly one container (no init containers, not on the host's network) needs no
  sandbox when the node's pod bridge and CIDR are known (`ReconcileConfig.pod_cidr`): its
  container runs alone on the bridge at a fixed address the plan gives the pod (see
  raftorch/agent/addresses.py) and keeps across its restarts. A pod adopted with a running
  sandbox (started before this rule) keeps it while it runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from raftorch.agent.addresses import AddressRange
from raftorch.agent.probes import LIVENESS, READINESS, ProbeSettings, ProbeTracker
from raftorch.agent.runtime.base import (
    CREATED,
    SANDBOX_CONTAINER,
    ContainerInfo,
    ContainerSpec,
    container_spec,
    sandbox_spec,
)
from raftorch.agent.runtime.status import (
    PENDING,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    Exit,
    container_state,
    pod_status,
    terminated,
)
from raftorch.agent.volumes import PodInputs
from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import CREATE_CONTAINER_CONFIG_ERROR, format_time

__all__ = [
    "Action", "AgentPodState", "ContainerRecord", "PodRecord", "ProbeCheck", "ReconcileConfig",
    "ReconcilePlan", "RemoveContainer", "StartContainer", "StopContainer", "due_probes", "is_solo",
    "plan_pod_actions", "record_probe", "record_start_failure",
]

CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
CONTAINER_CREATING = "ContainerCreating"
POD_INITIALIZING = "PodInitializing"
# A pod waiting for a ConfigMap or Secret is looked at again this often (seconds).
INPUTS_RETRY = 2.0
# A pod of one container waits this long (seconds) for a free address when the node has none.
ADDRESS_RETRY = 2.0
_MAX_STEPS = 30  # far past any back-off cap; keeps 2**steps small


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    node: str
    host_ip: str = ""
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    backoff_reset: float = 600.0
    default_grace: int = 30
    network: str | None = None  # handed to every ContainerSpec
    # The image of the container holding each pod's network namespace; None: no sandboxes, every
    # container has a network of its own (runtimes that cannot share one).
    sandbox_image: str | None = None
    # The pod CIDR of the bridge `network`: with a sandbox image, pods of one container run without
    # a sandbox, at fixed addresses from it. "": every pod but host-network ones gets a sandbox.
    pod_cidr: str = ""


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    last_attempt: int = -1  # the newest attempt seen created; -1: never
    last_exit: Exit | None = None
    backoff_until: float = 0.0
    backoff_steps: int = 0  # exits (and failed starts) since the back-off was last reset
    backoff_for: str = ""  # the container whose exit set `backoff_until`
    waiting_reason: str = ""  # of the last failed start, until an attempt as new as it is seen
    waiting_message: str = ""
    waiting_attempt: int = 0
    liveness: ProbeTracker | None = None
    readiness: ProbeTracker | None = None


@dataclass(frozen=True, slots=True)
class PodRecord:
    namespace: str
    name: str
    grace_seconds: int
    pod_ip: str = ""
    start_time: str = ""
    # The fixed address held for a pod without a sandbox, until the pod is gone or finished.
    address: str = ""
    containers: Mapping[str, ContainerRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentPodState:
    """What the agent remembers between plans, by pod uid. Losing it is safe: only back-offs reset."""

    pods: Mapping[str, PodRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartContainer:
    spec: ContainerSpec
    # Only on a sandbox's start: the pod's containers to start in it once it exists (their
    # `sandbox` is left empty; the executor sets it to the new sandbox's id).
    then: tuple[ContainerSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class StopContainer:
    container_id: str
    pod_uid: str
    container: str
    grace_seconds: float
    remove: bool  # remove once stopped
    reason: str


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    container_id: str
    pod_uid: str
    container: str
    reason: str
    # It may hold the name of a start later in the same plan: remove it first, not in the background.
    before_starts: bool = False


Action = StartContainer | StopContainer | RemoveContainer


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    actions: tuple[Action, ...]
    statuses: Mapping[str, objects_pb2.PodStatus]  # by pod uid; none for pods already Succeeded/Failed
    state: AgentPodState
    wake_at: float | None  # the plan may change by then without anything else changing


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    pod_uid: str
    container: str
    kind: str
    container_id: str
    pod_ip: str
    probe: objects_pb2.Probe
    named_ports: Mapping[str, int]


class _Plan:
    """The plan under construction."""

    def __init__(self, now: float, config: ReconcileConfig, starting: frozenset[tuple[str, str]],
                 inputs: Mapping[str, PodInputs]) -> None:
        self.now = now
        self.config = config
        self.starting = starting
        self.inputs = inputs
        self.stops: list[StopContainer] = []
        self.removes: list[RemoveContainer] = []
        self.starts: list[StartContainer] = []
        self.wake: list[float] = []
        # By pod uid: the containers to start in the sandbox this plan starts (see `StartContainer.then`).
        self.joining: dict[str, list[ContainerSpec]] = {}

    def stop(self, info: ContainerInfo, grace: float, remove: bool, reason: str) -> None:
        if info.running:
            self.stops.append(StopContainer(info.id, info.pod_uid, info.container, grace, remove, reason))
        elif remove:
            self.removes.append(RemoveContainer(info.id, info.pod_uid, info.container, reason))

    def wake_at(self, when: float) -> None:
        if when > self.now:
            self.wake.append(when)


def plan_pod_actions(desired: Sequence[objects_pb2.Pod], running: Sequence[ContainerInfo], state: AgentPodState,
                     now: float, config: ReconcileConfig,
                     starting: frozenset[tuple[str, str]] = frozenset(),
                     inputs: Mapping[str, PodInputs] | None = None) -> ReconcilePlan:
    """The actions that bring this node's containers to the desired pods, and the pods' statuses.

    `starting`: (pod uid, container) of the starts the executor has not finished, or finished after
    `running` was listed. `inputs`: by pod uid, the env and mounts of the pods that have volumes
    or env sources (or why they must wait)."""
    plan = _Plan(now, config, starting, inputs or {})
    by_pod: dict[str, list[ContainerInfo]] = defaultdict(list)
    for info in running:
        by_pod[info.pod_uid].append(info)
    pods: dict[str, PodRecord] = {}
    statuses: dict[str, objects_pb2.PodStatus] = {}
    addresses = _addresses(desired, by_pod, state, config)
    for pod in desired:
        uid = pod.metadata.uid
        if uid in pods:
            continue
        infos = by_pod.pop(uid, [])
        address = addresses.get(uid, "") if is_solo(pod, config, infos) else None
        pods[uid], status = _plan_pod(plan, pod, infos, state.pods.get(uid), address)
        if status is not None:
            statuses[uid] = status
    for uid, infos in by_pod.items():
        old = state.pods.get(uid)
        apps_running = any(i.running for i in infos if not i.is_sandbox)
        for info in infos:
            if info.is_sandbox:
                if not apps_running:  # its containers' network goes with it: they go first
                    plan.stop(info, 0, True, "pod is gone")
                continue
            grace = old.grace_seconds if old is not None else info.grace_seconds
            plan.stop(info, config.default_grace if grace is None else grace, True, "pod is gone")
        if old is not None:
            pods[uid] = old  # its grace is needed until its containers are gone
    starts = [replace(s, then=tuple(plan.joining.get(s.spec.pod_uid, ()))) if s.spec.container == SANDBOX_CONTAINER
              else s for s in plan.starts]
    actions: tuple[Action, ...] = (*plan.stops, *plan.removes, *starts)
    return ReconcilePlan(actions, statuses, AgentPodState(pods), min(plan.wake, default=None))


def is_solo(pod: objects_pb2.Pod, config: ReconcileConfig, infos: Sequence[ContainerInfo] = ()) -> bool:
    """Whether the pod runs as its one container, without a sandbox: it has one container, none
    before it, its own network namespace on the node's bridge, and no running sandbox (adopted)."""
    return (bool(config.sandbox_image and config.network and config.pod_cidr) and len(pod.spec.containers) == 1
            and not pod.spec.init_containers and not pod.spec.host_network
            and not any(i.is_sandbox and i.running for i in infos))


def _addresses(desired: Sequence[objects_pb2.Pod], by_pod: Mapping[str, list[ContainerInfo]], state: AgentPodState,
               config: ReconcileConfig) -> dict[str, str]:
    """By pod uid, the fixed address of each pod without a sandbox: the one it holds (remembered,
    else on its containers' labels), else one of the node's range (its status address if free);
    "" when none is free. Finished pods hold none."""
    if not (config.sandbox_image and config.network and config.pod_cidr):
        return {}
    try:
        pool = AddressRange(config.pod_cidr)
    except ValueError:
        return {}
    in_use = {i.ip: i.pod_uid for infos in by_pod.values() for i in infos if i.running and i.ip}
    owner: dict[str, str] = {}
    result: dict[str, str] = {}
    wanting: list[objects_pb2.Pod] = []

    def free(address: str, uid: str) -> bool:
        return bool(address) and owner.get(address, uid) == uid and in_use.get(address, uid) == uid

    for pod in desired:
        uid = pod.metadata.uid
        infos = by_pod.get(uid, [])
        if uid in result or pod.status.phase in ("Succeeded", "Failed") or not is_solo(pod, config, infos):
            continue
        old = state.pods.get(uid)
        labelled = sorted((i for i in infos if i.address), key=lambda i: (i.attempt, i.started_at or 0.0), reverse=True)
        held = next((a for a in (old.address if old is not None else "", *(i.address for i in labelled))
                     if free(a, uid)), "")
        result[uid] = held
        if held:
            owner[held] = uid
        elif not pod.metadata.deletion_timestamp:
            wanting.append(pod)
    for pod in wanting:
        uid = pod.metadata.uid
        if pod.status.pod_ip in pool and free(pod.status.pod_ip, uid):
            address: str | None = pod.status.pod_ip  # an agent restarted after its containers went
        else:
            address = pool.first_free([*owner, *in_use])
        if address:
            result[uid] = address
            owner[address] = uid
    return result


def _plan_pod(plan: _Plan, pod: objects_pb2.Pod, infos: list[ContainerInfo],
              old: PodRecord | None, address: str | None = None) -> tuple[PodRecord, objects_pb2.PodStatus | None]:
    """`address`: the pod runs without a sandbox at this address ("": none free yet)."""
    grace = pod.spec.termination_grace_period_seconds or plan.config.default_grace
    record = old or PodRecord(pod.metadata.namespace, pod.metadata.name, grace,
                              start_time=pod.status.start_time or format_time(plan.now))
    terminal = pod.status.phase in ("Succeeded", "Failed")
    stopping = terminal or bool(pod.metadata.deletion_timestamp)
    sandboxes = [i for i in infos if i.is_sandbox]
    infos = [i for i in infos if not i.is_sandbox]
    solo = address is not None
    use_sandbox = bool(plan.config.sandbox_image) and not pod.spec.host_network and not solo
    sandbox: ContainerInfo | None = None
    sandbox_rec = record.containers.get(SANDBOX_CONTAINER, ContainerRecord())
    if solo:
        infos, record = _leave_sandboxes(plan, pod, sandboxes, infos, record, grace, stopping)
    elif use_sandbox or sandboxes:
        sandbox, sandbox_rec, infos = _plan_sandbox(plan, pod, sandboxes, infos, sandbox_rec, stopping and use_sandbox)
    by_name: dict[str, list[ContainerInfo]] = defaultdict(list)
    for info in infos:
        by_name[info.container].append(info)
    for name in set(by_name) - {c.name for c in [*pod.spec.containers, *pod.spec.init_containers]}:
        for info in by_name[name]:
            plan.stop(info, grace, True, "not in the pod's spec")
    records: dict[str, ContainerRecord] = {}
    statuses: list[objects_pb2.ContainerStatus] = []
    kinds: list[str] = []
    ips: list[str] = []
    init_statuses, initialized, init_failed = _plan_init(
        plan, pod, by_name, record, records, grace, stopping, sandbox if use_sandbox else None,
        sandbox_rec if use_sandbox else None)
    for container in pod.spec.containers if initialized else ():
        rec, status, kind, ip = _plan_container(plan, pod, container, by_name.get(container.name, []),
                                                record.containers.get(container.name, ContainerRecord()),
                                                grace, stopping, sandbox if use_sandbox else None,
                                                sandbox_rec if use_sandbox else None, address=address)
        records[container.name] = rec
        statuses.append(status)
        kinds.append(kind)
        if ip:
            ips.append(ip)
    if use_sandbox:
        records[SANDBOX_CONTAINER] = sandbox_rec
        ips = [sandbox.ip] if sandbox is not None and sandbox.ip else []
    elif address and any(i.state != CREATED for i in infos):
        ips = [address]  # its containers' address, also between an exit and the next start
    if not initialized:
        for container in pod.spec.containers:
            records[container.name] = record.containers.get(container.name, ContainerRecord())
            statuses.append(objects_pb2.ContainerStatus(name=container.name, image=container.image, state=(
                container_state("waiting", reason=POD_INITIALIZING))))
            kinds.append(PENDING)
    host_ip = plan.config.host_ip
    pod_ip = ips[0] if ips else (host_ip if pod.spec.host_network else "") or record.pod_ip or pod.status.pod_ip
    record = replace(record, grace_seconds=grace, pod_ip=pod_ip, containers=records,
                     address="" if terminal else address or "")
    if terminal:
        return record, None
    result = pod_status(pod, statuses, kinds, pod_ip=pod_ip, host_ip=host_ip, start_time=record.start_time,
                        now=plan.now)
    result.init_container_statuses.extend(init_statuses)
    if init_failed:
        result.phase = "Failed"
    return record, result


def _plan_init(plan: _Plan, pod: objects_pb2.Pod, by_name: Mapping[str, list[ContainerInfo]], record: PodRecord,
               records: dict[str, ContainerRecord], grace: int, stopping: bool, sandbox: ContainerInfo | None,
               sandbox_rec: ContainerRecord | None) -> tuple[list[objects_pb2.ContainerStatus], bool, bool]:
    """Init containers run one at a time, in order, each to success. Returns their statuses,
    whether all succeeded (the app containers may run), and whether one failed for good.

    They restart as the pod's policy says, Always counting as OnFailure, with the usual back-off.
    Once an app container has run, they are done: their exited containers are only reported."""
    statuses: list[objects_pb2.ContainerStatus] = []
    if not pod.spec.init_containers:
        return statuses, True, False
    apps_ran = any(i.state != CREATED for c in pod.spec.containers for i in by_name.get(c.name, []))
    policy = "Never" if pod.spec.restart_policy == "Never" else "OnFailure"
    blocked = failed = False
    for container in pod.spec.init_containers:
        old = record.containers.get(container.name, ContainerRecord())
        infos = by_name.get(container.name, [])
        if apps_ran or blocked:
            records[container.name] = old
            exited = max((i for i in infos if not i.running and i.state != CREATED), key=lambda i: i.attempt,
                         default=None)
            status = objects_pb2.ContainerStatus(name=container.name, image=container.image,
                                                 restart_count=max(old.last_attempt, 0))
            if blocked:
                status.state.CopyFrom(container_state("waiting", reason=POD_INITIALIZING))
            elif exited is not None:
                status.state.CopyFrom(terminated(Exit.of(exited)))
            else:
                status.state.CopyFrom(container_state("terminated", reason="Completed"))
            statuses.append(status)
            continue
        rec, status, kind, _ = _plan_container(plan, pod, container, infos, old, grace, stopping, sandbox,
                                               sandbox_rec, restart_policy=policy)
        records[container.name] = rec
        if status.state.state == "waiting" and status.state.reason == CONTAINER_CREATING:
            status.state.reason = POD_INITIALIZING  # as the kubelet says of init containers
        statuses.append(status)
        if kind != SUCCEEDED:
            blocked = True
            failed = policy == "Never" and status.state.state == "terminated"
    return statuses, apps_ran or not blocked, failed


def _leave_sandboxes(plan: _Plan, pod: objects_pb2.Pod, sandboxes: list[ContainerInfo], infos: list[ContainerInfo],
                     record: PodRecord, grace: int, stopping: bool) -> tuple[list[ContainerInfo], PodRecord]:
    """A pod without a sandbox that had one (it died since an agent adopted it): the dead sandbox
    goes, and its containers, which have no network, go to start again on their own. Their
    attempts are remembered, so the new ones take the next."""
    for info in sandboxes:
        if not (info.state == CREATED and (pod.metadata.uid, SANDBOX_CONTAINER) in plan.starting):
            plan.stop(info, 0, True, "pod runs without a sandbox")
    kept: list[ContainerInfo] = []
    containers = dict(record.containers)
    for info in infos:
        starting = info.state == CREATED and (pod.metadata.uid, info.container) in plan.starting
        if info.sandbox and not stopping and not starting:
            plan.stop(info, grace, True, "pod sandbox changed")
            rec = containers.get(info.container, ContainerRecord())
            containers[info.container] = replace(rec, last_attempt=max(rec.last_attempt, info.attempt))
        else:
            kept.append(info)
    return kept, replace(record, containers=containers)


def _plan_sandbox(plan: _Plan, pod: objects_pb2.Pod, sandboxes: list[ContainerInfo], infos: list[ContainerInfo],
                  rec: ContainerRecord, stopping: bool
                  ) -> tuple[ContainerInfo | None, ContainerRecord, list[ContainerInfo]]:
    """The pod's running sandbox (or None), its record, and the containers that belong to it (or to none yet).

    `stopping` (or no sandboxes wanted any more): the sandbox goes once no container runs."""
    in_flight = (pod.metadata.uid, SANDBOX_CONTAINER) in plan.starting
    live = sorted((i for i in sandboxes if i.state != CREATED), key=lambda i: (i.attempt, i.started_at or 0.0))
    for info in sandboxes:
        if info.state == CREATED and not in_flight:
            plan.removes.append(RemoveContainer(info.id, info.pod_uid, info.container, "never started", True))
    current = live[-1] if live and live[-1].running else None
    for info in live:
        if info is not current:
            plan.stop(info, 0, True, "superseded sandbox")
    rec = replace(rec, last_attempt=max([rec.last_attempt, *(i.attempt for i in live)]))
    if rec.waiting_reason and rec.last_attempt >= rec.waiting_attempt:
        rec = replace(rec, waiting_reason="", waiting_message="")
    # Containers in another (dead) sandbox's namespace have no network: they start again in the new one.
    joined = current.id if current is not None else None
    kept = []
    for info in infos:
        # A stopping pod's exited containers stay (their logs) after its sandbox went. One being
        # started (with a sandbox being started) is the start's to finish or clean up.
        starting = info.state == CREATED and (pod.metadata.uid, info.container) in plan.starting
        if info.sandbox and info.sandbox != joined and not stopping and not starting:
            plan.stop(info, pod.spec.termination_grace_period_seconds or plan.config.default_grace, True,
                      "pod sandbox changed")
        else:
            kept.append(info)
    if stopping or not plan.config.sandbox_image:
        if current is not None and not any(i.running for i in infos):
            plan.stop(current, 0, True, "pod is terminating")
        return current, rec, kept
    if current is None and in_flight:
        pass  # its start is under way: the next pass sees it run (or fail)
    elif current is None and plan.now >= rec.backoff_until and plan.config.sandbox_image:
        spec = sandbox_spec(pod, plan.config.node, rec.last_attempt + 1, plan.config.sandbox_image,
                            network=plan.config.network)
        plan.starts.append(StartContainer(spec))
        if not any(i.running for i in infos):  # else they start once the old ones are gone and it runs
            plan.joining[pod.metadata.uid] = []
    elif current is None:
        plan.wake_at(rec.backoff_until)
    return current, rec, kept


def _plan_container(plan: _Plan, pod: objects_pb2.Pod, container: objects_pb2.Container,
                    infos: list[ContainerInfo], rec: ContainerRecord, grace: int,
                    stopping: bool, sandbox: ContainerInfo | None = None,
                    sandbox_rec: ContainerRecord | None = None, restart_policy: str = "",
                    address: str | None = None) -> tuple[ContainerRecord, objects_pb2.ContainerStatus, str, str]:
    """The container's new record, status, phase class (running, pending, stopped, succeeded) and IP.

    With `sandbox_rec` the pod uses a sandbox: a start waits for `sandbox` to run, and joins it.
    With `address` the pod has none: a start is at that address, and waits while it is ""."""
    now = plan.now
    in_flight = (pod.metadata.uid, container.name) in plan.starting
    live: list[ContainerInfo] = []
    for info in sorted(infos, key=lambda i: (i.attempt, i.started_at or 0.0)):
        if info.state == CREATED:
            if not in_flight:  # half-made by an agent that died meanwhile
                plan.removes.append(RemoveContainer(info.id, info.pod_uid, info.container, "never started", True))
        else:
            live.append(info)
    current = live[-1] if live else None
    dead = [i for i in live[:-1] if not i.running]
    keep = dead[-1] if current is not None and current.running and dead else None
    for info in live[:-1]:
        if info is not keep:
            plan.stop(info, grace, True, "superseded by a newer attempt")
    rec = replace(rec, last_attempt=max([rec.last_attempt, *(i.attempt for i in live)]))
    if rec.waiting_reason and rec.last_attempt >= rec.waiting_attempt:
        rec = replace(rec, waiting_reason="", waiting_message="")
    for done in (keep, current):
        if done is not None and not done.running and (rec.last_exit is None or rec.last_exit.attempt <= done.attempt):
            rec = replace(rec, last_exit=Exit.of(done))
    status = objects_pb2.ContainerStatus(name=container.name, image=container.image,
                                         restart_count=max(rec.last_attempt, 0),
                                         container_id=current.id if current is not None else "")
    if current is not None and current.running:
        rec = _trackers(rec, pod, container, current, now)
        for tracker in (rec.liveness, rec.readiness):
            if tracker is not None:
                plan.wake_at(max(tracker.next_due, now + 1e-3))
        if stopping:
            plan.stop(current, grace, False, "pod is terminating")
        elif rec.liveness is not None and rec.liveness.failed:
            plan.stop(current, grace, False, "liveness probe failed")
        status.ready = rec.readiness is None or rec.readiness.passing
        status.state.CopyFrom(container_state("running", started_at=current.started_at))
        if rec.last_exit is not None and rec.last_exit.attempt < current.attempt:
            status.last_state.CopyFrom(terminated(rec.last_exit))
        return rec, status, RUNNING, current.ip
    rec = replace(rec, liveness=None, readiness=None)
    last = rec.last_exit if rec.last_exit is not None and rec.last_exit.attempt >= rec.last_attempt else None
    if last is None and rec.last_attempt >= 0:  # it ran, and is gone without a trace
        last = Exit(f"lost-{pod.metadata.uid}-{container.name}-{rec.last_attempt}", rec.last_attempt, 137,
                    "ContainerStatusUnknown", "The container could not be located")
        rec = replace(rec, last_exit=last)
    policy = restart_policy or pod.spec.restart_policy or "Always"
    restart = last is None or policy == "Always" or (policy == "OnFailure" and last.exit_code != 0)
    if last is not None and (stopping or not restart):
        status.state.CopyFrom(terminated(last))
        return rec, status, SUCCEEDED if last.exit_code == 0 else STOPPED, ""
    if last is not None:
        status.last_state.CopyFrom(terminated(last))
        if rec.backoff_for != last.container_id:
            rec = _back_off(rec, last, plan)
    kind = PENDING if last is None else STOPPED
    if stopping:
        status.state.CopyFrom(container_state("waiting", reason=CONTAINER_CREATING))
        return rec, status, kind, ""
    if now < rec.backoff_until:
        plan.wake_at(rec.backoff_until)
        delay = _delay(rec.backoff_steps - 1, plan.config)
        message = rec.waiting_message or (f"back-off {delay:g}s restarting failed container={container.name} "
                                          f"pod={pod.metadata.namespace}/{pod.metadata.name}")
        status.state.CopyFrom(container_state("waiting", reason=rec.waiting_reason or CRASH_LOOP_BACK_OFF,
                                              message=message))
        return rec, status, kind, ""
    joining = plan.joining.get(pod.metadata.uid) if sandbox_rec is not None and sandbox is None else None
    if sandbox_rec is not None and sandbox is None and joining is None:
        status.state.CopyFrom(container_state("waiting", reason=sandbox_rec.waiting_reason or CONTAINER_CREATING,
                                              message=sandbox_rec.waiting_message))
        return rec, status, kind, ""
    if address == "":
        status.state.CopyFrom(container_state("waiting", reason=CONTAINER_CREATING,
                                              message="no free pod address on this node"))
        plan.wake_at(now + ADDRESS_RETRY)
        return rec, status, kind, ""
    inputs = plan.inputs.get(pod.metadata.uid)
    if inputs is not None and inputs.problem:
        status.state.CopyFrom(container_state("waiting", reason=CREATE_CONTAINER_CONFIG_ERROR, message=inputs.problem))
        plan.wake_at(now + INPUTS_RETRY)
        return rec, status, kind, ""
    if not in_flight:
        try:
            spec = container_spec(pod, container, plan.config.node, rec.last_attempt + 1,
                                  network=plan.config.network, sandbox=sandbox.id if sandbox is not None else None,
                                  ip_address=address or None,
                                  env=inputs.env.get(container.name) if inputs is not None else None,
                                  mounts=inputs.mounts.get(container.name, ()) if inputs is not None else ())
        except Invalid as err:
            status.state.CopyFrom(container_state("waiting", reason=CREATE_CONTAINER_CONFIG_ERROR, message=str(err)))
            return rec, status, kind, ""
        if joining is not None:
            joining.append(spec)
        else:
            plan.starts.append(StartContainer(spec))
    status.state.CopyFrom(container_state("waiting", reason=rec.waiting_reason or CONTAINER_CREATING,
                                          message=rec.waiting_message))
    return rec, status, kind, ""


def _trackers(rec: ContainerRecord, pod: objects_pb2.Pod, container: objects_pb2.Container, info: ContainerInfo,
              now: float) -> ContainerRecord:
    """Probe trackers for the running container `info`: kept while it is the same container, else new."""
    started = info.started_at if info.started_at is not None else now
    liveness = readiness = None
    if container.HasField("liveness_probe"):
        liveness = rec.liveness
        if liveness is None or liveness.container_id != info.id:
            liveness = ProbeTracker.start(LIVENESS, ProbeSettings.from_proto(container.liveness_probe), info.id,
                                          started)
    if container.HasField("readiness_probe"):
        readiness = rec.readiness
        if readiness is None or readiness.container_id != info.id:
            # An agent that restarts keeps an adopted container's reported readiness.
            reported = any(s.container_id == info.id and s.ready for s in pod.status.container_statuses)
            readiness = ProbeTracker.start(READINESS, ProbeSettings.from_proto(container.readiness_probe), info.id,
                                           started, passing=reported)
    return replace(rec, liveness=liveness, readiness=readiness)


def _delay(steps: int, config: ReconcileConfig) -> float:
    if steps <= 0:
        return 0.0
    return float(min(config.backoff_base * 2 ** min(steps - 1, _MAX_STEPS), config.backoff_max))


def _back_off(rec: ContainerRecord, last: Exit, plan: _Plan) -> ContainerRecord:
    """The back-off after a newly seen exit."""
    since = last.finished_at if last.finished_at is not None else plan.now
    if last.killed:  # not a crash: restart now, and do not count it
        return replace(rec, backoff_until=since, backoff_for=last.container_id)
    steps = rec.backoff_steps
    if (last.started_at is not None and last.finished_at is not None
            and last.finished_at - last.started_at >= plan.config.backoff_reset):
        steps = 0
    since = last.finished_at if last.finished_at is not None else plan.now
    return replace(rec, backoff_until=since + _delay(steps, plan.config), backoff_steps=min(steps + 1, _MAX_STEPS),
                   backoff_for=last.container_id)


def record_start_failure(state: AgentPodState, action: StartContainer, reason: str, message: str, now: float,
                         config: ReconcileConfig) -> AgentPodState:
    """Remember a start that failed (`RuntimeFailure.reason` and message): shown, and retried after a back-off."""
    spec = action.spec
    pod = state.pods.get(spec.pod_uid)
    if pod is None:
        return state
    rec = pod.containers.get(spec.container, ContainerRecord())
    steps = max(rec.backoff_steps, 1)
    rec = replace(rec, waiting_reason=reason, waiting_message=message, waiting_attempt=spec.attempt,
                  backoff_until=now + _delay(steps, config), backoff_steps=min(steps + 1, _MAX_STEPS))
    return _with_container(state, spec.pod_uid, pod, spec.container, rec)


def due_probes(desired: Sequence[objects_pb2.Pod], state: AgentPodState, now: float) -> list[ProbeCheck]:
    """The probes to run now, for running containers of desired pods."""
    checks: list[ProbeCheck] = []
    for pod in desired:
        record = state.pods.get(pod.metadata.uid)
        if record is None or pod.metadata.deletion_timestamp:
            continue
        for container in pod.spec.containers:
            rec = record.containers.get(container.name)
            if rec is None:
                continue
            ports = {p.name: p.container_port for p in container.ports if p.name}
            for tracker, probe in ((rec.liveness, container.liveness_probe),
                                   (rec.readiness, container.readiness_probe)):
                if tracker is not None and tracker.due(now):
                    checks.append(ProbeCheck(pod.metadata.uid, container.name, tracker.kind, tracker.container_id,
                                             record.pod_ip or "127.0.0.1", probe, ports))
    return checks


def record_probe(state: AgentPodState, check: ProbeCheck, ok: bool, now: float) -> AgentPodState:
    """Feed a probe result in; a result for a container that has since been replaced is dropped."""
    pod = state.pods.get(check.pod_uid)
    rec = pod.containers.get(check.container) if pod is not None else None
    if pod is None or rec is None:
        return state
    tracker = rec.liveness if check.kind == LIVENESS else rec.readiness
    if tracker is None or tracker.container_id != check.container_id:
        return state
    tracker = tracker.record(ok, now)
    rec = replace(rec, liveness=tracker) if check.kind == LIVENESS else replace(rec, readiness=tracker)
    return _with_container(state, check.pod_uid, pod, check.container, rec)


def _with_container(state: AgentPodState, uid: str, pod: PodRecord, name: str, rec: ContainerRecord) -> AgentPodState:
    pods = dict(state.pods)
    pods[uid] = replace(pod, containers={**pod.containers, name: rec})
    return AgentPodState(pods)

