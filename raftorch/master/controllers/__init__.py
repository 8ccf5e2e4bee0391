"""The controllers' functional core: pure plans from current objects; an executor applies them."""

from __future__ import annotations

from raftorch.master.controllers.cronjob import CronJobPlan, plan_cronjob
from raftorch.master.controllers.daemonset import DaemonNode, DaemonSetPlan, plan_daemonset
from raftorch.master.controllers.deployment import (
    DeploymentPlan,
    desired_replicas,
    plan_deployment,
    pod_template_hash,
    resolve_strategy,
)
from raftorch.master.controllers.endpoints import endpoints_equal, plan_endpoints
from raftorch.master.controllers.gc import plan_gc
from raftorch.master.controllers.job import JobPlan, job_finished, plan_job
from raftorch.master.controllers.noexecute import TaintEvictionPlan, plan_taint_evictions
from raftorch.master.controllers.replicaset import ReplicaSetPlan, plan_replicaset

__all__ = [
    "CronJobPlan",
    "DaemonNode",
    "DaemonSetPlan",
    "DeploymentPlan",
    "JobPlan",
    "ReplicaSetPlan",
    "TaintEvictionPlan",
    "desired_replicas",
    "endpoints_equal",
    "job_finished",
    "plan_cronjob",
    "plan_daemonset",
    "plan_deployment",
    "plan_endpoints",
    "plan_gc",
    "plan_job",
    "plan_replicaset",
    "plan_taint_evictions",
    "pod_template_hash",
    "resolve_strategy",
]
