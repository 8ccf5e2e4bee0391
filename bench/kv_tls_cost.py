"""What TLS and authorization cost the KV store: puts at 1, 8 and 64 client threads, side by side.

    python bench/kv_tls_cost.py [--duration S] [--warmup S] [--threads 1,8,64] [--op put|get] [--json]

Runs the same rows as bench/kv_bench.py twice, on two fresh 3-master clusters on 127.0.0.1:
"secure" (the default: TLS on every connection, each request authenticated by the client's
certificate proof, authorized by role, and audited when it writes), "token" (the same, the
clients with a bearer token instead of a certificate) and "insecure" (masters started with
--insecure: plaintext, no authentication; never for a real cluster).
Per row: ops/s, p50/p99 latency and the leader's CPU (% of one core), for both, and the
change. The Raft peer link is the same in both (AES-GCM with the cluster secret).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from kv_bench import RowResult, Target, default_processes, machine_note, preload, print_log_tails, run_row

from raftorch.local.masters import LocalMasters
from raftorch.rpc import Credentials

MODES = {"secure": [], "token": [], "insecure": ["--insecure"]}


def measure(mode: str, op: str, threads: list[int], duration: float, warmup: float) -> dict[int, RowResult]:
    rows: dict[int, RowResult] = {}
    with tempfile.TemporaryDirectory(prefix=f"raftorch-tls-cost-{mode}-") as tmp:
        masters = LocalMasters(root=Path(tmp), extra_args=MODES[mode])
        try:
            masters.start()
            print(f"{mode}: masters {', '.join(masters.endpoints)}; leader {masters.wait_ready(60.0)}", flush=True)
            preload(masters)
            if mode == "token":
                with masters.client() as admin:
                    token = admin.auth.create_token("bench", "admin").token
                masters.credentials = Credentials(masters.credentials.ca_pem, token=token)
            for n in threads:
                rows[n] = run_row(masters, Target(op, n, 0.0, 0.0, 0.0), default_processes(n), duration, warmup)
                print(f"  done: {mode} {op} x{n}", flush=True)
        except Exception:
            print_log_tails(masters)
            raise
        finally:
            masters.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per row (default 1)")
    p.add_argument("--threads", default="1,8,64", help="client thread counts (default 1,8,64)")
    p.add_argument("--op", choices=["put", "get"], default="put")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    results = {mode: measure(mode, args.op, threads, args.duration, args.warmup) for mode in MODES}
    print()
    print(machine_note())
    print(f"{args.op}, rows of {args.duration:g} s; CPU in % of one core; secure = TLS + authentication + "
          "authorization + audit, insecure = --insecure")
    print()
    print("ops/s, p50 and p99 ms, leader CPU: secure / token / insecure; change: against insecure")
    print(f"{'threads':>7} {'ops/s':>20} {'change':>13} {'p50 ms':>20} {'p99 ms':>21} {'leader CPU':>18}")
    for n in threads:
        s, t, i = results["secure"][n], results["token"][n], results["insecure"][n]

        def change(r: RowResult, i: RowResult = i) -> float:
            return 100 * (r.ops_per_s - i.ops_per_s) / i.ops_per_s if i.ops_per_s else float("nan")

        print(f"{n:>7} {s.ops_per_s:>6.0f}/{t.ops_per_s:>6.0f}/{i.ops_per_s:>6.0f} "
              f"{change(s):>5.0f}%/{change(t):>5.0f}% "
              f"{s.p50_ms:>6.2f}/{t.p50_ms:>6.2f}/{i.p50_ms:>6.2f} {s.p99_ms:>6.1f}/{t.p99_ms:>6.1f}/{i.p99_ms:>6.1f}"
              f" {s.leader_cpu_pct:>4.0f}%/{t.leader_cpu_pct:>4.0f}%/{i.leader_cpu_pct:>4.0f}%")
    if args.json:
        print(json.dumps({m: {n: asdict(r) for n, r in rows.items()} for m, rows in results.items()},
                         indent=2, default=lambda x: None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
