"""Deployment controller, pure: a deployment and its replica sets in, the changes to make out.

Follows Kubernetes' deployment controller (rolling update, recreate, pause, rollback, revision
history), with two differences that make plans idempotent: the scaling steps run to a fixpoint
within one plan (see `_rollout`), and the rollback pass only rewrites the template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.master.controllers import _rollout
from raftorch.master.controllers._util import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    controller_owner,
    creation_key,
    is_controlled_by,
    parse_time,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    pod_is_terminal,
    resolve_int_or_percent,
    revision_of,
    set_condition,
)

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_REVISION_HISTORY_LIMIT = 10

AVAILABLE = "Available"
PROGRESSING = "Progressing"
# Outcome of the last `rollout undo`; kept until the next one, so a failed undo stays visible.
ROLLBACK = "Rollback"


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """What to change. `create` and `scale` carry final replica counts; apply `delete` last.

    `template_from_rollback` goes into the deployment's spec.template; whenever
    `clear_rollback` is set, spec.rollback_to is cleared in the same update (also when the
    revision was not found or already current, so the rollback is not retried forever)."""

    create: objects_pb2.ReplicaSet | None
    scale: tuple[tuple[str, int], ...]
    update_revision: tuple[tuple[str, str], ...]
    delete: tuple[str, ...]
    template_from_rollback: objects_pb2.PodTemplateSpec | None
    clear_rollback: bool
    status: objects_pb2.DeploymentStatus

    def changes_objects(self) -> bool:
        """True when a replica set or the deployment's spec is to be written."""
        return bool(self.create is not None or self.scale or self.update_revision or self.delete
                    or self.template_from_rollback is not None or self.clear_rollback)

    def is_noop(self, deploy: objects_pb2.Deployment) -> bool:
        """Nothing to write at all, the status included."""
        return not self.changes_objects() and self.status == deploy.status


@dataclass(frozen=True, slots=True)
class _Strategy:
    recreate: bool
    max_surge: int
    max_unavailable: int  # clamped to desired; 0 for Recreate, as Kubernetes' MaxUnavailable


def pod_template_hash(template: objects_pb2.PodTemplateSpec) -> str:
    """10 hex characters of sha256 over the template without its pod-template-hash label."""
    clean = objects_pb2.PodTemplateSpec()
    clean.CopyFrom(template)
    if HASH_LABEL in clean.metadata.labels:
        del clean.metadata.labels[HASH_LABEL]
    return hashlib.sha256(clean.SerializeToString(deterministic=True)).hexdigest()[:10]


def desired_replicas(deploy: objects_pb2.Deployment) -> int:
    if not deploy.spec.HasField("replicas"):
        return 1
    if deploy.spec.replicas < 0:
        raise Invalid(f"deployment {deploy.metadata.name}: spec.replicas: must not be negative")
    return deploy.spec.replicas


def resolve_strategy(deploy: objects_pb2.Deployment) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate deployment, as Kubernetes' ResolveFenceposts."""
    desired = desired_replicas(deploy)
    rolling = deploy.spec.strategy.rolling_update
    surge = resolve_int_or_percent(rolling.max_surge or DEFAULT_MAX_SURGE, desired, True,
                                   "spec.strategy.rolling_update.max_surge")
    unavailable = resolve_int_or_percent(rolling.max_unavailable or DEFAULT_MAX_UNAVAILABLE, desired, False,
                                         "spec.strategy.rolling_update.max_unavailable")
    if surge == 0 and unavailable == 0:
        # Rounding down may leave no room at all; guess that one pod may go so the rollout moves.
        unavailable = 1
    return surge, unavailable


def _strategy(deploy: objects_pb2.Deployment, desired: int) -> _Strategy:
    kind = deploy.spec.strategy.type or ROLLING_UPDATE
    if kind == RECREATE:
        return _Strategy(recreate=True, max_surge=0, max_unavailable=0)
    if kind != ROLLING_UPDATE:
        raise Invalid(f"deployment {deploy.metadata.name}: spec.strategy.type: {kind!r} is neither "
                      f"{ROLLING_UPDATE!r} nor {RECREATE!r}")
    surge, unavailable = resolve_strategy(deploy)
    return _Strategy(recreate=False, max_surge=surge, max_unavailable=0 if desired == 0 else min(unavailable, desired))


