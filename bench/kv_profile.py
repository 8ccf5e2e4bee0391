"""Fold a py-spy raw profile (`kv_bench.py --profile DIR`) per thread: busy share and top frames.

    python bench/kv_profile.py FILE [--top N]

py-spy was run with `--idle --threads --function`, so every sample of every thread is a line
`thread (tid): name;frame;...;frame count`. A sample whose innermost frame is a wait (poll,
select, a lock or condition wait, sleep) counts as idle, the rest as busy (busy includes waiting
for the GIL: py-spy cannot tell them apart without `--gil`). For each thread it prints the
share of busy samples, then the functions with the most busy samples inclusive (a function
counted once per sample it appears in) and exclusive (innermost frame), in % of that thread's
samples.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

# Innermost functions that mean the thread is waiting, not working (`Thread.run` is a thread
# whose work is all in C, gRPC's poller: py-spy cannot see it).
IDLE_FUNCTIONS = ("poll", "select", "wait", "sleep", "_wait_for_tstate_lock", "_do_waitpid", "accept",
                  "recv_bytes", "Thread.run")
_FRAME = re.compile(r"^(.*) \((.*)\)$")
_LINE = re.compile(r"^thread \((\w+)\): (.*) (\d+)$")


def short(frame: str) -> str:
    """`func (path/to/module.py)` -> `func (module.py)`."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def fold(path: Path) -> dict[str, tuple[int, int, Counter[str], Counter[str]]]:
    """Per thread name: (samples, busy samples, inclusive counts, exclusive counts)."""
    totals: dict[str, int] = defaultdict(int)
    busy: dict[str, int] = defaultdict(int)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    exclusive: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        stack = m.group(2).split(";")
        count = int(m.group(3))
        name = stack[0]
        frames = [short(f) for f in stack[1:]]
        totals[name] += count
        leaf = frames[-1] if frames else ""
        function = leaf.split(" (", 1)[0]
        if not frames or function.endswith(IDLE_FUNCTIONS):
            continue
        busy[name] += count
        for f in set(frames):
            inclusive[name][f] += count
        exclusive[name][leaf] += count
    return {n: (totals[n], busy[n], inclusive[n], exclusive[n]) for n in totals}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    threads = fold(args.file)
    for name, (total, busy, inc, exc) in sorted(threads.items(), key=lambda kv: -kv[1][1]):
        if busy == 0:
            continue
        print(f"== {name}: {total} samples, busy {100 * busy / total:.0f}%")
        print("   inclusive:")
        for frame, n in inc.most_common(args.top):
            print(f"     {100 * n / total:5.1f}%  {frame}")
        print("   exclusive:")
        for frame, n in exc.most_common(args.top // 2):
            print(f"     {100 * n / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
