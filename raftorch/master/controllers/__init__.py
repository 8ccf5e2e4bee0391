"""The controllers' functional core: pure plans from current objects; an executor applies them."""

from __future__ import annotations

from raftorch.master.controllers.deployment import (
    DeploymentPlan,
    desired_replicas,
    plan_deployment,
    pod_template_hash,
    resolve_strategy,
)
from raftorch.master.controllers.endpoints import endpoints_equal, plan_endpoints
from raftorch.master.controllers.gc import plan_gc
from raftorch.master.controllers.replicaset import ReplicaSetPlan, plan_replicaset

__all__ = [
    "DeploymentPlan",
    "ReplicaSetPlan",
    "desired_replicas",
    "endpoints_equal",
    "plan_deployment",
    "plan_endpoints",
    "plan_gc",
    "plan_replicaset",
    "pod_template_hash",
    "resolve_strategy",
]
