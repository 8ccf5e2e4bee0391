"""Bad volumes, mounts and env sources are refused with their field paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import apply_defaults, validate
from raftorch.objects.manifest import from_manifest


def pod(*, mounts: Sequence[objects_pb2.VolumeMount] = (), volumes: Sequence[objects_pb2.Volume] = (),
        env: Sequence[objects_pb2.EnvVar] = ()) -> objects_pb2.Pod:
    p = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default"), spec=objects_pb2.PodSpec(
        containers=[objects_pb2.Container(name="c", image="busybox", volume_mounts=mounts, env=env)],
        volumes=volumes))
    apply_defaults(p)
    return p


def problem(p: objects_pb2.Pod) -> str:
    with pytest.raises(Invalid) as info:
        validate(p)
    return info.value.message


EMPTY = objects_pb2.Volume(name="data", empty_dir=objects_pb2.EmptyDirVolumeSource())


def test_a_good_pod_with_volumes_passes() -> None:
    validate(pod(volumes=[EMPTY, objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(
        name="web", default_mode=0o440, items=[objects_pb2.KeyToPath(key="k", path="dir/k.conf")]))],
        mounts=[objects_pb2.VolumeMount(name="data", mount_path="/data", sub_path="sub/dir"),
                objects_pb2.VolumeMount(name="conf", mount_path="/etc/conf", read_only=True)]))


def test_a_mount_naming_no_volume() -> None:
    assert 'spec.containers[0].volumeMounts[0].name: no volume named "nope"' in problem(
        pod(mounts=[objects_pb2.VolumeMount(name="nope", mount_path="/x")]))


@pytest.mark.parametrize("sub_path", ["../etc", "a/../../b", "/abs"])
def test_sub_path_may_not_leave_the_volume(sub_path: str) -> None:
    assert "spec.containers[0].volumeMounts[0].subPath" in problem(
        pod(volumes=[EMPTY], mounts=[objects_pb2.VolumeMount(name="data", mount_path="/d", sub_path=sub_path)]))


def test_items_paths_modes_and_sources() -> None:
    bad_item = objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(
        name="web", items=[objects_pb2.KeyToPath(key="k", path="../k")], default_mode=0o1777))
    message = problem(pod(volumes=[bad_item]))
    assert "spec.volumes[0].configMap.items[0].path" in message
    assert "spec.volumes[0].configMap.defaultMode" in message
    assert "spec.volumes[0]: exactly one of" in problem(pod(volumes=[objects_pb2.Volume(name="none")]))
    assert "spec.volumes[0].emptyDir.medium" in problem(pod(volumes=[objects_pb2.Volume(
        name="m", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Disk"))]))
    assert "spec.volumes[1].name: duplicate name" in problem(pod(volumes=[EMPTY, EMPTY]))


def test_env_sources_need_one_reference_with_a_key() -> None:
    env = objects_pb2.EnvVar(name="X", value_from=objects_pb2.EnvVarSource(
        config_map_key_ref=objects_pb2.KeySelector(name="web")))
    assert "spec.containers[0].env[0].valueFrom.configMapKeyRef.key: required" in problem(pod(env=[env]))


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("manifest", ["guestbook/redis-leader.yaml", "nginx-configmap.yaml"])
def test_kubernetes_manifests_with_volumes_parse_and_validate_unchanged(manifest: str) -> None:
    """The manifests in examples/ (they also run on real Docker: test_upstream_manifests_docker)."""
    kinds = []
    for doc in yaml.safe_load_all((EXAMPLES / manifest).read_text()):
        obj = from_manifest(doc)
        apply_defaults(obj)
        validate(obj)
        kinds.append(doc["kind"])
    assert "Deployment" in kinds and "Service" in kinds


def test_init_containers_are_checked_like_containers_and_have_no_probes() -> None:
    p = pod(volumes=[EMPTY])
    p.spec.init_containers.add(name="c", image="busybox")  # the app container's name
    p.spec.init_containers.add(name="setup", image="busybox", volume_mounts=[
        objects_pb2.VolumeMount(name="nope", mount_path="/x")],
        readiness_probe=objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["true"])))
    message = problem(p)
    assert 'spec.initContainers[0].name: duplicate name "c"' in message
    assert 'spec.initContainers[1].volumeMounts[0].name: no volume named "nope"' in message
    assert "spec.initContainers[1].readinessProbe: init containers run to completion" in message
