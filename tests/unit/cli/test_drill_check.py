"""`raftctl drill check FILE`: the verdict on a recorded history, as an exit code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.cli.main import cli

JEPSEN = Path(os.environ.get("RAFTORCH_JEPSEN_DIR") or Path(__file__).resolve().parents[3] / ".." / "shared"
              / "jepsen-etcd")
STALE = (
    "INFO  jepsen.util - 0 :invoke :write 1\n"
    "INFO  jepsen.util - 0 :ok :write 1\n"
    "INFO  jepsen.util - 0 :invoke :write 2\n"
    "INFO  jepsen.util - 0 :ok :write 2\n"
    "INFO  jepsen.util - 1 :invoke :read nil\n"
    "INFO  jepsen.util - 1 :ok :read 1\n"
)


def check(*args: str) -> Result:
    return CliRunner().invoke(cli, ["drill", "check", *args])


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_history_written_with_spaces_is_not_linearizable(tmp_path: Path) -> None:
    result = check(write(tmp_path, "stale.log", STALE))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("not-linearizable: ")


def test_a_linearizable_history(tmp_path: Path) -> None:
    result = check(write(tmp_path, "ok.log", STALE.replace(":ok :read 1", ":ok :read 2")), "--format", "jepsen")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("linearizable: ")


def test_a_jsonl_history(tmp_path: Path) -> None:
    text = ('{"process": 0, "kind": "write", "key": "k", "value": "a", "call": 1, "ret": 2, "status": "ok"}\n'
            '{"process": 1, "kind": "read", "key": "k", "output": null, "call": 3, "ret": 4, "status": "ok"}\n')
    path = write(tmp_path, "h.jsonl", text)
    assert check(path, "--format", "jsonl").exit_code == 1
    assert check(path).exit_code == 1
    assert check(write(tmp_path, "g.jsonl", text.replace("null", '"a"')), "-o", "json").exit_code == 0


@pytest.mark.parametrize(("text", "message"), [
    ("", "no operations"),
    ("INFO  jepsen.util - 0 :invoke :write 1\nhello\n", "line 2: not a Jepsen operation"),
    (STALE, "line 1: not JSON"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    args = [write(tmp_path, "bad.log", text)] + (["--format", "jsonl"] if "JSON" in message else [])
    result = check(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = check(str(tmp_path / "nope.log"))
    assert result.exit_code == 2
    assert "No such file" in result.output


def test_unknown_when_the_time_limit_is_reached(tmp_path: Path) -> None:
    # Many concurrent writes that never completed and a read no order explains: a big search.
    lines = [f"INFO  jepsen.util - {p} :invoke :write {p}\n" for p in range(40)]
    lines += ["INFO  jepsen.util - 99 :invoke :read nil\n", "INFO  jepsen.util - 99 :ok :read 1000\n"]
    result = check(write(tmp_path, "big.log", "".join(lines)), "--timeout", "0.1")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("unknown: ")


@pytest.mark.skipif(not (JEPSEN / "VERDICTS").exists(), reason="the Jepsen etcd histories are not here")
def test_agrees_with_the_published_verdicts_of_jepsen_etcd_histories() -> None:
    verdicts = dict(line.split() for line in (JEPSEN / "VERDICTS").read_text().splitlines() if line.strip())
    for name, expected in sorted(verdicts.items())[:10]:
        result = check(str(JEPSEN / name))
        assert result.exit_code == {"linearizable": 0, "not-linearizable": 1}[expected], (name, result.output)
