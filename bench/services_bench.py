"""Services data path and rule propagation, on real Docker pods and per-node network namespaces.

    python bench/services_bench.py [--quick] [--threads N] [--seconds S] [--rounds R] [--services 100,1000] [--json]

Builds the topology of tests/services (svc_topology: three masters in the root namespace,
two nodes as network namespaces each running its agent, pods as Docker containers on the
nodes' pod bridges; everything removed at the end, also on Ctrl-C), then measures:

1. Data path. An httpd deployment of ONE replica (raftorch/busybox) behind a NodePort
   service. A client in its own namespace runs N threads for S seconds, one TCP connection
   per request (HTTP/1.0, no keep-alive), against: the pod IP directly; the NodePort on the
   pod's node and on the other node (iptables mode); the same with every node's rules
   holding the largest service count of part 2; and, after the agents are restarted with
   `--network-mode userspace`, the NodePort on both nodes again. Each of these three phases
   measures its rows in R interleaved rounds (after a 1 s warm-up) together with a pod-IP
   row of its own, and reports medians: requests/s (and its range), p50, p99, max, errors.
2. Propagation (iptables mode), at each service count K (default 100 and 1,000): K ClusterIP
   services all selecting one deployment `prop`, plus a service `probe` selecting its own
   deployment. Times come from a watch on endpoints (this process) and `iptables-save -t nat`
   polled back to back inside every node's namespace (a poll's end time: an upper bound,
   the polling period is printed):
   * one endpoint change: `probe` scaled 1 -> 2; from its endpoints update to the new pod's
     DNAT rule on every node, with K other services in the rules (each change re-renders and
     reloads the node's whole rule set);
   * the same change seen by K services: `prop` scaled +1; from the first and the last of the
     K endpoints updates to the new pod in all K services' rules on every node.
   Also: the time for a node to load K new services from scratch, and the rule count.

Docker Swarm's routing mesh (`docker service create --publish`), the obvious baseline, is not
measured: it is built on IPVS, which this kernel lacks (no /proc/net/ip_vs, no modules to load),
so Swarm cannot publish a port here at all; the script checks and says so.

The machine has 2 cores shared by the masters, agents, the client, busybox httpd (a process
per connection) and whatever else runs: compare rows within a run, not across runs. Needs
root, `ip netns`, iptables, Docker and the raftorch/busybox image (scripts/build_images.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "services"))

from benchlib import cpu_seconds  # noqa: E402
from svc_topology import (  # noqa: E402
    Recorder,
    ServicesCluster,
    Unusable,
    deployment,
    eventually,
    pods_of,
    ready_pods,
    require_support,
    scale,
    service,
    sh,
    wait_serving,
)

from raftorch.api.v1 import objects_pb2  # noqa: E402
from raftorch.client import Client  # noqa: E402
from raftorch.errors import AlreadyExists  # noqa: E402

DNAT = re.compile(r"--to-destination (\d+\.\d+\.\d+\.\d+):8080")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ipvs_available() -> bool:
    return Path("/proc/net/ip_vs").exists()


# -- data path ------------------------------------------------------------------------------------


def load(cluster: ServicesCluster, target: str, threads: int, seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = cluster.http(cluster.client_ns, "load", target=target, threads=threads,
                                          seconds=seconds, timeout=5.0)
    return result


def phase(cluster: ServicesCluster, name: str, rows: list[tuple[str, str]], threads: int, seconds: float,
          rounds: int) -> list[dict[str, Any]]:
    """The rows of one phase, measured in `rounds` interleaved rounds (after a 1 s warm-up
    each): per row the median req/s, p50 and p99 of the rounds, their req/s range, the
    largest max and all errors. The machine is shared and noisy; interleaving spreads the
    noise over the rows, and every phase has its own pod-IP row to compare with."""
    for _, target in rows:
        load(cluster, target, threads, 1.0)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in rows}
    for r in range(rounds):
        for label, target in rows:
            log(f"data path [{name}] round {r + 1}/{rounds}: {label} ({target})")
            runs[label].append(load(cluster, target, threads, seconds))
    out = []
    for label, target in rows:
        got = runs[label]

        def med(key: str, got: list[dict[str, Any]] = got) -> float | None:
            values = sorted(g[key] for g in got if g[key] is not None)
            return values[len(values) // 2] if values else None

        out.append({"phase": name, "path": label, "target": target, "rps": med("rps"), "p50_ms": med("p50_ms"),
                    "p99_ms": med("p99_ms"), "max_ms": max((g["max_ms"] or 0) for g in got),
                    "errors": sum(g["errors"] for g in got), "rps_range": [min(g["rps"] for g in got),
                                                                          max(g["rps"] for g in got)]})
    return out


def wait_answering(cluster: ServicesCluster, targets: list[str], timeout: float = 30.0) -> None:
    eventually(lambda: all("ok" in o for o in cluster.get(cluster.client_ns, targets)), timeout,
               f"{targets} answering", period=0.2)


# -- propagation ----------------------------------------------------------------------------------


class DnatSampler:
    """`iptables-save -t nat` in every node namespace, over and over; per poll, how many DNAT
    rules lead to each pod IP (port 8080). With 11,000 lines a dump takes a good part of a
    second of CPU, taken from the agents being measured: after each poll the sampler rests
    `rest` times as long as the poll took."""

    def __init__(self, cluster: ServicesCluster, rest: float = 1.0) -> None:
        self.samples: dict[str, list[tuple[float, float, Counter[str]]]] = {n: [] for n in cluster.hosts}
        self._rest = rest
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(cluster.hosts[n].netns, n), daemon=True)
                         for n in cluster.hosts]
        for t in self._threads:
            t.start()

    def _run(self, netns: str, node: str) -> None:
        while not self._stop.is_set():
            began = time.time()
            text = sh("ip", "netns", "exec", netns, "iptables-save", "-t", "nat", check=False).stdout
            ended = time.time()
            self.samples[node].append((began, ended, Counter(DNAT.findall(text))))
            self._stop.wait((ended - began) * self._rest)

    def first(self, node: str, check: Any, after: float = 0.0) -> float | None:
        return next((end for began, end, counts in list(self.samples[node]) if began >= after and check(counts)),
                    None)

    def wait(self, check: Any, after: float, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {n: self.first(n, check, after) for n in self.samples}
            if all(t is not None for t in found.values()):
                return {n: t for n, t in found.items() if t is not None}
            time.sleep(0.05)
        raise TimeoutError("rules did not converge on every node")

    def period(self) -> float:
        """Mean time between the starts of two polls (over the last 20): the time resolution."""
        gaps = [b[0] - a[0] for s in self.samples.values() for a, b in zip(s[-21:], s[-20:], strict=False)]
        return sum(gaps) / len(gaps) if gaps else 0.0

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def svc_chain(cluster: ServicesCluster, node: str, key: str) -> str:
    """The RAFTORCH-SVC-... chain of service port `key` (namespace/name:port) on a node."""
    for line in cluster.iptables_save(node, "nat").splitlines():
        if line.startswith("-A RAFTORCH-SERVICES") and f'--comment "{key}"' in line and "-j RAFTORCH-SVC-" in line:
            return line.rsplit(" ", 1)[-1]
    raise AssertionError(f"no chain for {key} on {node}")


def chain_watch(cluster: ServicesCluster, chain: str, needle: str, timeout: float) -> dict[str, float]:
    """Polls one chain (`iptables -t nat -S CHAIN`, a few ms) on every node, in threads, until
    it contains `needle`; the wall-clock time each poll found it returned."""
    seen: dict[str, float] = {}

    def poll(node: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = sh("ip", "netns", "exec", cluster.hosts[node].netns, "iptables", "-t", "nat", "-S", chain,
                     check=False).stdout
            if needle in out:
                seen[node] = time.time()
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in cluster.hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return seen




def agents_idle_cpu(cluster: ServicesCluster, seconds: float = 10.0) -> dict[str, float]:
    """Each agent's CPU (with its children), in % of one core, over `seconds` without changes."""
    pids = {n: h.proc.pid for n, h in cluster.hosts.items() if h.proc is not None}
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    time.sleep(seconds)
    return {n: 100 * (cpu_seconds(p) - before[n]) / seconds for n, p in pids.items()}