def plan_deployment(deploy: objects_pb2.Deployment, replica_sets: Sequence[objects_pb2.ReplicaSet],
                    pods: Sequence[objects_pb2.Pod], *, now: str = "") -> DeploymentPlan:
    """`replica_sets`: those this deployment controls; `pods`: theirs (others are ignored).

    `now` (RFC 3339) stamps condition transitions and, with spec.min_ready_seconds, decides
    which ready pods are available yet; without it min_ready_seconds is not applied."""
    desired = desired_replicas(deploy)
    strategy = _strategy(deploy, desired)
    template_hash = pod_template_hash(deploy.spec.template)
    ordered = sorted(replica_sets, key=lambda rs: creation_key(rs.metadata))
    new_rs = next((rs for rs in ordered if pod_template_hash(rs.spec.template) == template_hash), None)
    old_rss = [rs for rs in ordered if rs is not new_rs]
    clock = parse_time(now)
    states = {rs.metadata.name: _state(rs, pods, deploy.spec.min_ready_seconds, clock) for rs in ordered}
    old = [states[rs.metadata.name] for rs in old_rss]
    new_name = new_rs.metadata.name if new_rs is not None else f"{deploy.metadata.name}-{template_hash}"
    new_revision = max((s.revision for s in old), default=0) + 1
    rolling_back = deploy.spec.HasField("rollback_to") and not deploy.spec.paused

    if deploy.metadata.deletion_timestamp or rolling_back:
        current = states[new_name] if new_rs is not None else None
        status = _status(deploy, desired, strategy, new_name, current, old, now)
        if not rolling_back:
            return DeploymentPlan(None, (), (), (), None, False, status)
        template, cond = _rollback(deploy, template_hash, old_rss if new_rs is None else [new_rs, *old_rss])
        conditions = set_condition(_copied(status.conditions), ROLLBACK, *cond, now=now)
        status.ClearField("conditions")
        status.conditions.extend(conditions)
        return DeploymentPlan(None, (), (), (), template, True, status)

    update_revision: tuple[tuple[str, str], ...] = ()
    new: _rollout.RSState | None
    if new_rs is not None:
        new = states[new_name]
        if revision_of(new_rs.metadata) < new_revision:
            update_revision = ((new_name, str(new_revision)),)
    elif deploy.spec.paused:
        new = None
    else:
        new = _rollout.RSState(name=new_name, replicas=0, original=-1, pods=0, ready=0, available=0, running=0,
                               revision=new_revision, created=(float("inf"), new_name))

    if deploy.spec.paused:
        _rollout.scale_paused(new, old, desired)
    elif new is not None and strategy.recreate:
        _rollout.recreate(new, old, desired)
        if new.original < 0 and any(s.running for s in old):
            new = None  # not created until the old pods are gone
    elif new is not None:
        _rollout.rolling_update(new, old, desired, strategy.max_surge, strategy.max_unavailable)

    status = _status(deploy, desired, strategy, new_name, new, old, now)
    delete: tuple[str, ...] = ()
    if deploy.spec.paused or _complete(desired, new, old, status):
        delete = _history_to_delete(deploy, old_rss, states)
    create = None
    if new is not None and new.original < 0:
        create = _new_replica_set(deploy, template_hash, new_revision, new.replicas)
    changed = [s for s in ([new] if new is not None else []) + old
               if s.original >= 0 and s.replicas != s.original and s.name not in delete]
    # Downs before ups, so an executor applying them in order never overshoots on the way.
    changed.sort(key=lambda s: (s.replicas > s.original, s.name))
    return DeploymentPlan(
        create=create,
        scale=tuple((s.name, s.replicas) for s in changed),
        update_revision=update_revision,
        delete=delete,
        template_from_rollback=None,
        clear_rollback=False,
        status=status,
    )


def _state(rs: objects_pb2.ReplicaSet, pods: Sequence[objects_pb2.Pod], min_ready_seconds: int,
           clock: float | None) -> _rollout.RSState:
    own = [p for p in pods if is_controlled_by(p.metadata, "ReplicaSet", rs.metadata)]
    active = [p for p in own if pod_is_active(p)]
    return _rollout.RSState(
        name=rs.metadata.name,
        replicas=rs.spec.replicas,
        original=rs.spec.replicas,
        pods=len(active),
        ready=sum(1 for p in active if pod_is_ready(p)),
        available=sum(1 for p in active if pod_is_available(p, min_ready_seconds, clock)),
        running=sum(1 for p in own if not pod_is_terminal(p)),
        revision=revision_of(rs.metadata),
        created=creation_key(rs.metadata),
    )


