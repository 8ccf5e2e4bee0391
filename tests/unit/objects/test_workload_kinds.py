"""Job, CronJob and DaemonSet manifests in Kubernetes' shapes, their defaults, and bad input by path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import apply_defaults, validate
from raftorch.objects.manifest import from_manifest, to_manifest

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 5
  parallelism: 2
  backoffLimit: 4
  activeDeadlineSeconds: 100
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
        command: ["sh", "-c", "echo done"]
"""

CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/5 * * * *"
  timeZone: Europe/Paris
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 30
  successfulJobsHistoryLimit: 2
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: hello, image: busybox, command: [date]}
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  template:
    metadata: {labels: {app: logs}}
    spec:
      tolerations:
      - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      - {key: maintenance, operator: Equal, value: "yes", effect: NoExecute, tolerationSeconds: 30}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - {key: kubernetes.io/os, operator: In, values: [linux]}
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 10
            preference:
              matchExpressions: [{key: disk, operator: Exists}]
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: logs}}
            topologyKey: kubernetes.io/hostname
      containers:
      - {name: shipper, image: busybox}
"""


def _load(text: str) -> Any:
    msg = from_manifest(yaml.safe_load(text))
    apply_defaults(msg)
    validate(msg)
    return msg


def test_job_manifest_reads_and_defaults_the_selector() -> None:
    job = _load(JOB)
    assert isinstance(job, objects_pb2.Job)
    assert (job.spec.completions, job.spec.parallelism, job.spec.backoff_limit) == (5, 2, 4)
    assert job.spec.selector.match_labels["job-name"] == "pi"
    assert job.spec.template.metadata.labels["job-name"] == "pi"
    assert from_manifest(to_manifest(job)) == job


def test_job_defaults() -> None:
    doc = yaml.safe_load(JOB)
    for key in ("completions", "parallelism", "backoffLimit"):
        del doc["spec"][key]
    del doc["spec"]["template"]["spec"]["restartPolicy"]
    job = _load(yaml.safe_dump(doc))
    assert (job.spec.completions, job.spec.parallelism, job.spec.backoff_limit) == (1, 1, 6)
    assert job.spec.template.spec.restart_policy == "Never"


def test_cronjob_manifest_reads() -> None:
    cron = _load(CRONJOB)
    assert isinstance(cron, objects_pb2.CronJob)
    assert (cron.spec.schedule, cron.spec.time_zone, cron.spec.concurrency_policy) == \
        ("*/5 * * * *", "Europe/Paris", "Forbid")
    assert cron.spec.job_template.spec.template.spec.restart_policy == "OnFailure"
    assert to_manifest(cron)["apiVersion"] == "batch/v1"


def test_daemonset_manifest_with_tolerations_and_affinity_reads() -> None:
    ds = _load(DAEMONSET)
    assert isinstance(ds, objects_pb2.DaemonSet)
    spec = ds.spec.template.spec
    assert spec.tolerations[1].toleration_seconds == 30
    terms = spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert terms[0].match_expressions[0].values == ["linux"]
    assert ds.spec.update_strategy.rolling_update.max_unavailable == "1"
    assert to_manifest(ds)["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    assert from_manifest(to_manifest(ds)) == ds


def _refused(text: str, change: Any, needle: str) -> None:
    doc = yaml.safe_load(text)
    change(doc)
    with pytest.raises(Invalid) as info:
        _load(yaml.safe_dump(doc))
    assert needle in str(info.value)


def test_invalid_cron_expression_is_refused_with_its_path() -> None:
    _refused(CRONJOB, lambda d: d["spec"].update(schedule="61 * * * *"),
             'spec.schedule: invalid cron expression "61 * * * *"')
    _refused(CRONJOB, lambda d: d["spec"].update(schedule="* * * *"), "spec.schedule: must have five fields")
    _refused(CRONJOB, lambda d: d["spec"].update(timeZone="Mars/Base"), 'spec.timeZone: unknown time zone "Mars/Base"')
    _refused(CRONJOB, lambda d: d["spec"].update(concurrencyPolicy="Sometimes"),
             "spec.concurrencyPolicy: must be one of Allow, Forbid, Replace")


def test_negative_parallelism_is_refused_with_its_path() -> None:
    _refused(JOB, lambda d: d["spec"].update(parallelism=-1), "spec.parallelism: must not be negative, got -1")
    _refused(CRONJOB, lambda d: d["spec"]["jobTemplate"]["spec"].update(parallelism=-2),
             "spec.jobTemplate.spec.parallelism: must not be negative, got -2")


def test_job_restart_policy_always_is_refused() -> None:
    _refused(JOB, lambda d: d["spec"]["template"]["spec"].update(restartPolicy="Always"),
             'spec.template.spec.restartPolicy: must be Never or OnFailure for a Job, got "Always"')


def test_unknown_toleration_effect_and_operator_are_refused() -> None:
    def bad(d: Any) -> None:
        d["spec"]["template"]["spec"]["tolerations"][0]["effect"] = "NoWay"
    _refused(DAEMONSET, bad, "spec.template.spec.tolerations[0].effect: must be one of NoSchedule, "
                             'PreferNoSchedule, NoExecute, got "NoWay"')


def test_unknown_match_expressions_operator_is_refused() -> None:
    def bad(d: Any) -> None:
        terms = d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        terms[0]["matchExpressions"][0]["operator"] = "Like"
    _refused(DAEMONSET, bad, "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuring"
                             "Execution.nodeSelectorTerms[0].matchExpressions[0].operator: must be one of In, NotIn, "
                             'Exists, DoesNotExist, Gt, Lt, got "Like"')


def test_unsupported_anti_affinity_topology_and_pod_affinity_are_refused() -> None:
    def zone(d: Any) -> None:
        d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] = "topology.kubernetes.io/zone"
    _refused(DAEMONSET, zone, "topologyKey: must be one of kubernetes.io/hostname")

    def pod_affinity(d: Any) -> None:
        d["spec"]["template"]["spec"]["affinity"]["podAffinity"] = {}
    _refused(DAEMONSET, pod_affinity, "spec.template.spec.affinity.podAffinity: not supported by raftorch")


def test_daemonset_max_unavailable_zero_is_refused() -> None:
    _refused(DAEMONSET, lambda d: d["spec"]["updateStrategy"]["rollingUpdate"].update(maxUnavailable=0),
             "spec.updateStrategy.rollingUpdate.maxUnavailable: must not be 0")


def test_unknown_taint_effect_on_a_node_is_refused() -> None:
    node = objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="n1"))
    node.spec.taints.add(key="gpu", value="yes", effect="NoRun")
    with pytest.raises(Invalid) as info:
        validate(node)
    assert 'spec.taints[0].effect: must be one of NoSchedule, PreferNoSchedule, NoExecute, got "NoRun"' \
        in str(info.value)


def test_names_too_long_for_the_pods_label_are_refused() -> None:
    _refused(JOB, lambda d: d["metadata"].update(name="j" * 64), "metadata.name: must be at most 63 characters")
    _refused(CRONJOB, lambda d: d["metadata"].update(name="c" * 53), "metadata.name: must be at most 52 characters")
