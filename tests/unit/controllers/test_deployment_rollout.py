"""Rollouts driven end to end through the deployment and replica set plans (see controller_sim)."""

from __future__ import annotations

import pytest
from controller_sim import Sim, image_of, images, make_deployment

REVISION = "deployment.raftorch.io/revision"


def _settled(replicas: int = 10, *, max_surge: str = "", max_unavailable: str = "", strategy: str = "",
             history: int | None = None) -> Sim:
    sim = Sim(make_deployment(replicas, "web:v1", max_surge=max_surge, max_unavailable=max_unavailable,
                              strategy=strategy, history=history))
    sim.run()
    assert len(sim.ready_pods()) == replicas
    return sim


def _condition(sim: Sim, type_: str) -> tuple[str, str]:
    (cond,) = [c for c in sim.deploy.status.conditions if c.type == type_]
    return cond.status, cond.reason


def _assert_complete(sim: Sim, image: str, replicas: int) -> None:
    pods = sim.live_pods()
    assert len(pods) == replicas
    assert images(pods) <= {image}
    assert len(sim.ready_pods()) == replicas
    current = sim.rs_for_image(image)
    assert current.spec.replicas == replicas
    assert all(rs.spec.replicas == 0 for rs in sim.replica_sets.values() if rs is not current)
    status = sim.deploy.status
    assert (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas,
            status.unavailable_replicas) == (replicas, replicas, replicas, replicas, 0)
    assert status.observed_generation == sim.deploy.metadata.generation
    assert _condition(sim, "Available") == ("True", "MinimumReplicasAvailable")
    assert _condition(sim, "Progressing") == ("True", "NewReplicaSetAvailable")
    assert sim.plan().is_noop(sim.deploy)


class _Bounds:
    """Records the extremes of every intermediate state once armed."""

    def __init__(self) -> None:
        self.most_pods = 0
        self.fewest_ready = 10**9
        self.mixed = False

    def __call__(self, sim: Sim) -> None:
        live = sim.live_pods()
        self.most_pods = max(self.most_pods, len(live))
        self.fewest_ready = min(self.fewest_ready, len(sim.ready_pods()))
        self.mixed = self.mixed or len(images(live)) > 1


@pytest.mark.parametrize("new_rs_first", [False, True], ids=["old-rs-first", "new-rs-first"])
@pytest.mark.parametrize(("max_surge", "max_unavailable", "surge", "unavailable"), [
    ("3", "2", 3, 2),
    ("25%", "25%", 3, 2),
    ("", "", 3, 2),
    ("0", "1", 0, 1),
    ("5", "0", 5, 0),
    ("100%", "0", 10, 0),
], ids=["3-2", "25%-25%", "defaults", "0-1", "5-0", "100%-0"])
def test_rolling_update_stays_within_bounds_and_completes(
        max_surge: str, max_unavailable: str, surge: int, unavailable: int, new_rs_first: bool) -> None:
    sim = Sim(make_deployment(10, "web:v1", max_surge=max_surge, max_unavailable=max_unavailable),
              new_rs_first=new_rs_first)
    sim.run()
    bounds = _Bounds()
    sim.observers.append(bounds)

    sim.set_image("web:v2")
    steps = sim.run()

    assert bounds.most_pods <= 10 + surge
    assert bounds.fewest_ready >= 10 - unavailable
    assert bounds.mixed  # it really was a rolling update
    assert steps <= 30
    _assert_complete(sim, "web:v2", 10)
    old = sim.rs_for_image("web:v1")
    assert old.metadata.annotations[REVISION] == "1"
    assert sim.rs_for_image("web:v2").metadata.annotations[REVISION] == "2"


def test_rolling_update_uses_the_surge() -> None:
    sim = _settled(max_surge="3", max_unavailable="2")
    bounds = _Bounds()
    sim.observers.append(bounds)
    sim.set_image("web:v2")
    sim.run()
    assert 10 < bounds.most_pods <= 13
    assert bounds.fewest_ready == 8


def test_recreate_never_mixes_versions() -> None:
    sim = _settled(strategy="Recreate")
    bounds = _Bounds()
    sim.observers.append(bounds)

    sim.set_image("web:v2")
    sim.run()

    assert not bounds.mixed
    assert bounds.most_pods <= 10
    assert bounds.fewest_ready == 0
    _assert_complete(sim, "web:v2", 10)


def test_recreate_waits_for_old_pods_before_creating_the_new_replica_set() -> None:
    sim = _settled(strategy="Recreate")
    sim.set_image("web:v2")
    plan = sim.plan()
    assert plan.create is None
    assert plan.scale == ((sim.rs_for_image("web:v1").metadata.name, 0),)
    sim.step()
    assert sim.live_pods() == []
    assert sim.plan().create is not None
    sim.step()
    assert _condition(sim, "Available") == ("False", "MinimumReplicasUnavailable")
    assert _condition(sim, "Progressing") == ("True", "ReplicaSetUpdated")


def test_a_broken_rollout_stops_at_the_bounds_and_undo_recovers() -> None:
    sim = _settled(max_surge="3", max_unavailable="2")
    bounds = _Bounds()
    sim.observers.append(bounds)
    sim.broken_images.add("web:v2")

    sim.set_image("web:v2")
    sim.run()

    assert bounds.most_pods <= 13 and bounds.fewest_ready >= 8
    assert len(sim.ready_pods()) == 8
    assert _condition(sim, "Progressing") == ("True", "ReplicaSetUpdated")
    assert _condition(sim, "Available") == ("True", "MinimumReplicasAvailable")

    sim.undo()
    sim.run()

    assert bounds.fewest_ready >= 8
    assert image_of(sim.deploy.spec.template) == "web:v1"
    assert not sim.deploy.spec.HasField("rollback_to")
    _assert_complete(sim, "web:v1", 10)
    # The old replica set is current again, with the newest revision.
    assert sim.rs_for_image("web:v1").metadata.annotations[REVISION] == "3"
    assert sim.rs_for_image("web:v2").metadata.annotations[REVISION] == "2"
    assert _condition(sim, "Rollback") == ("True", "DeploymentRollback")


