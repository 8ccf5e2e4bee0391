"""Drill results as table rows and a summary."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from raftorch.drill.drills import DrillResult

HEADERS = ["run", "drill", "target", "new leader", "failover", "unavailable", "ops ok/fail/info", "acked",
           "lost", "stale", "linearizable", "pods moved", "result"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def row(r: DrillResult) -> list[str]:
    moved = "-" if r.pods_moved is None else f"{r.pods_moved} in {_seconds(r.pods_moved_s)}"
    return [str(r.run), r.drill, r.target or "-", r.new_leader or "-", _seconds(r.failover_s),
            _seconds(r.unavailable_s), f"{r.ok}/{r.failed}/{r.unknown}", str(r.acked_writes), str(r.lost_writes),
            str(r.stale_reads), "yes" if r.linearizable else "NO", moved, "pass" if r.passed else "FAIL"]


def format_table(results: Sequence[DrillResult]) -> str:
    cells = [[h.upper() for h in HEADERS], *(row(r) for r in results)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    for r in results:
        lines += [f"  run {r.run}: {problem}" for problem in r.problems]
    return "\n".join(lines)


def summary(results: Sequence[DrillResult]) -> dict[str, Any]:
    failovers = [r.failover_s for r in results if r.failover_s is not None]
    moves = [r.pods_moved_s for r in results if r.pods_moved_s is not None]
    gaps = [r.unavailable_s for r in results if r.unavailable_s is not None]
    return {
        "runs": len(results),
        "passed": sum(r.passed for r in results),
        "failover_median_s": round(statistics.median(failovers), 3) if failovers else None,
        "failover_max_s": max(failovers) if failovers else None,
        "unavailable_max_s": max(gaps) if gaps else None,
        "pods_moved_median_s": round(statistics.median(moves), 3) if moves else None,
        "lost_writes": sum(r.lost_writes for r in results),
        "stale_reads": sum(r.stale_reads for r in results),
        "all_linearizable": all(r.linearizable for r in results),
    }


def format_summary(s: dict[str, Any]) -> str:
    parts = [f"{s['passed']}/{s['runs']} runs passed"]
    if s["failover_median_s"] is not None:
        parts.append(f"failover median {s['failover_median_s']:.2f}s, max {s['failover_max_s']:.2f}s")
    if s["unavailable_max_s"] is not None:
        parts.append(f"longest write gap {s['unavailable_max_s']:.2f}s")
    if s["pods_moved_median_s"] is not None:
        parts.append(f"pods moved in {s['pods_moved_median_s']:.2f}s (median)")
    parts.append(f"{s['lost_writes']} lost writes")
    parts.append(f"{s['stale_reads']} stale reads")
    parts.append("every history linearizable" if s["all_linearizable"] else "NOT every history linearizable")
    return "; ".join(parts)