def sync_cost(cluster: ServicesCluster, c: Client) -> dict[str, float]:
    """What one sync of a node's agent costs with the cluster's current services: the agent's
    own renderer and applier (raftorch.net), run in a scratch namespace of this benchmark."""
    from raftorch.agent.network import DEFAULT_CLUSTER_CIDR
    from raftorch.net import IptablesApplier, render_nat_rules, views_from

    services = [s for s in c.objects.list("services")[0] if isinstance(s, objects_pb2.Service)]
    endpoints = [e for e in c.objects.list("endpoints")[0] if isinstance(e, objects_pb2.Endpoints)]
    node_ip = next(iter(cluster.hosts.values())).ip
    scratch = f"rts-{cluster.tag}-scratch"
    sh("ip", "netns", "add", scratch)
    try:
        began = time.perf_counter()
        text = render_nat_rules(views_from(services, endpoints), [node_ip], cluster_cidr=DEFAULT_CLUSTER_CIDR)
        rendered = time.perf_counter()
        applier = IptablesApplier(netns=scratch)
        applier.apply(text)
        first = time.perf_counter()
        applier.apply(text)
        again = time.perf_counter()
    finally:
        sh("ip", "netns", "del", scratch, check=False)
    return {"render_s": rendered - began, "apply_first_s": first - rendered, "apply_same_s": again - first,
            "lines": len(text.splitlines())}


