"""Linearizability checking for histories of single-register operations.

The checker is the Wing & Gong depth-first search over a time-ordered list of
call/return events, with Lowe's memoization: a search state is fully described
by the set of operations already linearized plus the register value, so every
such pair is explored at most once.  Linearizability is compositional per
object (Herlihy & Wing), so each key is checked on its own sub-history.

Semantics of operation outcomes (as in Knossos):

* ``ok``   -- the operation took effect exactly once, between call and return.
* ``fail`` -- the operation had no effect; it is dropped.  For ``cas`` this is
  how Jepsen records a failed compare.
* ``info`` -- the outcome is unknown: the operation may take effect at any
  time after its call (even after the ``info`` response), or never.  Its
  ``ret`` is therefore ignored and treated as +infinity.

Register model: ``None`` means absent; ``read`` returns the current value;
``write`` sets it; ``cas`` with value ``(old, new)`` sets ``new`` only if the
current value equals ``old``.  Values are compared with ``==``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Final, Literal, TypeAlias

from raftorch.errors import Invalid

__all__ = [
    "CheckResult",
    "HistoryError",
    "HistoryRecorder",
    "Kind",
    "Operation",
    "Status",
    "Verdict",
    "check_history",
    "parse_jepsen_lines",
    "parse_jepsen_log",
]

Kind: TypeAlias = Literal["read", "write", "cas"]
Status: TypeAlias = Literal["ok", "fail", "info"]
Verdict: TypeAlias = Literal["linearizable", "not-linearizable", "unknown"]
Time: TypeAlias = float | int

_KINDS: Final = ("read", "write", "cas")
_STATUSES: Final = ("ok", "fail", "info")


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key.

    ``value`` is the written value for ``write``, the pair ``(old, new)`` for
    ``cas`` and unused for ``read``; ``output`` is the value a ``read``
    returned.  ``ret`` is ``None`` when the operation never completed; for
    status ``info`` it is informational only.
    """

    process: int | str
    kind: Kind
    key: str
    value: object
    output: object
    call: Time
    ret: Time | None
    status: Status

    def __post_init__(self) -> None:
        # Validate eagerly: a malformed op silently changing a verdict is worse
        # than an exception at the point where it was built.
        if self.kind not in _KINDS:
            raise ValueError(f"unknown operation kind {self.kind!r}")
        if self.status not in _STATUSES:
            raise ValueError(f"unknown operation status {self.status!r}")
        if self.kind == "cas" and not (
            isinstance(self.value, tuple | list) and len(self.value) == 2
        ):
            raise ValueError(
                f"cas value must be an (old, new) pair, got {self.value!r}"
            )
        if self.status == "ok" and self.ret is None:
            raise ValueError("an ok operation needs a return time")
        if self.ret is not None and self.ret < self.call:
            raise ValueError(
                f"operation returns ({self.ret}) before its call ({self.call})"
            )

    def describe(self) -> str:
        """A short human-readable rendering, e.g. ``process 3 read -> 0``."""
        if self.kind == "read":
            what = f"read -> {self.output!r}" if self.status == "ok" else "read"
        elif self.kind == "write":
            what = f"write {self.value!r}"
        else:
            old, new = self._cas_pair()
            what = f"cas {old!r} -> {new!r}"
        ret = "never" if self.status == "info" or self.ret is None else str(self.ret)
        return (
            f"process {self.process} {what} on {self.key!r} "
            f"[{self.status}, call {self.call}, return {ret}]"
        )

    def _cas_pair(self) -> tuple[object, object]:
        assert isinstance(self.value, tuple | list)
        return self.value[0], self.value[1]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of :func:`check_history`.

    ``verdict`` is ``"unknown"`` only when a time limit stopped the search;
    ``linearizable`` is then False, so callers that need a proof must also
    look at ``unknown``.  For a violation, ``key`` names the offending key and
    ``operation`` the operation no linearization could place.
    """

    verdict: Verdict
    key: str | None = None
    explanation: str = ""
    operation: Operation | None = None

    @property
    def linearizable(self) -> bool:
        return self.verdict == "linearizable"

    @property
    def unknown(self) -> bool:
        return self.verdict == "unknown"


def check_history(
    ops: Iterable[Operation], *, timeout: float | None = None
) -> CheckResult:
    """Decide whether a history of register operations is linearizable.

    Keys are independent registers, each initially ``None``; the history is
    linearizable iff every key's sub-history is.  ``timeout`` (seconds, for
    the whole history) bounds the search; hitting it yields verdict
    ``"unknown"``, never a guess.
    """
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    deadline = None if timeout is None else time.monotonic() + timeout
    gave_up: CheckResult | None = None
    for key in sorted(by_key):
        result = _check_key(key, by_key[key], deadline)
        if result.verdict == "not-linearizable":
            return result
        if result.unknown:
            gave_up = result
            break
    if gave_up is not None:
        return gave_up
    total = sum(len(key_ops) for key_ops in by_key.values())
    return CheckResult(
        "linearizable",
        explanation=f"all {len(by_key)} key(s) linearizable ({total} operations)",
    )


class _Interner:
    """Maps register values to small ints so the search compares ints only."""

    def __init__(self) -> None:
        self._hashed: dict[object, int] = {}
        self._unhashable: list[tuple[object, int]] = []
        self._count = 0

    def id(self, value: object) -> int:
        try:
            found = self._hashed.get(value)
        except TypeError:
            # Unhashable values (lists, dicts) still compare by ==; they are
            # rare, so a linear scan is acceptable.
            for known, ident in self._unhashable:
                if known == value:
                    return ident
            self._unhashable.append((value, self._count))
        else:
            if found is not None:
                return found
            self._hashed[value] = self._count
        self._count += 1
        return self._count - 1


_ANY: Final = -1  # guard that accepts every state (write)
_CHECK_EVERY: Final = 1 << 12  # search steps between deadline checks


def _check_key(key: str, ops: list[Operation], deadline: float | None) -> CheckResult:
    # A failed op had no effect, and an unknown read constrains nothing
    # (it may be placed anywhere or omitted), so neither takes part.
    live = [
        op
        for op in ops
        if op.status != "fail" and not (op.status == "info" and op.kind == "read")
    ]
    values = _Interner()
    initial = values.id(None)
    # Each op becomes "if state == guard (or guard is _ANY): state = result".
    guard: list[int] = []
    result: list[int] = []
    for op in live:
        if op.kind == "read":
            out = values.id(op.output)
            guard.append(out)
            result.append(out)
        elif op.kind == "write":
            guard.append(_ANY)
            result.append(values.id(op.value))
        else:
            old, new = op._cas_pair()
            guard.append(values.id(old))
            result.append(values.id(new))

    # Events sorted by time; at equal times calls sort before returns so the
    # two operations count as concurrent (never a false violation).
    events: list[tuple[Time, int, int]] = []
    for index, op in enumerate(live):
        events.append((op.call, 0, index))
        if op.status == "ok":
            assert op.ret is not None
            events.append((op.ret, 1, index))
    events.sort()

    # Doubly linked circular list over entries 1..n with sentinel 0, so that
    # lifting an op out and putting it back (on backtrack) is O(1).
    n = len(events)
    nxt = [*range(1, n + 1), 0]
    prv = [n, *range(n)]
    is_call = [False] * (n + 1)
    entry_op = [0] * (n + 1)
    match = [0] * (n + 1)  # call entry -> its return entry, 0 if unknown op
    call_entry = [0] * len(live)
    for position, (_, is_return, index) in enumerate(events, start=1):
        entry_op[position] = index
        if is_return:
            match[call_entry[index]] = position
        else:
            is_call[position] = True
            call_entry[index] = position
    bit = [1 << i for i in range(len(live))]

    remaining = sum(1 for op in live if op.status == "ok")
    state = initial
    linearized = 0
    stack_entry: list[int] = []
    stack_state: list[int] = []
    seen: set[tuple[int, int]] = {(0, initial)}
    deepest = 0
    furthest = 0  # latest return entry the search ever got stuck at
    steps = 0
    entry = nxt[0]
    while remaining:
        steps += 1
        if (
            deadline is not None
            and steps % _CHECK_EVERY == 0
            and time.monotonic() > deadline
        ):
            return CheckResult(
                "unknown",
                key=key,
                explanation=(
                    f"key {key!r}: time limit reached after {steps} search steps "
                    f"({len(seen)} states); no verdict"
                ),
            )
        if is_call[entry]:
            index = entry_op[entry]
            g = guard[index]
            if g in (_ANY, state):
                new_state = result[index]
                new_linearized = linearized | bit[index]
                memo = (new_linearized, new_state)
                if memo not in seen:
                    seen.add(memo)
                    stack_entry.append(entry)
                    stack_state.append(state)
                    state = new_state
                    linearized = new_linearized
                    before, after = prv[entry], nxt[entry]
                    nxt[before] = after
                    prv[after] = before
                    ret_entry = match[entry]
                    if ret_entry:
                        before, after = prv[ret_entry], nxt[ret_entry]
                        nxt[before] = after
                        prv[after] = before
                        remaining -= 1
                    deepest = max(deepest, len(stack_entry))
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
            continue
        # A return entry: its op was not linearized before returning, so the
        # current prefix is a dead end; undo the most recent choice.
        furthest = max(furthest, entry)
        if not stack_entry:
            # Report the latest return the search ever got stuck at: no valid
            # order includes every operation that returned up to that one.
            stuck = live[entry_op[furthest]]
            return CheckResult(
                "not-linearizable",
                key=key,
                operation=stuck,
                explanation=(
                    f"key {key!r}: no linearization places {stuck.describe()} "
                    f"before it returns; the longest linearizable prefix found has "
                    f"{deepest} of {len(live)} operations"
                ),
            )
        entry = stack_entry.pop()
        state = stack_state.pop()
        index = entry_op[entry]
        linearized ^= bit[index]
        # Relink in the reverse order of lifting (dancing links).
        ret_entry = match[entry]
        if ret_entry:
            nxt[prv[ret_entry]] = ret_entry
            prv[nxt[ret_entry]] = ret_entry
            remaining += 1
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry
        entry = nxt[entry]
    return CheckResult(
        "linearizable",
        key=key,
        explanation=f"key {key!r}: linearizable ({len(live)} operations, {steps} search steps)",
    )


# --- Jepsen / Knossos log parsing -------------------------------------------


class HistoryError(Invalid):
    """A recorded history that cannot be read: it gets no verdict."""


_LOG_LINE: Final = re.compile(
    r"^\s*INFO\s+jepsen\.util\s+-\s+(?P<process>\S+)\s+"
    r":(?P<type>\S+)\s+:(?P<f>\S+)(?:\s+(?P<value>.*?))?\s*$"
)
_SCALAR: Final = r"nil|-?\d+"
_VALUE: Final = re.compile(
    rf"(?P<scalar>{_SCALAR})|\[\s*(?P<old>{_SCALAR})\s+(?P<new>{_SCALAR})\s*\]"
    r"|(?P<keyword>:[\w.*+!?<>=/-]+)"
)
_SHOWN: Final = 100  # characters of a bad line quoted in an error


def _scalar(text: str) -> int | None:
    return None if text == "nil" else int(text)


def _parse_value(text: str) -> tuple[bool, object]:
    found = _VALUE.fullmatch(text)
    if found is None:
        return False, None
    if found["scalar"] is not None:
        return True, _scalar(found["scalar"])
    if found["old"] is not None:
        return True, (_scalar(found["old"]), _scalar(found["new"]))
    # Keywords such as :timed-out only appear on completions; keep the text.
    return True, found["keyword"]


def _process_id(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def bad_line(number: int, line: str, why: str) -> HistoryError:
    text = line.rstrip("\r\n")
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return HistoryError(f"line {number}: {why}: {shown!r}")


@dataclass(slots=True)
class _Pending:
    kind: Kind
    value: object
    call: int


def parse_jepsen_lines(lines: Iterable[str], key: str = "r") -> list[Operation]:
    """Parse Knossos-style ``jepsen.util`` log lines into operations.

    Fields may be separated by tabs or by spaces. The time of an event is its
    line number. A process's invoke is matched with that process's next
    completion; an invoke never completed (or superseded by a new invoke from
    the same process) has unknown outcome. Blank lines and the nemesis's lines
    (process ``:nemesis``) are skipped; any other line that is not a client
    operation raises HistoryError naming it, and so does a log with no
    operation at all: a history that could not be read gets no verdict.
    """
    pending: dict[int | str, _Pending] = {}
    ops: list[Operation] = []

    def unknown(process: int | str, started: _Pending, ret: int | None) -> Operation:
        return Operation(
            process, started.kind, key, started.value, None, started.call, ret, "info"
        )

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        found = _LOG_LINE.match(line)
        if found is None:
            raise bad_line(number, line, "not a Jepsen operation (INFO jepsen.util - PROCESS :TYPE :F VALUE)")
        if found["process"].startswith(":"):
            continue  # the nemesis (faults), not a client
        event, f = found["type"], found["f"]
        if event not in ("invoke", *_STATUSES):
            raise bad_line(number, line, f"unknown type :{event} (expected :invoke, :ok, :fail or :info)")
        if f not in _KINDS:
            raise bad_line(number, line, f"unknown operation :{f} (expected :read, :write or :cas)")
        parsed, value = _parse_value(found["value"] or "")
        if not parsed:
            raise bad_line(number, line, "cannot parse the value (expected nil, an integer, [FROM TO] or a :keyword)")
        process = _process_id(found["process"])
        kind: Kind = "read" if f == "read" else "write" if f == "write" else "cas"
        if event == "invoke":
            if kind == "cas" and not isinstance(value, tuple):
                raise bad_line(number, line, "a cas needs [FROM TO]")
            if kind == "write" and isinstance(value, str | tuple):
                raise bad_line(number, line, "a write needs nil or an integer")
            earlier = pending.pop(process, None)
            if earlier is not None:
                # A process should not invoke twice; if it does, the first op's
                # outcome is unknowable, which is the safe interpretation.
                ops.append(unknown(process, earlier, None))
            pending[process] = _Pending(kind, None if kind == "read" else value, number)
            continue
        started = pending.get(process)
        if started is None:
            raise bad_line(number, line, f"process {process} completes an operation it never invoked")
        if started.kind != kind:
            raise bad_line(number, line, f"process {process} invoked a {started.kind}, not a {kind}")
        del pending[process]
        if event == "ok":
            if kind == "read" and isinstance(value, str | tuple):
                raise bad_line(number, line, "a read returns nil or an integer")
            output = value if kind == "read" else None
            ops.append(Operation(process, kind, key, started.value, output, started.call, number, "ok"))
        elif event == "fail":
            ops.append(Operation(process, kind, key, started.value, None, started.call, number, "fail"))
        else:
            ops.append(unknown(process, started, number))
    for process, started in pending.items():
        ops.append(unknown(process, started, None))
    if not ops:
        raise HistoryError("the history has no operations: nothing to check")
    ops.sort(key=lambda op: op.call)
    return ops


def parse_jepsen_log(path: str | PathLike[str], key: str = "r") -> list[Operation]:
    """Parse a Knossos-style Jepsen log file; see :func:`parse_jepsen_lines`."""
    with Path(path).open(encoding="utf-8", errors="replace") as handle:
        return parse_jepsen_lines(handle, key)


# --- Recording histories from a load generator ------------------------------


class HistoryRecorder:
    """Thread-safe recorder of client operations for :func:`check_history`.

    Call :meth:`invoke` just before sending a request and exactly one of
    :meth:`ok`, :meth:`fail` or :meth:`info` after the outcome is known.
    Operations still open when :meth:`operations` is called count as unknown.
    Use ``info`` whenever the request may have been applied (timeouts,
    dropped connections); ``fail`` only when it certainly was not.
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: list[Operation] = []
        self._done: list[bool] = []

    def invoke(
        self, process: int | str, kind: Kind, key: str, value: object = None
    ) -> int:
        """Record a call; ``value`` is the write value or the cas ``(old, new)``."""
        if kind == "cas" and isinstance(value, list):
            value = tuple(value)
        with self._lock:
            # Reading the clock under the lock keeps token order == time order.
            op = Operation(process, kind, key, value, None, self._clock(), None, "info")
            self._ops.append(op)
            self._done.append(False)
            return len(self._ops) - 1

    def ok(self, token: int, output: object = None) -> None:
        """The operation took effect; ``output`` is the value a read returned."""
        self._complete(token, "ok", output)

    def fail(self, token: int) -> None:
        """The operation certainly had no effect (including a failed cas compare)."""
        self._complete(token, "fail", None)

    def info(self, token: int) -> None:
        """The outcome is unknown: it may or may not take effect, even later."""
        self._complete(token, "info", None)

    def _complete(self, token: int, status: Status, output: object) -> None:
        with self._lock:
            if not 0 <= token < len(self._ops):
                raise ValueError(f"unknown token {token!r}")
            if self._done[token]:
                raise ValueError(f"operation {token} already completed")
            op = self._ops[token]
            self._ops[token] = replace(
                op, output=output, ret=self._clock(), status=status
            )
            self._done[token] = True

    def operations(self) -> list[Operation]:
        """A snapshot of all operations recorded so far, in call order."""
        with self._lock:
            return list(self._ops)
