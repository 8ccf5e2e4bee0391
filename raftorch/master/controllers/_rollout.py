"""Kubernetes' rollout arithmetic over replica counts, run to a fixpoint.

Kubernetes scales one step per sync and relies on the next sync seeing the result. A plan
here must be idempotent, so the same steps are repeated on a working copy until none of them
changes anything. That is only safe if counts already planned are not counted twice, hence
two conservative views of a replica set:

- `occupied`: max(spec, live pods) - pods of a scaled-down set still count until they are
  gone, so the new set never grows into room the old pods still take;
- `effective_available`: min(available pods, spec) - a scaled-down set loses its unready
  pods first (the replica set controller deletes those first), then available ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class RSState:
    name: str
    replicas: int  # planned spec.replicas
    original: int  # spec.replicas as stored; -1 for a set still to be created
    pods: int  # active pods (not terminating, not finished)
    ready: int  # of those, ready
    available: int  # of those, available
    running: int  # pods still running, terminating ones included (Recreate waits for them)
    revision: int
    created: tuple[float, str]

    @property
    def occupied(self) -> int:
        return max(self.replicas, self.pods)

    @property
    def effective_available(self) -> int:
        return min(self.available, self.replicas)


def rolling_update(new: RSState, old: Sequence[RSState], desired: int, max_surge: int, max_unavailable: int) -> None:
    """Scale `new` up and `old` down within the surge and availability bounds (mutates replicas)."""
    old_by_age = sorted(old, key=lambda s: s.created)
    while True:
        if _reconcile_new(new, old_by_age, desired, max_surge):
            continue
        if not _reconcile_old(new, old_by_age, desired, max_unavailable):
            return


def _reconcile_new(new: RSState, old: Sequence[RSState], desired: int, max_surge: int) -> bool:
    if new.replicas == desired:
        return False
    if new.replicas > desired:
        new.replicas = desired
        return True
    current = new.occupied + sum(s.occupied for s in old)
    max_total = desired + max_surge
    if current >= max_total:
        return False
    new.replicas += min(max_total - current, desired - new.replicas)
    return True


def _reconcile_old(new: RSState, old: Sequence[RSState], desired: int, max_unavailable: int) -> bool:
    old_replicas = sum(s.replicas for s in old)
    if old_replicas == 0:
        return False
    min_available = desired - max_unavailable
    new_unavailable = new.replicas - new.effective_available
    max_scaled_down = old_replicas + new.replicas - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    # Unhealthy old replicas go first, or they would block the rollout forever.
    cleaned = _cleanup_unhealthy(old, max_scaled_down)
    scaled = _scale_down_old(new, old, min_available)
    return cleaned + scaled > 0


def _cleanup_unhealthy(old: Sequence[RSState], budget: int) -> int:
    done = 0
    for s in old:
        if done >= budget:
            break
        unhealthy = s.replicas - s.effective_available
        if s.replicas == 0 or unhealthy == 0:
            continue
        n = min(budget - done, unhealthy)
        s.replicas -= n
        done += n
    return done


def _scale_down_old(new: RSState, old: Sequence[RSState], min_available: int) -> int:
    available = new.effective_available + sum(s.effective_available for s in old)
    if available <= min_available:
        return 0
    budget = available - min_available
    done = 0
    for s in old:
        if done >= budget:
            break
        if s.replicas == 0:
            continue
        n = min(s.replicas, budget - done)
        s.replicas -= n
        done += n
    return done


def recreate(new: RSState, old: Sequence[RSState], desired: int) -> None:
    """All old replicas to zero; the new set to `desired` only once no old pod runs any more."""
    for s in old:
        s.replicas = 0
    if any(s.running for s in old):
        return
    new.replicas = desired


def scale_paused(new: RSState | None, old: Sequence[RSState], desired: int) -> None:
    """Kubernetes' scaling of a paused deployment, without proportional scaling: the one active
    set (or else the newest) follows `desired`; with several active sets only a saturated new
    set lets the old ones go to zero; otherwise nothing moves until the deployment resumes."""
    sets = ([new] if new is not None else []) + list(old)
    active = [s for s in sets if s.replicas > 0]
    target: RSState | None = None
    if len(active) == 1:
        target = active[0]
    elif not active and sets:
        target = new if new is not None else max(old, key=lambda s: s.created)
    if target is not None:
        target.replicas = desired
        return
    if new is not None and new.replicas == desired and new.available >= desired:
        for s in old:
            s.replicas = 0
