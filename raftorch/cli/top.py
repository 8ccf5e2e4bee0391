"""raftctl top: CPU and memory of nodes and pods, as kubectl top prints them.

The figures come from the agents' samples (every ~15 s), kept in the leader's memory.
"""

from __future__ import annotations

import click

from raftorch.api.v1 import agents_pb2, objects_pb2
from raftorch.cli.common import namespace_option
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.output import table
from raftorch.errors import Invalid, NotFound
from raftorch.objects import parse_cpu, parse_memory

MI = 1024 * 1024


def cpu_text(millicores: int) -> str:
    return f"{max(0, millicores)}m"


def memory_mi(size: int) -> str:
    """kubectl top's unit: whole mebibytes."""
    return f"{max(0, size) // MI}Mi"


def memory_text(size: int) -> str:
    """A byte count in Kubernetes' binary units: exact Gi/Mi/Ki when it divides, else whole Ki."""
    for suffix, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size // 1024}Ki" if size >= 1024 else str(size)


def _percent(used: int, capacity: int) -> str:
    return f"{round(100 * used / capacity)}%" if capacity > 0 else "<unknown>"


@click.group()
def top() -> None:
    """Show CPU and memory use of nodes or pods (sampled by the agents every ~15 s).

    \b
    Example:
      raftctl top nodes
      raftctl top pods -A --containers
    """


@top.command("nodes")
@click.argument("name", required=False)
@handle_errors
def top_nodes(name: str | None) -> None:
    """CPU and memory of each node.

    \b
    Example:
      raftctl top nodes
    """
    client = get_ctx().client()
    usage = {u.node: u for u in client.usage()}
    nodes, _ = client.objects.list("nodes")
    rows = []
    for node in sorted((n for n in nodes if isinstance(n, objects_pb2.Node)), key=lambda n: n.metadata.name):
        if name and node.metadata.name != name:
            continue
        u = usage.get(node.metadata.name)
        if u is None:
            continue
        capacity = node.status.allocatable or node.status.capacity
        try:
            cpu_cap = parse_cpu(capacity.get("cpu", "0"))
            mem_cap = parse_memory(capacity.get("memory", "0"))
        except Invalid:
            cpu_cap = mem_cap = 0
        rows.append([node.metadata.name, cpu_text(u.cpu_millicores), _percent(u.cpu_millicores, cpu_cap),
                     memory_mi(u.memory_bytes), _percent(u.memory_bytes, mem_cap)])
    if name and not rows:
        raise NotFound(f'metrics for node "{name}" are not available yet')
    if not rows:
        raise NotFound("metrics not available yet: agents report every ~15 s")
    table(["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"], rows, upper=False)


def _pod_rows(nodes: list[agents_pb2.NodeUsage], namespace: str, name: str | None,
              containers: bool, all_namespaces: bool) -> tuple[list[str], list[list[str]]]:
    pods = sorted((p for u in nodes for p in u.pods
                   if (all_namespaces or p.namespace == namespace) and (not name or p.name == name)),
                  key=lambda p: (p.namespace, p.name))
    prefix = ["NAMESPACE"] if all_namespaces else []
    rows: list[list[str]] = []
    if containers:
        for p in pods:
            for c in sorted(p.containers, key=lambda c: c.name):
                ns = [p.namespace] if all_namespaces else []
                rows.append([*ns, p.name, c.name, cpu_text(c.cpu_millicores), memory_mi(c.memory_bytes)])
        return [*prefix, "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"], rows
    for p in pods:
        ns = [p.namespace] if all_namespaces else []
        rows.append([*ns, p.name, cpu_text(sum(c.cpu_millicores for c in p.containers)),
                     memory_mi(sum(c.memory_bytes for c in p.containers))])
    return [*prefix, "NAME", "CPU(cores)", "MEMORY(bytes)"], rows


@top.command("pods")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods of every namespace.")
@click.option("--containers", is_flag=True, help="One line per container.")
@handle_errors
def top_pods(name: str | None, namespace: str, all_namespaces: bool, containers: bool) -> None:
    """CPU and memory of each pod (or container).

    \b
    Example:
      raftctl top pods
      raftctl top pods -A --containers
    """
    if all_namespaces and name:
        raise Invalid("a pod cannot be named across all namespaces; drop -A and use -n")
    headers, rows = _pod_rows(get_ctx().client().usage(), namespace, name, containers, all_namespaces)
    if name and not rows:
        raise NotFound(f'metrics for pod "{namespace}/{name}" are not available yet')
    if not rows:
        where = "" if all_namespaces else f" in {namespace} namespace"
        raise NotFound(f"metrics not available yet{where}: agents report every ~15 s")
    table(headers, rows, upper=False)