def _status(deploy: objects_pb2.Deployment, desired: int, strategy: _Strategy, new_name: str,
            new: _rollout.RSState | None, old: Sequence[_rollout.RSState], now: str) -> objects_pb2.DeploymentStatus:
    sets = ([new] if new is not None else []) + list(old)
    available = sum(s.available for s in sets)
    status = objects_pb2.DeploymentStatus(
        observed_generation=deploy.metadata.generation,
        replicas=sum(s.pods for s in sets),
        updated_replicas=new.pods if new is not None else 0,
        ready_replicas=sum(s.ready for s in sets),
        available_replicas=available,
        unavailable_replicas=max(desired - available, 0),
    )
    conditions = _copied(deploy.status.conditions)
    if available >= desired - strategy.max_unavailable:
        conditions = set_condition(conditions, AVAILABLE, "True", "MinimumReplicasAvailable",
                                   "Deployment has minimum availability.", now)
    else:
        conditions = set_condition(conditions, AVAILABLE, "False", "MinimumReplicasUnavailable",
                                   "Deployment does not have minimum availability.", now)
    if deploy.spec.paused:
        conditions = set_condition(conditions, PROGRESSING, "Unknown", "DeploymentPaused", "Deployment is paused.", now)
    elif _complete(desired, new, old, status):
        conditions = set_condition(conditions, PROGRESSING, "True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{new_name}" has successfully progressed.', now)
    else:
        conditions = set_condition(conditions, PROGRESSING, "True", "ReplicaSetUpdated",
                                   f'ReplicaSet "{new_name}" is progressing.', now)
    status.conditions.extend(conditions)
    return status


def _copied(conditions: Sequence[objects_pb2.Condition]) -> list[objects_pb2.Condition]:
    out: list[objects_pb2.Condition] = []
    for cond in conditions:
        copy = objects_pb2.Condition()
        copy.CopyFrom(cond)
        out.append(copy)
    return out


def _complete(desired: int, new: _rollout.RSState | None, old: Sequence[_rollout.RSState],
              status: objects_pb2.DeploymentStatus) -> bool:
    return (new is not None and new.replicas == desired and all(s.replicas == 0 for s in old)
            and status.updated_replicas == desired and status.replicas == desired
            and status.available_replicas == desired)


def _history_to_delete(deploy: objects_pb2.Deployment, old_rss: Sequence[objects_pb2.ReplicaSet],
                       states: dict[str, _rollout.RSState]) -> tuple[str, ...]:
    limit = (deploy.spec.revision_history_limit if deploy.spec.HasField("revision_history_limit")
             else DEFAULT_REVISION_HISTORY_LIMIT)
    alive = sorted((rs for rs in old_rss if not rs.metadata.deletion_timestamp),
                   key=lambda rs: (revision_of(rs.metadata), creation_key(rs.metadata)))
    excess = len(alive) - max(limit, 0)
    doomed: list[str] = []
    # As Kubernetes: the `excess` oldest are candidates; those still holding pods are skipped, not replaced.
    for rs in alive[:max(excess, 0)]:
        s = states[rs.metadata.name]
        if s.replicas == 0 and s.running == 0 and s.pods == 0:
            doomed.append(rs.metadata.name)
    return tuple(doomed)


def _new_replica_set(deploy: objects_pb2.Deployment, template_hash: str, revision: int,
                     replicas: int) -> objects_pb2.ReplicaSet:
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(deploy.spec.template)
    template.metadata.labels[HASH_LABEL] = template_hash
    selector = dict(deploy.spec.selector.match_labels)
    selector[HASH_LABEL] = template_hash
    return objects_pb2.ReplicaSet(
        metadata=objects_pb2.ObjectMeta(
            name=f"{deploy.metadata.name}-{template_hash}",
            namespace=deploy.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations={REVISION_ANNOTATION: str(revision)},
            owner_references=[controller_owner("Deployment", deploy.metadata)],
        ),
        spec=objects_pb2.ReplicaSetSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels=selector),
            template=template,
        ),
    )


def _rollback(deploy: objects_pb2.Deployment, template_hash: str, rss: Sequence[objects_pb2.ReplicaSet]
              ) -> tuple[objects_pb2.PodTemplateSpec | None, tuple[str, str, str]]:
    """The template to write back, and the Rollback condition (status, reason, message)."""
    target = deploy.spec.rollback_to
    if target == 0:
        # The previous revision: the newest one that is not the current template's (whose replica
        # set, if it exists yet, would get the highest revision on the next pass).
        target = max((revision_of(rs.metadata) for rs in rss
                      if pod_template_hash(rs.spec.template) != template_hash), default=0)
        if target == 0:
            return None, ("False", "RollbackRevisionNotFound", "Unable to find the previous revision.")
    match = next((rs for rs in rss if revision_of(rs.metadata) == target), None)
    if match is None:
        return None, ("False", "RollbackRevisionNotFound", f"Unable to find revision {target}.")
    if pod_template_hash(match.spec.template) == template_hash:
        return None, ("True", "RollbackTemplateUnchanged", f"Revision {target} is the current template.")
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(match.spec.template)
    if HASH_LABEL in template.metadata.labels:
        del template.metadata.labels[HASH_LABEL]
    return template, ("True", "DeploymentRollback", f"Rolled back to revision {target}.")
