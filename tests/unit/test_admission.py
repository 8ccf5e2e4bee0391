"""Pod security admission: what each level refuses, how refusals read, and where host processes go."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid, PermissionDenied
from raftorch.master import admission
from raftorch.master.admission import BASELINE, PRIVILEGED, RESTRICTED


def plain_pod(name: str = "web") -> objects_pb2.Pod:
    return objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(
            name="c", image="raftorch/busybox", ports=[objects_pb2.ContainerPort(container_port=80)])]))


def hardened(pod: objects_pb2.Pod) -> objects_pb2.Pod:
    """What the restricted level asks of every container."""
    for c in pod.spec.containers:
        sc = c.security_context
        sc.allow_privilege_escalation = False
        sc.run_as_non_root = True
        sc.run_as_user = 1000
        sc.capabilities.drop.append("ALL")
    return pod


def refusal(pod: objects_pb2.Pod, level: str) -> str:
    with pytest.raises(PermissionDenied) as info:
        admission.admit(pod, level)
    return info.value.message


def test_default_level_is_baseline_and_unknown_values_count_as_restricted() -> None:
    assert admission.level_of({}) == BASELINE
    assert admission.level_of({admission.LEVEL_LABEL: "privileged"}) == PRIVILEGED
    assert admission.level_of({admission.LEVEL_LABEL: "bogus"}) == RESTRICTED


def test_a_namespace_label_must_name_a_level() -> None:
    ns = objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="a", labels={admission.LEVEL_LABEL: "root"}))
    with pytest.raises(Invalid, match=r"raftorch.io/pod-security\]: must be one of privileged, baseline, "
                                      r"restricted, got 'root'"):
        admission.check_namespace(ns)
    ns.metadata.labels[admission.LEVEL_LABEL] = "restricted"
    admission.check_namespace(ns)


def test_a_plain_pod_passes_baseline_but_not_restricted() -> None:
    admission.admit(plain_pod(), BASELINE)
    message = refusal(plain_pod(), RESTRICTED)
    assert message.startswith('pods "web" is forbidden: violates pod-security level "restricted": ')
    for field in ("allowPrivilegeEscalation must be false", "runAsNonRoot must be true",
                  "capabilities.drop must include ALL"):
        assert f"spec.containers[0].securityContext.{field}" in message


def test_host_network_is_refused_by_baseline_with_the_field_and_level_named() -> None:
    pod = plain_pod()
    pod.spec.host_network = True
    assert refusal(pod, BASELINE) == ('pods "web" is forbidden: violates pod-security level "baseline": '
                                      'spec.hostNetwork=true')
    admission.admit(pod, PRIVILEGED)


def test_privileged_containers_and_host_ports_are_refused_by_baseline_and_restricted() -> None:
    pod = plain_pod()
    pod.spec.containers[0].ports[0].host_port = 22
    pod.spec.containers.add(name="root", image="raftorch/busybox").security_context.privileged = True
    for level in (BASELINE, RESTRICTED):
        message = refusal(hardened(pod), level)
        assert "spec.containers[0].ports[0].hostPort=22" in message
        assert "spec.containers[1].securityContext.privileged=true" in message
    admission.admit(pod, PRIVILEGED)


def test_capabilities_beyond_the_default_set_need_privileged() -> None:
    pod = plain_pod()
    pod.spec.containers[0].security_context.capabilities.add.extend(["CHOWN", "NET_ADMIN", "SYS_ADMIN"])
    assert refusal(pod, BASELINE).endswith("spec.containers[0].securityContext.capabilities.add=[NET_ADMIN, SYS_ADMIN]")
    admission.admit(pod, PRIVILEGED)


def test_a_hardened_pod_passes_restricted_and_may_bind_low_ports() -> None:
    pod = hardened(plain_pod())
    pod.spec.containers[0].security_context.capabilities.add.append("NET_BIND_SERVICE")
    admission.admit(pod, RESTRICTED)
    pod.spec.containers[0].security_context.capabilities.add.append("CHOWN")
    assert refusal(pod, RESTRICTED).endswith("securityContext.capabilities.add=[CHOWN]")


def test_restricted_refuses_root_even_when_the_rest_is_set() -> None:
    pod = hardened(plain_pod())
    pod.spec.containers[0].security_context.run_as_user = 0
    pod.spec.containers[0].security_context.allow_privilege_escalation = True
    message = refusal(pod, RESTRICTED)
    assert "spec.containers[0].securityContext.runAsUser=0" in message
    assert "spec.containers[0].securityContext.allowPrivilegeEscalation must be false" in message


def test_workloads_are_refused_by_their_pod_template() -> None:
    template = objects_pb2.PodTemplateSpec(spec=plain_pod().spec)
    template.spec.host_network = True
    deploy = objects_pb2.Deployment(metadata=objects_pb2.ObjectMeta(name="d"),
                                    spec=objects_pb2.DeploymentSpec(template=template))
    rs = objects_pb2.ReplicaSet(metadata=objects_pb2.ObjectMeta(name="r"),
                                spec=objects_pb2.ReplicaSetSpec(template=template))
    with pytest.raises(PermissionDenied, match=r'^deployments "d" is forbidden: violates pod-security level '
                                               r'"baseline": spec.template.spec.hostNetwork=true$'):
        admission.admit(deploy, BASELINE)
    with pytest.raises(PermissionDenied, match=r'^replicasets "r" is forbidden: .*spec.template.spec.hostNetwork'):
        admission.admit(rs, BASELINE)
    admission.admit(deploy, PRIVILEGED)


def test_jobs_daemon_sets_and_cron_jobs_are_refused_by_their_pod_template() -> None:
    template = objects_pb2.PodTemplateSpec(spec=objects_pb2.PodSpec(host_network=True))
    job = objects_pb2.Job(metadata=objects_pb2.ObjectMeta(name="j"), spec=objects_pb2.JobSpec(template=template))
    ds = objects_pb2.DaemonSet(metadata=objects_pb2.ObjectMeta(name="ds"),
                               spec=objects_pb2.DaemonSetSpec(template=template))
    cron = objects_pb2.CronJob(metadata=objects_pb2.ObjectMeta(name="c"), spec=objects_pb2.CronJobSpec(
        job_template=objects_pb2.JobTemplateSpec(spec=objects_pb2.JobSpec(template=template))))
    with pytest.raises(PermissionDenied, match=r'^jobs "j" is forbidden: .*spec.template.spec.hostNetwork=true$'):
        admission.admit(job, BASELINE)
    with pytest.raises(PermissionDenied, match=r'^daemonsets "ds" is forbidden: .*spec.template.spec.hostNetwork'):
        admission.admit(ds, BASELINE)
    with pytest.raises(PermissionDenied, match=r'^cronjobs "c" is forbidden: .*'
                                               r'spec.jobTemplate.spec.template.spec.hostNetwork=true$'):
        admission.admit(cron, BASELINE)
    for msg in (job, ds, cron):
        admission.admit(msg, PRIVILEGED)


def test_other_kinds_pass() -> None:
    admission.admit(objects_pb2.Service(metadata=objects_pb2.ObjectMeta(name="s")), RESTRICTED)


def node(name: str, runtime: str) -> objects_pb2.Node:
    return objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=name), status=objects_pb2.NodeStatus(runtime=runtime))


def test_a_pod_naming_a_process_runtime_node_needs_a_privileged_namespace() -> None:
    pod = plain_pod()
    pod.spec.node_name = "proc-1"
    with pytest.raises(PermissionDenied, match=r'^pods "web" is forbidden: violates pod-security level "baseline": '
                                               r'spec.nodeName=proc-1 runs pods as host processes'):
        admission.check_node(pod, BASELINE, node("proc-1", "process"))
    admission.check_node(pod, PRIVILEGED, node("proc-1", "process"))
    admission.check_node(pod, RESTRICTED, node("proc-1", "docker"))
    admission.check_node(pod, RESTRICTED, node("hollow-1", "fake"))
    admission.check_node(pod, RESTRICTED, None)
    assert admission.host_processes_allowed(PRIVILEGED)
    assert not admission.host_processes_allowed(BASELINE)


def test_host_path_volumes_need_a_privileged_namespace() -> None:
    pod = plain_pod()
    pod.spec.volumes.add(name="logs", host_path=objects_pb2.HostPathVolumeSource(path="/var/log"))
    assert refusal(pod, BASELINE) == ('pods "web" is forbidden: violates pod-security level "baseline": '
                                      'spec.volumes[0].hostPath=/var/log')
    assert "spec.volumes[0].hostPath=/var/log" in refusal(hardened(pod), RESTRICTED)
    admission.admit(pod, PRIVILEGED)
    pod.spec.ClearField("volumes")
    pod.spec.volumes.add(name="scratch", empty_dir=objects_pb2.EmptyDirVolumeSource())
    admission.admit(pod, BASELINE)