def new_pod_ip(c: Client, app: str, old: set[str], timeout: float = 60.0) -> str:
    found: list[str] = []

    def check() -> bool:
        found[:] = [p.status.pod_ip for p in pods_of(c, app)
                    if p.metadata.name not in old and p.status.pod_ip]
        return bool(found)

    eventually(check, timeout, f"a new {app} pod with an address", period=0.02)
    return found[0]


def one_change(cluster: ServicesCluster, c: Client, endpoints: Recorder) -> dict[str, Any]:
    """Service `probe` scaled +1: from its Endpoints update to the new pod's rule in the probe's
    chain on every node."""
    chain = svc_chain(cluster, sorted(cluster.hosts)[0], "default/probe:http")
    old = {p.metadata.name for p in pods_of(c, "probe")}
    t_scale = time.time()
    scale(c, "probe", len(old) + 1)
    ip = new_pod_ip(c, "probe", old)
    rules = chain_watch(cluster, chain, f"-> {ip}:8080", 120)
    t_ep = endpoints.wait_for(lambda k, e: e.metadata.name == "probe" and any(
        a.ip == ip for s in e.subsets for a in s.addresses), 60, "probe endpoints", after=t_scale)
    assert set(rules) == set(cluster.hosts), f"probe rules not on every node: {rules}"
    return {"one_change_s": max(rules.values()) - t_ep, "one_change_by_node": {n: t - t_ep for n, t in rules.items()},
            "one_change_scale_to_ep_s": t_ep - t_scale}


def create_services(c: Client, first: int, last: int) -> tuple[float, int]:
    """Creates services prop-<first>..prop-<last-1> from 8 threads; (seconds, ClusterIP collisions).

    Two concurrent creates can be given the same random ClusterIP by the masters; the store
    then refuses the second with AlreadyExists ("spec.clusterIP: already allocated ...")
    although the client asked for no address. Such creates are simply made again, and counted."""
    started = time.monotonic()
    collisions = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        for _ in range(10):
            try:
                c.objects.create(service(f"prop-{i:05d}", "prop", "ClusterIP"))
                return
            except AlreadyExists as err:
                if "clusterIP" not in str(err):
                    raise
                with lock:
                    collisions[0] += 1
        raise RuntimeError(f"prop-{i:05d}: ClusterIP collisions 10 times in a row")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(first, last)))
    return time.monotonic() - started, collisions[0]


