"""How a drill judges a history: stale reads, write gaps, verdicts, the report."""

from __future__ import annotations

import itertools
import json

from raftorch.drill.drills import DrillResult
from raftorch.drill.linearizability import HistoryRecorder
from raftorch.drill.report import format_summary, format_table, summary
from raftorch.drill.workload import Ack, Read, stale_reads, unavailable_window


def _recorder() -> HistoryRecorder:
    ticks = itertools.count(0, 1_000_000_000)  # every clock reading is one second later
    return HistoryRecorder(clock=lambda: next(ticks))


def test_a_read_older_than_a_write_acknowledged_before_it_is_stale() -> None:
    rec = _recorder()
    w = rec.invoke(0, "write", "k", "a")     # t=0
    rec.ok(w)                                # t=1, acknowledged at revision 5
    r1 = rec.invoke(1, "read", "k")          # t=2: began after the ack
    rec.ok(r1, None)                         # t=3: saw nothing: stale
    r2 = rec.invoke(1, "read", "k")          # t=4
    rec.ok(r2, "a")                          # t=5: saw revision 5: fine
    ops = rec.operations()
    acks = [Ack(w, "k", "a", 5)]
    found = stale_reads(ops, acks, [Read(r1, "k", 0), Read(r2, "k", 5)])
    assert len(found) == 1 and "revision 0" in found[0] and "revision 5" in found[0]


def test_a_read_concurrent_with_the_write_may_see_the_old_value() -> None:
    rec = _recorder()
    r = rec.invoke(1, "read", "k")           # t=0, before the write is acknowledged
    w = rec.invoke(0, "write", "k", "a")     # t=1
    rec.ok(w)                                # t=2
    rec.ok(r, None)                          # t=3
    assert stale_reads(rec.operations(), [Ack(w, "k", "a", 7)], [Read(r, "k", 0)]) == []


def test_unavailable_window_is_the_longest_gap_between_acknowledged_writes() -> None:
    rec = _recorder()
    tokens = []
    for _ in range(3):
        t = rec.invoke(0, "write", "k", "v")
        rec.ok(t)
        tokens.append(t)
    ops = rec.operations()  # acks at 1 s, 3 s, 5 s
    acks = [Ack(t, "k", "v", i + 1) for i, t in enumerate(tokens)]
    assert unavailable_window(ops, acks, 0, 9_000_000_000) == 4.0
    assert unavailable_window(ops, [], 0, 2_000_000_000) == 2.0


def test_result_passes_only_with_nothing_lost_nothing_stale_and_linearizable() -> None:
    good = DrillResult("failover", 1, target="m1", new_leader="m2", failover_s=0.4, unavailable_s=0.5, ok=10,
                       acked_writes=5, verdicts={"k0": "linearizable"})
    assert good.passed
    assert not DrillResult("failover", verdicts={"k0": "linearizable"}, lost_writes=1).passed
    assert not DrillResult("failover", verdicts={"k0": "linearizable"}, stale_reads=1).passed
    assert not DrillResult("failover", verdicts={"k0": "unknown"}).passed
    assert not DrillResult("failover").passed  # no history at all proves nothing
    assert not DrillResult("restart-masters", verdicts={"k0": "linearizable"}, objects_intact=False).passed
    bad = DrillResult("failover", 2, failover_s=1.2, verdicts={"k0": "not-linearizable"},
                      problems=["key 'k0': no linearization"])
    table = format_table([good, bad])
    assert "0.40s" in table and "FAIL" in table and "run 2: key 'k0'" in table
    totals = summary([good, bad])
    assert totals["failover_median_s"] == 0.8 and totals["failover_max_s"] == 1.2
    assert not totals["all_linearizable"]
    assert "1/2 runs passed" in format_summary(totals)
    assert json.loads(json.dumps(good.to_dict()))["passed"] is True
