"""raftctl reads manifests within bounds: alias expansion, nesting depth and file size each
get one clear error and exit code 2 (a 6 KB alias bomb cost 7 s and 368 MB; deep nesting
ended in `internal error: RecursionError`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.api.v1 import objects_pb2
from raftorch.cli import files
from raftorch.cli.main import cli
from raftorch.objects import manifest

POD_HEAD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\n"


def alias_bomb(fan: int = 700) -> str:
    """700 containers, each with the same 700 env entries: 490,000 entries in 4 KB. Anchored
    under `status`, which is dropped before the walk, so the expansion is all in the spec (on
    main this cost 7 s and 240 MB before an error)."""
    return ("apiVersion: v1\nkind: Pod\nstatus:\n  v: &v {name: V, value: x}\n"
            "  e: &e [" + ",".join(["*v"] * fan) + "]\n  c: &c {name: c, image: b, env: *e}\n"
            "metadata:\n  name: bomb\nspec:\n  containers: [" + ",".join(["*c"] * fan) + "]\n")


def nested_bomb(levels: int = 9, fan: int = 9) -> str:
    """Each level a list of `fan` aliases of the one before: fan**levels strings in 1 KB."""
    anchors = ["  x0: &x0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for level in range(1, levels):
        anchors.append(f"  x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * fan) + "]")
    return ("apiVersion: v1\nkind: Pod\nstatus:\n" + "\n".join(anchors) + "\n" + "metadata:\n  name: bomb\n"
            f"spec:\n  containers:\n  - name: c\n    image: busybox\n    command: *x{levels - 1}\n")


def apply(tmp_path: Path, *args: str, input: str | None = None) -> Result:
    # Port 1 answers nothing: a test that reached the network would fail with "no master answered".
    base = ["--endpoints", "127.0.0.1:1", "--config", str(tmp_path / "none")]
    return CliRunner().invoke(cli, [*base, "apply", *args], input=input)


def one_error(result: Result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], result.output


@pytest.mark.parametrize("bomb", [alias_bomb(), nested_bomb()], ids=["wide", "nested"])
def test_an_alias_bomb_is_refused(tmp_path: Path, bomb: str) -> None:
    assert len(bomb) < 6 * 1024
    (tmp_path / "bomb.yaml").write_text(bomb)
    one_error(apply(tmp_path, "-f", str(tmp_path / "bomb.yaml")), "bomb.yaml", "document too large", "aliases")


def test_a_recursive_alias_is_refused_without_recursing(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text(POD_HEAD + "  labels: &l\n    a: *l\n")
    result = apply(tmp_path, "-f", str(tmp_path / "loop.yaml"))
    assert result.exit_code == 2, result.output
    assert "RecursionError" not in result.output


@pytest.mark.parametrize("depth", [150, 5000, 100_000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    (tmp_path / "deep.yaml").write_text(POD_HEAD + "  labels: " + "[" * depth + "]" * depth + "\n")
    one_error(apply(tmp_path, "-f", str(tmp_path / "deep.yaml")), "deep.yaml", "line 5",
              f"nested more than {manifest.MAX_DEPTH} levels deep")


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    text = POD_HEAD + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300))
    (tmp_path / "deep.yaml").write_text(text)
    one_error(apply(tmp_path, "-f", str(tmp_path / "deep.yaml")), "nested more than")


def test_a_file_too_large_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(POD_HEAD + "#" * (files.MAX_FILE_BYTES + 1))
    one_error(apply(tmp_path, "-f", str(big)), "big.yaml", "more than 4 MiB")


def test_stdin_too_large_is_refused(tmp_path: Path) -> None:
    one_error(apply(tmp_path, "-f", "-", input=POD_HEAD + "#" * (files.MAX_FILE_BYTES + 1)), "<stdin>", "4 MiB")


def test_ordinary_anchors_still_work(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: &labels {app: web}\n"
        "spec:\n  replicas: 2\n  selector:\n    matchLabels: *labels\n  template:\n    metadata:\n"
        "      labels: *labels\n    spec:\n      containers:\n      - name: web\n        image: nginx\n")
    [loaded] = files.load([str(path)])
    assert isinstance(loaded.object, objects_pb2.Deployment)
    assert dict(loaded.object.spec.template.metadata.labels) == {"app": "web"}


def test_a_large_document_within_the_bounds_loads() -> None:
    env = "".join(f"    - name: V{i}\n      value: v{i}\n" for i in range(5000))
    docs = manifest.load_documents(POD_HEAD + "spec:\n  containers:\n  - name: c\n    image: b\n    env:\n" + env)
    assert len(docs[0]["spec"]["containers"][0]["env"]) == 5000
