"""Tests for the Wing-Gong/Lowe linearizability checker.

The Jepsen etcd histories with published verdicts are the ground truth; the
small hand-written histories pin down the semantics of each outcome, and a
brute-force checker cross-checks random small histories.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from raftorch.drill.history import parse_jsonl_lines, read_history, write_jsonl
from raftorch.drill.linearizability import (
    HistoryError,
    HistoryRecorder,
    Kind,
    Operation,
    Status,
    check_history,
    parse_jepsen_lines,
    parse_jepsen_log,
)

# Generous: the whole corpus takes well under a second; the limit only turns a
# hang into a failure (an "unknown" verdict never equals the expected one).
PER_HISTORY_TIMEOUT = 30.0


def _jepsen_dir() -> Path:
    configured = os.environ.get("RAFTORCH_JEPSEN_DIR")
    if configured:
        return Path(configured)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root / ".." / "shared" / "jepsen-etcd"


JEPSEN_DIR = _jepsen_dir()


def _missing(reason: str) -> None:
    # CI always provides the histories, so there a missing corpus is a failure
    # rather than a silently skipped (vacuous) check.
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


def _load_verdicts() -> list[tuple[str, str]]:
    path = JEPSEN_DIR / "VERDICTS"
    if not path.is_file():
        return []
    verdicts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, verdict = line.split()
            verdicts.append((name, verdict))
    return verdicts


VERDICTS = _load_verdicts()


@pytest.mark.parametrize(
    ("name", "expected"),
    VERDICTS or [pytest.param("", "", id="jepsen-histories-missing")],
)
def test_jepsen_etcd_history_verdict(name: str, expected: str) -> None:
    if not name:
        _missing(f"Jepsen histories not found at {JEPSEN_DIR}")
    assert expected in ("linearizable", "not-linearizable")
    path = JEPSEN_DIR / name
    ops = parse_jepsen_log(path)
    # Every invoke must become exactly one operation, or the parser has
    # silently dropped part of the history.
    invokes = sum(
        1
        for line in path.read_text(encoding="utf-8").splitlines()
        if "\t:invoke\t" in line
    )
    assert len(ops) == invokes > 0
    result = check_history(ops, timeout=PER_HISTORY_TIMEOUT)
    assert not result.unknown, result.explanation
    assert result.verdict == expected, result.explanation
    if expected == "not-linearizable":
        assert result.key == "r" and result.operation is not None


def test_verdicts_cover_every_history() -> None:
    if not JEPSEN_DIR.is_dir():
        _missing(f"Jepsen histories not found at {JEPSEN_DIR}")
    logs = sorted(path.name for path in JEPSEN_DIR.glob("etcd_*.log"))
    assert logs, "no histories"
    assert sorted(name for name, _ in VERDICTS) == logs
    kinds = {verdict for _, verdict in VERDICTS}
    assert kinds == {"linearizable", "not-linearizable"}


# --- hand-written histories --------------------------------------------------


def op(
    process: int | str,
    kind: Kind,
    call: float,
    ret: float | None,
    *,
    value: object = None,
    output: object = None,
    status: Status = "ok",
    key: str = "r",
) -> Operation:
    return Operation(process, kind, key, value, output, call, ret, status)


def test_concurrent_linearizable_history() -> None:
    history = [
        op(0, "write", 0, 10, value=1),
        op(1, "read", 1, 3, output=None),  # before the write takes effect
        op(2, "read", 2, 5, output=1),  # after it: overlaps, so allowed
        op(1, "read", 6, 8, output=1),
        op(2, "cas", 7, 12, value=(1, 2)),
        op(3, "read", 9, 11, output=1),  # the cas may come after this read
        op(1, "read", 13, 14, output=2),
    ]
    result = check_history(history)
    assert result.linearizable, result.explanation
    assert not result.unknown


def test_stale_read_after_completed_write_is_not_linearizable() -> None:
    stale = op(1, "read", 2, 3, output=None)
    result = check_history([op(0, "write", 0, 1, value=1), stale])
    assert not result.linearizable
    assert result.verdict == "not-linearizable"
    assert result.key == "r"
    assert result.operation == stale
    assert "read -> None" in result.explanation


def test_reads_that_go_back_in_time_are_not_linearizable() -> None:
    # Both writes overlap both reads, but once a read saw 2 after 1 was
    # visible, a later read cannot see 1 again.
    history = [
        op(0, "write", 0, 10, value=1),
        op(1, "write", 0, 10, value=2),
        op(2, "read", 1, 2, output=1),
        op(2, "read", 3, 4, output=2),
        op(2, "read", 5, 6, output=1),
    ]
    assert check_history(history).verdict == "not-linearizable"


def test_info_write_may_take_effect_after_its_info_response() -> None:
    history = [
        op(0, "write", 0, 1, value=1, status="info"),
        op(1, "read", 2, 3, output=None),
        op(1, "read", 4, 5, output=1),
    ]
    assert check_history(history).linearizable
    # The same write acknowledged as ok must be visible to the first read.
    acked = [op(0, "write", 0, 1, value=1), *history[1:]]
    assert check_history(acked).verdict == "not-linearizable"


def test_info_operations_may_never_take_effect() -> None:
    history = [
        op(0, "write", 0, 1, value=1),
        op(1, "write", 2, None, value=2, status="info"),
        op(2, "cas", 2, 3, value=(1, 3), status="info"),
        op(3, "read", 5, 6, output=1),
    ]
    assert check_history(history).linearizable
    # ...but an unknown op cannot take effect before it was invoked.
    early = [
        op(1, "read", 0, 1, output=2),
        op(0, "write", 2, None, value=2, status="info"),
    ]
    assert check_history(early).verdict == "not-linearizable"


def test_info_cas_taking_effect_explains_later_read() -> None:
    history = [
        op(0, "write", 0, 1, value=1),
        op(1, "cas", 2, 3, value=(1, 5), status="info"),
        op(2, "read", 10, 11, output=5),
    ]
    assert check_history(history).linearizable


def test_failed_cas_has_no_effect() -> None:
    history = [
        op(0, "write", 0, 1, value=1),
        op(1, "cas", 2, 3, value=(1, 2), status="fail"),
        op(2, "read", 4, 5, output=1),
    ]
    assert check_history(history).linearizable
    # Had the cas succeeded, the read of 1 would be stale.
    succeeded = [history[0], op(1, "cas", 2, 3, value=(1, 2)), history[2]]
    result = check_history(succeeded)
    assert result.verdict == "not-linearizable"
    assert result.operation == history[2]


def test_successful_cas_requires_matching_value() -> None:
    history = [op(0, "write", 0, 1, value=1), op(1, "cas", 2, 3, value=(7, 2))]
    assert check_history(history).verdict == "not-linearizable"


def test_failed_operations_are_dropped() -> None:
    history = [
        op(0, "write", 0, 1, value=1, status="fail"),
        op(1, "read", 2, 3, output=None),
    ]
    assert check_history(history).linearizable


def test_keys_are_checked_independently() -> None:
    history = [
        op(0, "write", 0, 1, value=1, key="a"),
        op(1, "read", 2, 3, output=None, key="b"),  # stale only if same key
        op(1, "read", 4, 5, output=1, key="a"),
    ]
    assert check_history(history).linearizable
    same_key = [
        op(0, "write", 0, 1, value=1, key="a"),
        op(1, "read", 2, 3, output=None, key="a"),
    ]
    assert check_history(same_key).verdict == "not-linearizable"
    mixed = [
        *history,
        op(2, "write", 6, 7, value=9, key="b"),
        op(3, "read", 8, 9, output=None, key="b"),
    ]
    result = check_history(mixed)
    assert result.verdict == "not-linearizable"
    assert result.key == "b"


def test_empty_history_is_linearizable() -> None:
    assert check_history([]).linearizable


def test_equal_timestamps_count_as_concurrent() -> None:
    # The read is invoked at the instant the write returns; it may be ordered
    # either way, so the stale-looking value is allowed.
    history = [op(0, "write", 0, 5, value=1), op(1, "read", 5, 6, output=None)]
    assert check_history(history).linearizable


def test_invalid_operations_are_rejected() -> None:
    with pytest.raises(ValueError):
        op(0, "cas", 0, 1, value=3)
    with pytest.raises(ValueError):
        op(0, "read", 0, None, output=1)  # ok without a return time
    with pytest.raises(ValueError):
        op(0, "write", 5, 1, value=1)  # returns before it is called


def test_timeout_reports_unknown_not_a_verdict() -> None:
    # Many concurrent unknown writes and an impossible read: the search must
    # explore a huge space before refuting it, so a tiny limit gives up.
    history = [op(i, "write", 0, None, value=i, status="info") for i in range(24)]
    history.append(op(99, "read", 1, 2, output=-1))
    result = check_history(history, timeout=0.05)
    assert result.unknown
    assert not result.linearizable
    assert result.verdict == "unknown"


# --- Jepsen log parsing ------------------------------------------------------


def test_parse_jepsen_lines() -> None:
    lines = [
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
        "INFO  jepsen.util - 1\t:invoke\t:write\t3",
        "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 4]",
        "INFO  jepsen.util - :nemesis\t:info\t:start\tnil",  # ignored
        "",  # ignored
        "INFO  jepsen.util - 0\t:ok\t:read\t3",
        "INFO  jepsen.util - 1\t:info\t:write\t:timed-out",
        "INFO  jepsen.util - 2\t:fail\t:cas\t[3 4]",
        "INFO  jepsen.util - 1\t:invoke\t:write\t5",  # same process after info
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[nil 1]",
        "INFO  jepsen.util - 1\t:ok\t:write\t5",
    ]
    ops = parse_jepsen_lines(lines)
    assert ops == [
        Operation(0, "read", "r", None, 3, 1, 6, "ok"),
        Operation(1, "write", "r", 3, None, 2, 7, "info"),
        Operation(2, "cas", "r", (3, 4), None, 3, 8, "fail"),
        Operation(1, "write", "r", 5, None, 9, 11, "ok"),
        Operation(3, "cas", "r", (None, 1), None, 10, None, "info"),
    ]


def test_parse_jepsen_log_file(tmp_path: Path) -> None:
    path = tmp_path / "h.log"
    path.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
        "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 1\t:ok\t:read\tnil\n",
        encoding="utf-8",
    )
    ops = parse_jepsen_log(path)
    assert [o.kind for o in ops] == ["write", "read"]
    result = check_history(ops)
    assert result.verdict == "not-linearizable"
    assert result.operation == ops[1]


# Not linearizable: process 1 reads 1 after process 0's write of 2 returned.
_STALE = [
    "INFO  jepsen.util - 0\t:invoke\t:write\t1",
    "INFO  jepsen.util - 0\t:ok\t:write\t1",
    "INFO  jepsen.util - 0\t:invoke\t:write\t2",
    "INFO  jepsen.util - 0\t:ok\t:write\t2",
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil",
    "INFO  jepsen.util - 1\t:ok\t:read\t1",
    "INFO  jepsen.util - 2\t:invoke\t:cas\t[2 3]",
    "INFO  jepsen.util - 2\t:fail\t:cas\t[2 3]",
]


@pytest.mark.parametrize("separator", ["\t", " ", "   ", " \t "])
def test_jepsen_fields_separated_by_tabs_or_spaces(separator: str) -> None:
    ops = parse_jepsen_lines([line.replace("\t", separator) for line in _STALE])
    assert len(ops) == 4
    assert ops[3].value == (2, 3)
    result = check_history(ops)
    assert result.verdict == "not-linearizable"


@pytest.mark.parametrize(("line", "why"), [
    ("some unrelated line", "not a Jepsen operation"),
    ("INFO  jepsen.util - 3 :invoke :frobnicate 1", "unknown operation :frobnicate"),
    ("INFO  jepsen.util - 3 :started :read nil", "unknown type :started"),
    ("INFO  jepsen.util - 3 :invoke :write banana", "cannot parse the value"),
    ("INFO  jepsen.util - 3 :invoke :cas 4", "a cas needs [FROM TO]"),
    ("INFO  jepsen.util - 3 :ok :read 4", "never invoked"),
    ("INFO  jepsen.util - 0 :ok :read 4", "invoked a write, not a read"),
])
def test_a_line_that_cannot_be_parsed_is_an_error_naming_it(line: str, why: str) -> None:
    lines = ["INFO  jepsen.util - 0 :invoke :write 1", line]
    with pytest.raises(HistoryError) as err:
        parse_jepsen_lines(lines)
    assert err.value.message.startswith("line 2: ")
    assert why in err.value.message
    assert line[:40] in err.value.message


def test_a_long_bad_line_is_shown_truncated() -> None:
    with pytest.raises(HistoryError) as err:
        parse_jepsen_lines(["x" * 10_000])
    assert len(err.value.message) < 200
    assert err.value.message.startswith("line 1: ")


@pytest.mark.parametrize("lines", [[], ["", "   "], ["INFO  jepsen.util - :nemesis :info :start nil"]])
def test_an_empty_jepsen_history_is_an_error_not_a_verdict(lines: list[str]) -> None:
    with pytest.raises(HistoryError, match="no operations"):
        parse_jepsen_lines(lines)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    recorder = HistoryRecorder(clock=iter(range(100)).__next__)
    t = recorder.invoke(0, "write", "k", "a")
    recorder.ok(t)
    t = recorder.invoke(1, "cas", "k", ("a", "b"))
    recorder.fail(t)
    t = recorder.invoke(2, "read", "k")
    recorder.ok(t, "b")
    recorder.invoke(3, "write", "j", "x")
    path = tmp_path / "h.jsonl"
    assert write_jsonl(recorder.operations(), path) == 4
    ops = read_history(path)
    assert ops == recorder.operations()
    assert check_history(ops).verdict == "not-linearizable"


@pytest.mark.parametrize(("line", "why"), [
    ("not json", "not JSON"),
    ("[1, 2]", "expected an object"),
    ('{"process": 0, "kind": "write", "key": "k", "call": 1}', "missing status"),
    ('{"process": 0, "kind": "write", "key": "k", "call": 1, "status": "ok", "when": 2}', "unknown field when"),
    ('{"process": 0, "kind": "write", "key": "k", "call": 1, "status": "ok"}', "needs a return time"),
    ('{"process": 0, "kind": "cas", "key": "k", "call": 1, "ret": 2, "status": "ok", "value": 3}', "cas value"),
    ('{"process": 0, "kind": "read", "key": "k", "call": "soon", "status": "info"}', "call must be a number"),
])
def test_a_bad_jsonl_line_is_an_error_naming_it(line: str, why: str) -> None:
    good = '{"process": 0, "kind": "write", "key": "k", "value": 1, "call": 1, "ret": 2, "status": "ok"}'
    with pytest.raises(HistoryError) as err:
        parse_jsonl_lines([good, "", line])
    assert err.value.message.startswith("line 3: ")
    assert why in err.value.message


def test_an_empty_jsonl_history_is_an_error() -> None:
    with pytest.raises(HistoryError, match="no operations"):
        parse_jsonl_lines(["", "\n"])


# --- recorder ----------------------------------------------------------------


def test_recorder_round_trip() -> None:
    ticks = itertools.count(100)
    rec = HistoryRecorder(clock=lambda: next(ticks))
    w = rec.invoke(0, "write", "x", 1)
    r = rec.invoke(1, "read", "x")
    rec.ok(w)
    rec.ok(r, 1)
    c = rec.invoke(2, "cas", "x", [1, 2])
    rec.fail(c)
    t = rec.invoke(3, "write", "y", 7)
    rec.info(t)
    rec.invoke(4, "read", "y")  # never completed
    with pytest.raises(ValueError):
        rec.ok(w)
    with pytest.raises(ValueError):
        rec.fail(12345)
    assert rec.operations() == [
        Operation(0, "write", "x", 1, None, 100, 102, "ok"),
        Operation(1, "read", "x", None, 1, 101, 103, "ok"),
        Operation(2, "cas", "x", (1, 2), None, 104, 105, "fail"),
        Operation(3, "write", "y", 7, None, 106, 107, "info"),
        Operation(4, "read", "y", None, None, 108, None, "info"),
    ]
    assert check_history(rec.operations()).linearizable


def test_recorder_from_threads_against_a_real_register() -> None:
    # A lock-protected register is linearizable by construction; the recorded
    # history (real monotonic_ns times) must be judged so.
    rec = HistoryRecorder()
    lock = threading.Lock()
    store: dict[str, object] = {}

    def client(process: int) -> None:
        rng = random.Random(process)
        for _ in range(40):
            key = rng.choice("ab")
            choice = rng.random()
            if choice < 0.4:
                token = rec.invoke(process, "read", key)
                with lock:
                    seen = store.get(key)
                rec.ok(token, seen)
            elif choice < 0.7:
                value = rng.randrange(4)
                token = rec.invoke(process, "write", key, value)
                with lock:
                    store[key] = value
                rec.ok(token)
            else:
                old, new = rng.randrange(4), rng.randrange(4)
                token = rec.invoke(process, "cas", key, (old, new))
                with lock:
                    swapped = store.get(key) == old
                    if swapped:
                        store[key] = new
                if swapped:
                    rec.ok(token)
                else:
                    rec.fail(token)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ops = rec.operations()
    assert len(ops) == 160
    assert all(o.ret is not None and o.ret >= o.call for o in ops)
    result = check_history(ops, timeout=PER_HISTORY_TIMEOUT)
    assert result.linearizable, result.explanation


# --- brute-force cross-check -------------------------------------------------


def _orders(ops: Sequence[Operation]) -> Iterator[tuple[Operation, ...]]:
    """All real-time-respecting orders of every allowed subset of ops."""
    required = [o for o in ops if o.status == "ok"]
    optional = [o for o in ops if o.status == "info" and o.kind != "read"]
    for size in range(len(optional) + 1):
        for extra in itertools.combinations(optional, size):
            yield from itertools.permutations(required + list(extra))


def _brute_force(ops: Sequence[Operation]) -> bool:
    def precedes(a: Operation, b: Operation) -> bool:
        return a.status == "ok" and a.ret is not None and a.ret < b.call

    for order in _orders(ops):
        if any(
            precedes(order[j], order[i])
            for i in range(len(order))
            for j in range(i + 1, len(order))
        ):
            continue
        state: object = None
        for o in order:
            if o.kind == "read":
                if o.output != state:
                    break
            elif o.kind == "write":
                state = o.value
            else:
                assert isinstance(o.value, tuple)
                if state != o.value[0]:
                    break
                state = o.value[1]
        else:
            return True
    return False


KINDS: tuple[Kind, ...] = ("read", "write", "cas")
STATUSES: tuple[Status, ...] = ("ok", "fail", "info")


def _random_history(rng: random.Random) -> list[Operation]:
    ops = []
    for process in range(rng.randint(1, 6)):
        call = rng.randint(0, 8)
        ret = call + rng.randint(0, 4)
        kind = rng.choice(KINDS)
        status = rng.choices(STATUSES, weights=[7, 1, 2])[0]
        values = [None, 1, 2]
        value: object = None
        output: object = None
        if kind == "read":
            output = rng.choice(values) if status == "ok" else None
        elif kind == "write":
            value = rng.choice(values[1:])
        else:
            value = (rng.choice(values), rng.choice(values[1:]))
        ops.append(Operation(process, kind, "r", value, output, call, ret, status))
    return ops


def test_agrees_with_brute_force_on_random_small_histories() -> None:
    rng = random.Random(20240611)
    verdicts = {True: 0, False: 0}
    for _ in range(1500):
        history = _random_history(rng)
        expected = _brute_force(history)
        result = check_history(history)
        assert not result.unknown
        assert result.linearizable == expected, history
        verdicts[expected] += 1
    # Both outcomes must be well represented or the comparison proves little.
    assert min(verdicts.values()) > 200, verdicts
