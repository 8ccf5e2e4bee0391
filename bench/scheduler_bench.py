"""Benchmark of `raftorch.master.scheduler.schedule`, the pure placement function.

    python bench/scheduler_bench.py [--nodes N] [--pods P] [--owners O] [--batch B] [--repeat R]

Default: 1,000 identical empty nodes (4 cores, 16Gi, 110 pods), 10,000 pods of 100 owners (100
pods each, queued owner after owner, as replicas of a deployment are created together), each
requesting 100m cpu and 128Mi memory. Rows:

- one call: `schedule` over all pods at once;
- batches: `schedule` over B pods at a time, as a leader loop would, each batch seeing a
  snapshot with the previous batches' bindings committed (building that snapshot is the
  leader's work, not the scheduler's, and is not timed).

Each row prints pods bound per second of `schedule` (best of R runs, min time) and the plan's
quality: per owner, max-min of its pods per node over all nodes (1 is ideal when an owner has
fewer pods than there are nodes), and max-min of pods per node overall.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from raftorch.master.scheduler import Binding, NodeInfo, PodRequest, Snapshot, default_sample, schedule

GI = 1024**3
MI = 1024**2


def make_nodes(count: int) -> tuple[NodeInfo, ...]:
    return tuple(
        NodeInfo(name=f"node-{i:05d}", ready=True, unschedulable=False,
                 labels={"kubernetes.io/hostname": f"node-{i:05d}", "zone": f"zone-{i % 3}"},
                 allocatable_cpu=4000, allocatable_memory=16 * GI, allocatable_pods=110,
                 used_cpu=0, used_memory=0, pod_count=0, host_ports=frozenset(), owner_pods={})
        for i in range(count))


def make_pods(count: int, owners: int) -> list[PodRequest]:
    per_owner = -(-count // owners)
    return [PodRequest(namespace="default", name=f"web-{i // per_owner}-{i % per_owner}", uid=f"pod-uid-{i:06d}",
                       cpu=100, memory=128 * MI, node_selector={}, host_ports=frozenset(),
                       owner_uid=f"owner-uid-{i // per_owner:04d}")
            for i in range(count)]


def commit(nodes: tuple[NodeInfo, ...], pods: Sequence[PodRequest], bindings: Sequence[Binding]
           ) -> tuple[NodeInfo, ...]:
    """The next snapshot, with `bindings` applied as the leader would after committing them."""
    by_uid = {p.uid: p for p in pods}
    placed: dict[str, list[PodRequest]] = {}
    for b in bindings:
        placed.setdefault(b.node, []).append(by_uid[b.uid])
    out = []
    for node in nodes:
        new = placed.get(node.name)
        if not new:
            out.append(node)
            continue
        owners = Counter(node.owner_pods)
        owners.update(p.owner_uid for p in new if p.owner_uid)
        out.append(replace(node, used_cpu=node.used_cpu + sum(p.cpu for p in new),
                           used_memory=node.used_memory + sum(p.memory for p in new),
                           pod_count=node.pod_count + len(new), owner_pods=dict(owners),
                           host_ports=node.host_ports.union(*(p.host_ports for p in new))))
    return tuple(out)


def run(nodes: tuple[NodeInfo, ...], pods: list[PodRequest], batch: int) -> tuple[float, list[Binding], int]:
    """Seconds spent in `schedule`, all bindings, and the number of unschedulable pods."""
    spent = 0.0
    bindings: list[Binding] = []
    failed = 0
    for lo in range(0, len(pods), batch):
        chunk = pods[lo:lo + batch]
        t0 = time.perf_counter()
        plan = schedule(Snapshot(nodes), chunk, now=0.0)
        spent += time.perf_counter() - t0
        bindings.extend(plan.bindings)
        failed += len(plan.unschedulable)
        if lo + batch < len(pods):
            nodes = commit(nodes, chunk, plan.bindings)
    return spent, bindings, failed


def quality(nodes: Sequence[NodeInfo], pods: Sequence[PodRequest], bindings: Sequence[Binding]) -> tuple[int, int]:
    owner_of = {p.uid: p.owner_uid for p in pods}
    per_owner: dict[str, Counter[str]] = {}
    per_node: Counter[str] = Counter()
    for b in bindings:
        per_owner.setdefault(owner_of[b.uid], Counter())[b.node] += 1
        per_node[b.node] += 1
    names = [n.name for n in nodes]
    owner_skew = max((max(c[n] for n in names) - min(c[n] for n in names) for c in per_owner.values()), default=0)
    node_skew = max(per_node[n] for n in names) - min(per_node[n] for n in names)
    return owner_skew, node_skew


def check_fit(nodes: Sequence[NodeInfo], pods: Sequence[PodRequest], bindings: Sequence[Binding]) -> None:
    by_uid = {p.uid: p for p in pods}
    cpu: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for b in bindings:
        cpu[b.node] += by_uid[b.uid].cpu
        memory[b.node] += by_uid[b.uid].memory
        count[b.node] += 1
    for n in nodes:
        assert cpu[n.name] <= n.allocatable_cpu and memory[n.name] <= n.allocatable_memory, n.name
        assert count[n.name] <= n.allocatable_pods, n.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    nodes = make_nodes(args.nodes)
    pods = make_pods(args.pods, args.owners)
    print(f"python {platform.python_version()} on {platform.machine()}; {args.nodes} nodes, {len(pods)} pods, "
          f"{args.owners} owners, sample {default_sample(args.nodes)} feasible nodes per pod")
    for label, batch in (("one call", len(pods)), (f"batches of {args.batch}", args.batch)):
        results = [run(nodes, pods, batch) for _ in range(args.repeat)]
        spent, bindings, failed = min(results, key=lambda r: r[0])
        assert all(r[1] == bindings for r in results), "schedule is not deterministic"
        check_fit(nodes, pods, bindings)
        owner_skew, node_skew = quality(nodes, pods, bindings)
        print(f"{label:>16}: {len(bindings) / spent:9,.0f} pods/s bound ({spent * 1000:7.1f} ms, "
              f"{len(bindings)} bound, {failed} unschedulable); spread max-min per owner per node {owner_skew}, "
              f"pods per node {node_skew}")


if __name__ == "__main__":
    main()
