"""describe: a pod's mounts, volumes and env sources, and a secret's keys and sizes, never values."""

from __future__ import annotations

from typing import Any, cast

from raftorch.api.v1 import objects_pb2
from raftorch.cli.describe import describe_object
from raftorch.client import Client
from raftorch.objects import POD, SECRET


class NoEvents:
    class objects:
        @staticmethod
        def list(kind: str, namespace: str = "") -> tuple[list[Any], int]:
            return [], 0


def test_secret_shows_keys_and_sizes_only() -> None:
    secret = objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name="db", namespace="default"),
                                data={"password": b"hunter2", "user": b"admin"})
    out = describe_object(cast(Client, NoEvents()), SECRET, secret)
    assert "password:" in out and "7 bytes" in out and "5 bytes" in out
    assert "hunter2" not in out and "admin" not in out


def test_pod_shows_mounts_volumes_and_env_references() -> None:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default"), spec=objects_pb2.PodSpec(
        containers=[objects_pb2.Container(
            name="app", image="busybox",
            volume_mounts=[objects_pb2.VolumeMount(name="conf", mount_path="/etc/conf", read_only=True)],
            env=[objects_pb2.EnvVar(name="PASS", value_from=objects_pb2.EnvVarSource(
                secret_key_ref=objects_pb2.KeySelector(name="db", key="password")))])],
        init_containers=[objects_pb2.Container(name="setup", image="busybox")],
        volumes=[objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name="web"))]))
    out = describe_object(cast(Client, NoEvents()), POD, pod)
    assert "Init Containers:" in out and "setup:" in out
    assert "/etc/conf from conf (ro)" in out
    assert "PASS: <set to the key 'password' in secret 'db'>" in out
    assert "ConfigMap (a volume populated by a ConfigMap)" in out