def test_rollback_to_a_given_revision() -> None:
    sim = _settled()
    for image in ("web:v2", "web:v3"):
        sim.set_image(image)
        sim.run()

    sim.undo(1)
    sim.run()

    _assert_complete(sim, "web:v1", 10)
    revisions = {image_of(rs.spec.template): rs.metadata.annotations[REVISION] for rs in sim.replica_sets.values()}
    assert revisions == {"web:v1": "4", "web:v2": "2", "web:v3": "3"}

    sim.undo()  # the previous revision: v3
    sim.run()
    _assert_complete(sim, "web:v3", 10)


def test_rollback_to_a_missing_revision_is_dropped_and_reported() -> None:
    sim = _settled()
    sim.set_image("web:v2")
    sim.run()

    sim.undo(7)
    plan = sim.plan()
    assert plan.template_from_rollback is None
    assert plan.clear_rollback
    assert (plan.create, plan.scale, plan.delete) == (None, (), ())
    sim.run()

    assert image_of(sim.deploy.spec.template) == "web:v2"
    assert not sim.deploy.spec.HasField("rollback_to")
    status, reason = _condition(sim, "Rollback")
    assert (status, reason) == ("False", "RollbackRevisionNotFound")
    assert "7" in next(c.message for c in sim.deploy.status.conditions if c.type == "Rollback")
    _assert_complete(sim, "web:v2", 10)


def test_undo_without_history_is_reported() -> None:
    sim = _settled()
    sim.undo()
    sim.run()
    assert _condition(sim, "Rollback") == ("False", "RollbackRevisionNotFound")
    _assert_complete(sim, "web:v1", 10)


@pytest.mark.parametrize("strategy", ["RollingUpdate", "Recreate"])
def test_scale_up_and_down(strategy: str) -> None:
    sim = _settled(strategy=strategy)
    rs = sim.rs_for_image("web:v1")

    sim.set_replicas(15)
    assert sim.plan().scale == ((rs.metadata.name, 15),)
    sim.run()
    _assert_complete(sim, "web:v1", 15)

    sim.set_replicas(4)
    assert sim.plan().scale == ((rs.metadata.name, 4),)
    sim.run()
    _assert_complete(sim, "web:v1", 4)

    sim.set_replicas(0)
    sim.run()
    _assert_complete(sim, "web:v1", 0)
    assert len(sim.replica_sets) == 1


def test_scaling_in_the_middle_of_a_rollout_converges() -> None:
    sim = _settled(max_surge="3", max_unavailable="2")
    sim.set_image("web:v2")
    sim.step()
    sim.step()
    sim.set_replicas(4)
    sim.run()
    _assert_complete(sim, "web:v2", 4)

    sim.set_image("web:v3")
    sim.step()
    sim.set_replicas(20)
    sim.run()
    _assert_complete(sim, "web:v3", 20)


def test_revision_history_limit_deletes_the_oldest_unused_replica_sets() -> None:
    sim = _settled(history=2)
    for version in range(2, 6):
        sim.set_image(f"web:v{version}")
        sim.run()

    kept = sorted((int(rs.metadata.annotations[REVISION]), image_of(rs.spec.template))
                  for rs in sim.replica_sets.values())
    assert kept == [(3, "web:v3"), (4, "web:v4"), (5, "web:v5")]
    _assert_complete(sim, "web:v5", 10)


def test_history_limit_zero_keeps_only_the_current_replica_set() -> None:
    sim = _settled(history=0)
    sim.set_image("web:v2")
    sim.run()
    assert [image_of(rs.spec.template) for rs in sim.replica_sets.values()] == ["web:v2"]


def test_paused_deployment_does_not_roll_out_but_scales_and_resumes() -> None:
    sim = _settled()
    sim.deploy.spec.paused = True
    sim.set_image("web:v2")
    sim.run()
    assert images(sim.live_pods()) == {"web:v1"}
    assert len(sim.replica_sets) == 1
    assert _condition(sim, "Progressing") == ("Unknown", "DeploymentPaused")

    sim.set_replicas(12)
    sim.run()
    assert len(sim.ready_pods()) == 12
    assert images(sim.live_pods()) == {"web:v1"}

    sim.undo()  # ignored while paused, as in Kubernetes
    assert not sim.plan().clear_rollback
    sim.deploy.spec.ClearField("rollback_to")

    sim.deploy.spec.paused = False
    sim.run()
    _assert_complete(sim, "web:v2", 12)


def test_first_rollout_creates_the_replica_set_at_full_size() -> None:
    sim = Sim(make_deployment(10))
    plan = sim.plan()
    assert plan.create is not None and plan.create.spec.replicas == 10
    assert plan.scale == () and plan.delete == ()
    sim.run()
    _assert_complete(sim, "web:v1", 10)


@pytest.mark.parametrize("steps_between", [0, 1, 2, 3])
def test_a_rollout_interrupted_by_a_newer_template_keeps_the_bounds(steps_between: int) -> None:
    sim = _settled(max_surge="3", max_unavailable="2")
    bounds = _Bounds()
    sim.observers.append(bounds)
    for image in ("web:v2", "web:v3", "web:v4"):
        sim.set_image(image)
        for _ in range(steps_between):
            sim.step()
    sim.run()
    assert bounds.most_pods <= 13
    assert bounds.fewest_ready >= 8
    _assert_complete(sim, "web:v4", 10)
