"""Recorded histories on disk: the drills' own JSON lines, and Jepsen/Knossos logs.

A JSON-lines history has one operation per line, as the drills write it:

    {"process": 3, "kind": "cas", "key": "k1", "value": ["a", "b"], "output": null,
     "call": 1200, "ret": 1450, "status": "ok"}

`kind` is read, write or cas; `value` the written value or the cas [old, new]; `output` what a
read returned; `call` and `ret` are times (any unit, one clock); `ret` is null for an operation
that never completed; `status` is ok, fail or info (outcome unknown).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from raftorch.drill.linearizability import HistoryError, Operation, bad_line, parse_jepsen_lines

Format = Literal["jsonl", "jepsen", "auto"]
FIELDS = ("process", "kind", "key", "value", "output", "call", "ret", "status")


def to_json(op: Operation) -> str:
    return json.dumps({name: getattr(op, name) for name in FIELDS}, separators=(",", ":"))


def write_jsonl(ops: Iterable[Operation], path: Path) -> int:
    """Write a history; returns how many operations were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for op in ops:
            out.write(to_json(op) + "\n")
            count += 1
    return count


def parse_jsonl_lines(lines: Iterable[str]) -> list[Operation]:
    """Operations of a JSON-lines history; HistoryError names any line that is not one, and
    an empty history is an error too (it gets no verdict)."""
    ops: list[Operation] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise bad_line(number, line, f"not JSON ({exc.msg})") from None
        except ValueError:
            raise bad_line(number, line, "not JSON") from None
        if not isinstance(record, dict):
            raise bad_line(number, line, "expected an object with " + ", ".join(FIELDS))
        missing = [name for name in ("process", "kind", "key", "call", "status") if name not in record]
        unknown = sorted(set(record) - set(FIELDS))
        if missing or unknown:
            why = f"missing {', '.join(missing)}" if missing else f"unknown field {', '.join(unknown)}"
            raise bad_line(number, line, why)
        value = record.get("value")
        if record["kind"] == "cas" and isinstance(value, list):
            value = tuple(value)
        for name in ("call", "ret"):
            when = record.get(name)
            if (when is not None or name == "call") and (isinstance(when, bool) or not isinstance(when, int | float)):
                raise bad_line(number, line, f"{name} must be a number" + (" or null" if name == "ret" else ""))
        if not isinstance(record["key"], str) or not isinstance(record["process"], int | str):
            raise bad_line(number, line, "key must be a string and process a number or a string")
        try:
            ops.append(Operation(record["process"], record["kind"], record["key"], value, record.get("output"),
                                 record["call"], record.get("ret"), record["status"]))
        except (ValueError, TypeError) as exc:
            raise bad_line(number, line, str(exc)) from None
    if not ops:
        raise HistoryError("the history has no operations: nothing to check")
    ops.sort(key=lambda op: op.call)
    return ops


def detect_format(path: Path) -> Literal["jsonl", "jepsen"]:
    """JSON lines when the first non-blank line is a JSON object, else a Jepsen log."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "jepsen"
    return "jepsen"


def read_history(path: Path, fmt: Format = "auto") -> list[Operation]:
    try:
        chosen = detect_format(path) if fmt == "auto" else fmt
        with path.open(encoding="utf-8", errors="replace") as handle:
            if chosen == "jsonl":
                return parse_jsonl_lines(handle)
            return parse_jepsen_lines(handle)
    except OSError as exc:
        raise HistoryError(f"{path}: {exc.strerror or exc}") from None
    except HistoryError as err:
        raise HistoryError(f"{path}: {err.message}") from None