def propagation(cluster: ServicesCluster, c: Client, count: int, created: int) -> dict[str, Any]:
    row: dict[str, Any] = {"services": count}
    prop_ips = {p.status.pod_ip for p in ready_pods(c, "prop")}
    sampler = DnatSampler(cluster)
    try:
        t0 = time.time()
        row["create_s"], row["clusterip_collisions"] = create_services(c, created, count)
        total = count

        def synced(counts: Counter[str]) -> bool:
            return all(counts[ip] == total for ip in prop_ips)

        loaded = sampler.wait(synced, t0, 600)
        row["initial_sync_s"] = max(loaded.values()) - t0
        row["nat_lines"] = len(cluster.iptables_save(sorted(cluster.hosts)[0], "nat").splitlines())
        log(f"{count} services created in {row['create_s']:.1f}s ({row['clusterip_collisions']} ClusterIP "
            f"collisions retried), in every node's rules "
            f"{row['initial_sync_s']:.1f}s after the first create ({row['nat_lines']} nat lines per node)")

        endpoints = Recorder(c, "endpoints")
        try:
            row.update(one_change(cluster, c, endpoints))
            log(f"K={count}: probe endpoint change -> every node's rules {row['one_change_s']:.3f}s")

            # The change seen by all K services: prop +1.
            old = {p.metadata.name for p in pods_of(c, "prop")}
            t_scale = time.time()
            scale(c, "prop", len(old) + 1)
            ip = new_pod_ip(c, "prop", old)
            names = {f"prop-{i:05d}" for i in range(count)}

            def holds(kind: str, e: Any) -> bool:
                return e.metadata.name in names and any(a.ip == ip for s in e.subsets for a in s.addresses)

            t_first_ep = endpoints.wait_for(holds, 60, "a prop endpoints update", after=t_scale)
            eventually(lambda: len({e.metadata.name for t, k, e in list(endpoints.events)
                                    if t >= t_scale and holds(k, e)}) == count, 300, "all prop endpoints",
                       period=0.05)
            t_last_ep = max(min(t for t, k, e in list(endpoints.events) if t >= t_scale and holds(k, e)
                                and e.metadata.name == name) for name in names)
            first_rule = sampler.wait(lambda counts: counts[ip] >= 1, t_scale, 300)
            all_rules = sampler.wait(lambda counts: counts[ip] == count, t_scale, 600)
            row.update(
                k_first_ep_s=t_first_ep - t_scale, k_last_ep_s=t_last_ep - t_scale,
                k_first_rule_s=max(first_rule.values()) - t_first_ep,
                k_all_rules_s=max(all_rules.values()) - t_last_ep,
                k_all_rules_from_scale_s=max(all_rules.values()) - t_scale)
            log(f"K={count}: prop change: endpoints {row['k_first_ep_s']:.2f}..{row['k_last_ep_s']:.2f}s, "
                f"all rules {row['k_all_rules_from_scale_s']:.2f}s after the scale")
        finally:
            endpoints.close()
        row["poll_period_s"] = sampler.period()
    finally:
        sampler.close()
    row["idle_cpu"] = agents_idle_cpu(cluster)
    row.update(sync_cost(cluster, c))
    log(f"K={count}: agents' CPU without changes {row['idle_cpu']}; one sync: render {row['render_s']:.2f}s, "
        f"apply {row['apply_first_s']:.2f}s (first) / {row['apply_same_s']:.2f}s (same rules again)")
    return row


