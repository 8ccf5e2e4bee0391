"""A pod's volumes and env sources: what resolve_pod reads, and files swapped in atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agent_sim import CONFIG, Node, make_pod, starts

from raftorch.agent.runtime.base import Mount
from raftorch.agent.volumes import PodInputs, referenced, resolve_pod, write_atomically
from raftorch.api.v1 import objects_pb2

STORE: dict[tuple[str, str], Mapping[str, bytes]] = {
    ("ConfigMap", "web"): {"greeting": b"hello", "mode": b"fast"},
    ("Secret", "db"): {"password": b"hunter2", "user": b"admin"},
}


def lookup(kind: str, name: str) -> Mapping[str, bytes] | None:
    return STORE.get((kind, name))


def pod_with(container: objects_pb2.Container, *volumes: objects_pb2.Volume) -> objects_pb2.Pod:
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"),
                           spec=objects_pb2.PodSpec(containers=[container], volumes=list(volumes)))


def test_env_from_comes_first_and_env_overrides_it() -> None:
    c = objects_pb2.Container(name="app", env_from=[
        objects_pb2.EnvFromSource(secret_ref=objects_pb2.ObjectRef(name="db"), prefix="DB_")], env=[
        objects_pb2.EnvVar(name="DB_user", value="root"),
        objects_pb2.EnvVar(name="MODE", value_from=objects_pb2.EnvVarSource(
            config_map_key_ref=objects_pb2.KeySelector(name="web", key="mode"))),
        objects_pb2.EnvVar(name="GONE", value_from=objects_pb2.EnvVarSource(
            config_map_key_ref=objects_pb2.KeySelector(name="absent", key="x", optional=True)))])
    resolved = resolve_pod(pod_with(c), lookup)
    assert resolved.problem == ""
    assert dict(resolved.env["app"]) == {"DB_password": "hunter2", "DB_user": "root", "MODE": "fast"}
    assert referenced(pod_with(c)) == {("Secret", "db"), ("ConfigMap", "web"), ("ConfigMap", "absent")}


def test_missing_object_or_key_makes_the_pod_wait_naming_it() -> None:
    c = objects_pb2.Container(name="app")
    vol = objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name="nope"))
    assert resolve_pod(pod_with(c, vol), lookup).problem == 'configmap "nope" not found'
    c.env.add(name="X", value_from=objects_pb2.EnvVarSource(
        secret_key_ref=objects_pb2.KeySelector(name="db", key="missing")))
    assert resolve_pod(pod_with(c), lookup).problem == \
        'container app: env X: key "missing" not found in secret "db"'


def test_items_choose_keys_paths_and_modes() -> None:
    vol = objects_pb2.Volume(name="creds", secret=objects_pb2.SecretVolumeSource(
        secret_name="db", default_mode=0o400, items=[
            objects_pb2.KeyToPath(key="password", path="app/pass"),
            objects_pb2.KeyToPath(key="user", path="user.txt", mode=0o440)]))
    [plan] = resolve_pod(pod_with(objects_pb2.Container(name="app"), vol), lookup).volumes
    assert plan.files == {"app/pass": (b"hunter2", 0o400), "user.txt": (b"admin", 0o440)}


def test_files_are_swapped_in_by_one_rename(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    assert write_atomically(d, {"a": (b"1", 0o644), "b": (b"2", 0o400)})
    assert not write_atomically(d, {"a": (b"1", 0o644), "b": (b"2", 0o400)})  # unchanged: nothing written
    first = os.readlink(d / "..data")
    assert (d / "a").read_bytes() == b"1" and oct((d / "b").stat().st_mode & 0o777) == "0o400"
    assert write_atomically(d, {"a": (b"changed", 0o644)})
    assert (d / "a").read_bytes() == b"changed" and not (d / "b").exists()
    assert os.readlink(d / "..data") != first and not (d / first).exists()
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith("..")) == ["a"]


def test_containers_wait_while_their_pod_inputs_are_missing_and_start_with_them() -> None:
    pod = make_pod(containers=("a",))
    node = Node([pod], CONFIG)
    waiting = {pod.metadata.uid: PodInputs(problem='configmap "web" not found')}
    plan = node.step(inputs=waiting)
    assert starts(plan) == []
    [cs] = node.status(pod).container_statuses
    assert (cs.state.reason, cs.state.message) == ("CreateContainerConfigError", 'configmap "web" not found')
    ready = {pod.metadata.uid: PodInputs(env={"a": (("K", "v"),)}, mounts={"a": (Mount("/h/conf", "/conf", True),)})}
    [start] = starts(node.step(1, inputs=ready))
    assert start.spec.env == (("K", "v"),) and start.spec.mounts == (Mount("/h/conf", "/conf", True),)
