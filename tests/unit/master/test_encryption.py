"""Secrets sealed with the masters' key: what is stored, what opens, what the key file may hold."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Conflict, Invalid
from raftorch.master.encryption import SecretBox, load_key_file, new_key_file_text

KEY = "/registry/secrets/default/db"


def secret() -> objects_pb2.Secret:
    return objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name="db", namespace="default"),
                              data={"password": b"s3cr3t-value"}, type="Opaque")


def key_file(tmp_path: Path, name: str = "k.yaml") -> Path:
    path = tmp_path / name
    path.write_text(new_key_file_text())
    return path


def test_sealed_secret_holds_no_plaintext_and_opens_with_the_key(tmp_path: Path) -> None:
    box = load_key_file(key_file(tmp_path))
    stored = box.seal(secret(), KEY)
    raw = stored.SerializeToString()
    assert b"s3cr3t-value" not in raw and b"password" not in raw
    assert stored.metadata.name == "db" and not stored.data and stored.sealed.key_name == "key1"
    box.open(stored, KEY)
    assert dict(stored.data) == {"password": b"s3cr3t-value"} and not stored.HasField("sealed")


def test_another_key_or_another_name_does_not_open_it(tmp_path: Path) -> None:
    stored = load_key_file(key_file(tmp_path, "a.yaml")).seal(secret(), KEY)
    with pytest.raises(Conflict, match="does not decrypt with key 'key1'"):
        load_key_file(key_file(tmp_path, "b.yaml")).open(stored, KEY)
    box = load_key_file(tmp_path / "a.yaml")
    with pytest.raises(Conflict):
        box.open(stored, "/registry/secrets/default/other")  # moved under another name


def test_rotation_the_first_key_seals_every_key_opens(tmp_path: Path) -> None:
    old = key_file(tmp_path, "old.yaml")
    stored = load_key_file(old).seal(secret(), KEY)
    new_secret = base64.b64encode(b"n" * 32).decode()
    old_entry = old.read_text().split("keys:\n", 1)[1]
    rotated = tmp_path / "rotated.yaml"
    rotated.write_text(f"keys:\n  - name: key2\n    secret: {new_secret}\n{old_entry}")
    box = load_key_file(rotated)
    assert box.seal(secret(), KEY).sealed.key_name == "key2"
    box.open(stored, KEY)
    assert stored.data["password"] == b"s3cr3t-value"
    with pytest.raises(Conflict, match="does not hold"):
        SecretBox(keys=(("key2", b"n" * 32),)).open(load_key_file(old).seal(secret(), KEY), KEY)


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected one mapping `keys:`"),
    ("keys: []\n", "expected one mapping `keys:`"),
    ("keys:\n  - name: a\n", "keys[0]: expected exactly `name` and `secret`"),
    ("keys:\n  - name: a\n    secret: '%%%'\n", "keys[0].secret: not base64"),
    ("keys:\n  - name: a\n    secret: " + base64.b64encode(b"x" * 16).decode() + "\n", "AES-256-GCM needs 32"),
    ("keys:\n  - name: ''\n    secret: " + base64.b64encode(b"x" * 32).decode() + "\n", "keys[0].name"),
    (": : :\n", "not YAML"),
])
def test_bad_key_files_are_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(Invalid, match=re.escape(message)) as err:
        load_key_file(path)
    assert str(path) in str(err.value)


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="cannot read it"):
        load_key_file(tmp_path / "absent.yaml")
