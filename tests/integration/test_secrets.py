"""Secrets against three real masters: encrypted at rest, readable after restarts, never shown
by describe, and a master with another key refuses to run."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.cli.main import cli
from raftorch.local.masters import LocalMasters
from raftorch.master.encryption import new_key_file_text

pytestmark = pytest.mark.processes

VALUE = "correct-horse-battery-staple"


class Ctl:
    def __init__(self, masters: LocalMasters, root: Path) -> None:
        self.masters, self.root = masters, root
        a = masters.admin
        (root / "config.yaml").write_text(f"ca-file: {a.ca_file}\ncert-file: {a.cert_file}\nkey-file: {a.key_file}\n")

    def run(self, *args: str) -> Result:
        base = ["--endpoints", ",".join(self.masters.endpoints), "--config", str(self.root / "config.yaml")]
        return CliRunner().invoke(cli, [*base, *args])

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, f"raftctl {' '.join(args)}: {result.output}"
        return result.output

    def error(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code != 0, result.output
        assert "Traceback" not in result.output
        [line] = result.output.strip().splitlines()
        return line


@pytest.fixture()
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    masters = LocalMasters(tmp_path / "masters")
    masters.start()
    try:
        masters.wait_ready()
        yield Ctl(masters, tmp_path)
    finally:
        masters.kill()


def test_secret_is_ciphertext_in_the_store_and_survives_a_restart_of_every_master(ctl: Ctl, tmp_path: Path) -> None:
    key_file = tmp_path / "tls.key"
    key_file.write_bytes(b"\x00\x01binary-key\xff")
    out = ctl.ok("create", "secret", "generic", "db", f"--from-literal=password={VALUE}", f"--from-file={key_file}")
    assert out == "secret/db created\n"
    raw = ctl.ok("kv", "get", "/registry/secrets/default/db")
    assert VALUE not in raw and "password" not in raw and "binary-key" not in raw
    described = ctl.ok("describe", "secret", "db")
    assert "password:" in described and f"{len(VALUE)} bytes" in described and VALUE not in described
    assert ctl.ok("get", "secrets").split("\n")[1].split()[:3] == ["db", "Opaque", "2"]

    ctl.masters.stop()
    ctl.masters.start()
    ctl.masters.wait_ready()
    stored = json.loads(ctl.ok("get", "secret", "db", "-o", "json"))
    assert base64.b64decode(stored["data"]["password"]).decode() == VALUE
    assert base64.b64decode(stored["data"]["tls.key"]) == b"\x00\x01binary-key\xff"
    for m in ctl.masters.masters.values():
        assert VALUE.encode() not in b"".join(p.read_bytes() for p in m.data_dir.rglob("*") if p.is_file())


def test_master_with_another_key_file_refuses_to_start(ctl: Ctl, tmp_path: Path) -> None:
    ctl.ok("create", "secret", "generic", "api", f"--from-literal=token={VALUE}")
    wrong = tmp_path / "wrong-keys.yaml"
    wrong.write_text(new_key_file_text())
    ctl.masters.stop("m3")
    ctl.masters.start("m3", encryption_key_file=wrong)
    proc = ctl.masters.masters["m3"].proc
    assert proc is not None
    assert proc.wait(timeout=60) != 0
    log = ctl.masters.masters["m3"].log_path.read_text()
    assert "raftorch-master: encryption-key-file:" in log
    assert "does not decrypt with key 'key1'" in log
    assert VALUE not in log


def test_bad_secrets_are_refused_with_field_paths(ctl: Ctl, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    assert "larger than the limit of 1048576 bytes" in ctl.error("create", "secret", "generic", "big",
                                                                 f"--from-file={big}")
    manifest = tmp_path / "s.yaml"
    manifest.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\nstringData:\n  a/b: x\n")
    assert 'data["a/b"]' in ctl.error("apply", "-f", str(manifest))
    manifest.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: good}\nstringData:\n  user: admin\n")
    assert ctl.ok("apply", "-f", str(manifest)) == "secret/good created\n"


def test_claims_apply_and_show_in_get_pvc(ctl: Ctl, tmp_path: Path) -> None:
    manifest = tmp_path / "pvc.yaml"
    manifest.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\n"
                        "spec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 1Gi}\n")
    assert ctl.ok("apply", "-f", str(manifest)) == "persistentvolumeclaim/data created\n"
    header, row = ctl.ok("get", "pvc").splitlines()
    assert header.split()[:4] == ["NAME", "STATUS", "NODE", "CAPACITY"]
    assert row.split()[:5] == ["data", "Pending", "<none>", "1Gi", "RWO"]
    manifest.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\n"
                        "spec:\n  accessModes: [WriteSometimes]\n")
    assert "spec.accessModes[0]" in ctl.error("apply", "-f", str(manifest))
