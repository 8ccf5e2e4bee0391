"""ConfigMaps: Kubernetes' manifest shape, key rules, the 1 MiB bound, and raftctl's creation flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.cli.create import config_entries
from raftorch.errors import Invalid
from raftorch.objects import MAX_OBJECT_BYTES, kind_of, validate
from raftorch.objects.manifest import from_manifest


def config_map(**data: str) -> objects_pb2.ConfigMap:
    return objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name="cfg", namespace="default"), data=data)


def test_kubernetes_manifest_shape_is_accepted() -> None:
    msg = from_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nginx-conf"},
                         "data": {"default.conf": "server { listen 80; }\n"}, "binaryData": {"b": "AAE="}})
    assert isinstance(msg, objects_pb2.ConfigMap)
    assert msg.data["default.conf"].startswith("server")
    assert msg.binary_data["b"] == b"\x00\x01"
    assert kind_of("cm").name == kind_of("configmaps").name == "ConfigMap"
    validate(msg)


@pytest.mark.parametrize("key", ["a/b", "..", ".", "sp ace", ""])
def test_keys_that_are_no_file_names_are_refused_with_their_path(key: str) -> None:
    with pytest.raises(Invalid, match=r"data\["):
        validate(config_map(**{key: "v"}))


def test_a_key_in_both_data_and_binary_data_is_refused() -> None:
    cm = config_map(k="v")
    cm.binary_data["k"] = b"x"
    with pytest.raises(Invalid, match=r"binaryData\[\"k\"\]: the key is also in data"):
        validate(cm)


def test_more_than_one_mebibyte_is_refused() -> None:
    with pytest.raises(Invalid, match="larger than the limit of 1048576 bytes"):
        validate(config_map(a="x" * (MAX_OBJECT_BYTES // 2), b="y" * (MAX_OBJECT_BYTES // 2)))


def test_creation_flags(tmp_path: Path) -> None:
    conf = tmp_path / "default.conf"
    conf.write_text("listen 80;\n")
    blob = tmp_path / "blob"
    blob.write_bytes(b"\xff\xfe")
    entries = config_entries(("mode=fast", "empty="), (str(conf), f"raw={blob}"))
    assert entries == {"mode": "fast", "empty": "", "default.conf": "listen 80;\n", "raw": b"\xff\xfe"}
    with pytest.raises(Invalid, match="expected KEY=VALUE"):
        config_entries(("novalue",), ())
    with pytest.raises(Invalid, match="given twice"):
        config_entries(("default.conf=x",), (str(conf),))
    with pytest.raises(Invalid, match="cannot read"):
        config_entries((), (str(tmp_path / "missing"),))