# -- main -----------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 s per row, 100 services only")
    ap.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per data-path run (default 4)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per data-path phase (default 3)")
    ap.add_argument("--services", default=None, help="service counts for propagation (default 100,1000)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    rounds = args.rounds or (2 if args.quick else 3)
    counts = sorted(int(x) for x in (args.services or ("100" if args.quick else "100,1000")).split(","))
    try:
        require_support()
    except Unusable as why:
        print(f"services_bench: {why}", file=sys.stderr)
        sys.exit(2)
    root = Path(tempfile.mkdtemp(prefix="raftorch-svc-bench-"))
    cluster = ServicesCluster(root)
    results: dict[str, Any] = {"threads": args.threads, "seconds": seconds, "rounds": rounds, "rows": [],
                               "propagation": [],
                               "load_before": os.getloadavg()[0]}
    started = time.monotonic()
    try:
        log(f"building the topology in {root}")
        cluster.start()
        with cluster.client(timeout=10.0, retry_for=30.0) as c:
            c.objects.create(deployment("bench", 1))
            np_svc = c.objects.create(service("bench", "bench", "NodePort"))
            c.objects.create(deployment("prop", 1))
            c.objects.create(deployment("probe", 1))
            c.objects.create(service("probe", "probe", "ClusterIP"))
            assert isinstance(np_svc, objects_pb2.Service)
            node_port = np_svc.spec.ports[0].node_port
            (pod,) = wait_serving(c, "bench", "bench", 1)
            eventually(lambda: len(ready_pods(c, "prop")) == 1 and len(ready_pods(c, "probe")) == 1, 60,
                       "prop and probe pods")
            own = pod.spec.node_name
            other = next(n for n in cluster.hosts if n != own)
            at = {n: f"{cluster.hosts[n].ip}:{node_port}" for n in cluster.hosts}
            wait_answering(cluster, [at[own], at[other], f"{pod.status.pod_ip}:8080"])

            pod_ip = ("pod IP, no service", f"{pod.status.pod_ip}:8080")

            def measure(name: str, rows: list[tuple[str, str]]) -> None:
                results["rows"] += phase(cluster, name, [pod_ip, *rows], args.threads, seconds, rounds)

            measure("iptables, 3 services", [("NodePort, iptables, pod's node", at[own]),
                                             ("NodePort, iptables, other node", at[other])])
            base = {"idle_cpu": agents_idle_cpu(cluster), **sync_cost(cluster, c)}
            recorder = Recorder(c, "endpoints")
            try:
                base.update(one_change(cluster, c, recorder))
            finally:
                recorder.close()
            results["baseline"] = base
            log(f"baseline: agents' CPU without changes {base['idle_cpu']}, one sync: apply "
                f"{base['apply_first_s']:.2f}s, probe endpoint change -> every node's rules "
                f"{base['one_change_s']:.3f}s")
            created = 0
            for count in counts:
                results["propagation"].append(propagation(cluster, c, count, created))
                created = count
            measure(f"iptables, {created + 3:,} services", [("NodePort, iptables, pod's node", at[own])])
            log("restarting the agents with --network-mode userspace")
            for node in cluster.hosts:
                cluster.stop_agent(node)
                cluster.uninstall(node)
                cluster.start_agent(node, "userspace")
            cluster.wait_nodes(120)
            wait_answering(cluster, [at[own], at[other]], 120)
            leftover = [n for n in cluster.hosts if "RAFTORCH" in cluster.iptables_save(n)]
            results["userspace_iptables_leftovers"] = leftover
            measure("userspace", [("NodePort, userspace, pod's node", at[own]),
                                  ("NodePort, userspace, other node", at[other])])
    except KeyboardInterrupt:
        log("interrupted; tearing down")
        results["error"] = "interrupted"
    except Exception as exc:
        traceback.print_exc()
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        results["load_after"] = os.getloadavg()[0]
        cluster.teardown()
        shutil.rmtree(root, ignore_errors=True)
    results["ipvs"] = ipvs_available()
    results["elapsed_s"] = time.monotonic() - started
    report(results)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    if results.get("error"):
        sys.exit(1)


def report(results: dict[str, Any]) -> None:
    print()
    print(f"Data path: {results['threads']} client threads, one TCP connection per request (HTTP/1.0, no "
          f"keep-alive), 1 httpd pod; {results['rounds']} interleaved rounds of {results['seconds']:g} s per phase, "
          "medians")
    print(f"{'phase':<24} {'path':<31} {'req/s':>7} {'(range)':>13} {'p50':>8} {'p99':>9} {'max':>10} {'err':>4} "
          f"{'vs pod IP':>9}")
    for r in results["rows"]:
        base = next((b["rps"] for b in results["rows"] if b["phase"] == r["phase"] and b["path"].startswith("pod IP")),
                    None)
        rel = f"{r['rps'] / base:.0%}" if base and r["rps"] and not r["path"].startswith("pod IP") else ""
        lo, hi = r["rps_range"]
        print(f"{r['phase']:<24} {r['path']:<31} {fmt(r['rps'], '', 0):>7} {f'({lo:,.0f}-{hi:,.0f})':>13} "
              f"{fmt(r['p50_ms'], ' ms', 1):>8} {fmt(r['p99_ms'], ' ms', 1):>9} {fmt(r['max_ms'], ' ms', 0):>10} "
              f"{r['errors']:>4} {rel:>9}")
    if results.get("userspace_iptables_leftovers"):
        print(f"  !! RAFTORCH rules left in userspace mode on {results['userspace_iptables_leftovers']}")
    if results["propagation"]:
        print()
        print("Propagation (iptables mode, 2 nodes; times until the rules are on EVERY node)")
        print(f"{'services':>9} {'nat lines':>10} {'load K':>8} {'1 change':>9} {'K: first':>9} {'K: all':>8} "
              f"{'from scale':>11} {'poll':>6} {'apply: new/same':>16} {'idle agent CPU':>15}")
        rows = [{"services": 3, **results["baseline"]}] if results.get("baseline") else []
        for p in rows + results["propagation"]:
            cpu = "/".join(f"{v:.0f}" for _, v in sorted(p["idle_cpu"].items())) + " %"
            print(f"{p['services']:>9,} {p.get('nat_lines', p['lines']):>10,} {fmt(p.get('initial_sync_s'), ' s'):>8} "
                  f"{fmt(p.get('one_change_s'), ' s', 3):>9} {fmt(p.get('k_first_rule_s'), ' s', 2):>9} "
                  f"{fmt(p.get('k_all_rules_s'), ' s', 2):>8} {fmt(p.get('k_all_rules_from_scale_s'), ' s', 2):>11} "
                  f"{fmt(p.get('poll_period_s'), ' s', 2):>6} "
                  f"{fmt(p['apply_first_s'], '', 2) + ' / ' + fmt(p['apply_same_s'], ' s', 2):>16} {cpu:>15}")
        print("  services 3: the benchmark's own 3 services only. load K: from the first create of K services to all")
        print("    of them in every node's rules. 1 change: service `probe` scaled 1->2, from its Endpoints update")
        print("    (watch) to the new pod's rule in its chain on every node (`iptables -S CHAIN` polled, ~10 ms),")
        print("    with K other services in the rules. K: the K services' deployment scaled +1, i.e. K Endpoints")
        print("    updates: first = from the first update to the first rule on every node; all = from the last")
        print("    update to all K rules on every node; from scale = from the scale call to that. poll = time")
        print("    between two full iptables-save dumps (the resolution of first/all/load K).")
        print("  apply = one IptablesApplier.apply of the rules the agent renders for this cluster, timed in a scratch")
        print("    namespace: loading them new / loading the same rules again (what the agent does every 5 s without")
        print("    any change). idle agent CPU = each node's agent with its iptables children, % of one core, over")
        print("    10 s without any change.")
        if results.get("baseline"):
            by_node = sorted(results["baseline"]["one_change_by_node"].items())
            print("  3 services: 1 change per node: "
                  + ", ".join(f"{n.rsplit('-', 1)[-1]} {t:.3f} s" for n, t in by_node))
        for p in results["propagation"]:
            print(f"  K={p['services']:,}: {p['clusterip_collisions']} ClusterIP collisions while creating (retried); "
                  f"Endpoints updated {p['k_first_ep_s']:.2f}..{p['k_last_ep_s']:.2f} s after the scale; "
                  "1 change per node: "
                  + ", ".join(f"{n.rsplit('-', 1)[-1]} {t:.3f} s" for n, t in sorted(p["one_change_by_node"].items())))
    print()
    if results["ipvs"]:
        print("Docker Swarm routing mesh: IPVS is present here, but this script does not measure Swarm.")
    else:
        print("Docker Swarm routing mesh: not measured - Swarm publishes ports through IPVS, which this kernel "
              "lacks (no /proc/net/ip_vs, no modules to load), so `docker service create --publish` cannot "
              "publish a port on this machine at all.")
    if results.get("error"):
        print(f"INCOMPLETE: {results['error']} (figures so far above)")
    print(f"Load average {results['load_before']:.1f} before, {results['load_after']:.1f} after; "
          f"{results['elapsed_s']:.0f} s in all.")


if __name__ == "__main__":
    main()
