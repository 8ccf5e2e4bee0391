"""raftctl describe: one object as readable key: value blocks, with the events about it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import click
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.cli import printers
from raftorch.cli.common import complete_kind, namespace_option, resolve_kind
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.cli.output import as_yaml
from raftorch.cli.top import memory_text
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound
from raftorch.objects import EVENT, Kind, controller_of, parse_memory
from raftorch.objects.manifest import to_manifest
from raftorch.objects.meta import meta

NONE = printers.NONE
REVISION_ANNOTATION = "deployment.raftorch.io/revision"


@dataclass
class Doc:
    """Lines of `Key: value`, aligned per block of one indentation, as kubectl's tabwriter."""

    entries: list[tuple[int, str, str | None]] = field(default_factory=list)

    def kv(self, key: str, value: object, indent: int = 0) -> None:
        self.entries.append((indent, key, str(value)))

    def heading(self, key: str, indent: int = 0) -> None:
        self.entries.append((indent, key, None))

    def lines_of(self, key: str, values: Sequence[str], indent: int = 0) -> None:
        """A key whose value spans lines (labels, annotations): the rest under the first."""
        self.kv(key, values[0] if values else NONE, indent)
        for value in values[1:]:
            self.entries.append((indent, "", value))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 1) -> None:
        cells = [list(headers), ["-" * len(h) for h in headers], *[list(map(str, r)) for r in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for r in cells:
            self.entries.append((indent, "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), None))

    def render(self) -> str:
        out: list[str] = []
        for i, (indent, key, value) in enumerate(self.entries):
            pad = "  " * indent
            if value is None:
                out.append(f"{pad}{key}")
                continue
            label = f"{key}:" if key else ""
            out.append(f"{pad}{label.ljust(self._width(i))}  {value}".rstrip())
        return "\n".join(out) + "\n"

    def _width(self, index: int) -> int:
        """Values line up across the keys of one indentation, up to a shallower line."""
        indent = self.entries[index][0]
        lo = index
        while lo > 0 and self.entries[lo - 1][0] >= indent:
            lo -= 1
        hi = index
        while hi + 1 < len(self.entries) and self.entries[hi + 1][0] >= indent:
            hi += 1
        return max(len(k) + 1 for ind, k, v in self.entries[lo:hi + 1] if ind == indent and v is not None and k)


def _pairs(values: Mapping[str, str]) -> list[str]:
    return [f"{k}={values[k]}" for k in sorted(values)]


def _header(doc: Doc, kind: Kind, msg: Message) -> None:
    m = meta(msg)
    doc.kv("Name", m.name)
    if kind.namespaced:
        doc.kv("Namespace", m.namespace)
    doc.lines_of("Labels", _pairs(m.labels))
    doc.lines_of("Annotations", [f"{k}: {m.annotations[k]}" for k in sorted(m.annotations)])
    doc.kv("CreationTimestamp", m.creation_timestamp or NONE)
    owner = controller_of(m)
    if owner is not None:
        doc.kv("Controlled By", f"{owner.kind}/{owner.name}")


def _conditions(doc: Doc, conditions: Iterable[objects_pb2.Condition], node: bool = False) -> None:
    rows = [[c.type, c.status, *([c.last_heartbeat_time or NONE] if node else []),
             c.last_transition_time or NONE, c.reason, c.message] for c in conditions]
    doc.heading("Conditions:")
    if not rows:
        doc.heading(NONE, 1)
        return
    headers = ["Type", "Status", *(["LastHeartbeatTime"] if node else []), "LastTransitionTime", "Reason", "Message"]
    doc.table(headers, rows)


def _container(doc: Doc, c: objects_pb2.Container, status: objects_pb2.ContainerStatus | None, indent: int) -> None:
    doc.heading(f"{c.name}:", indent)
    inner = indent + 1
    if status is not None and status.container_id:
        doc.kv("Container ID", status.container_id, inner)
    doc.kv("Image", c.image, inner)
    ports = [f"{p.container_port}/{p.protocol or 'TCP'}" + (f" ({p.name})" if p.name else "") for p in c.ports]
    doc.kv("Ports" if len(ports) > 1 else "Port", ", ".join(ports) or NONE, inner)
    if c.command:
        doc.lines_of("Command", list(c.command), inner)
    if c.args:
        doc.lines_of("Args", list(c.args), inner)
    if status is not None:
        _state(doc, "State", status.state, inner)
        if status.last_state.state:
            _state(doc, "Last State", status.last_state, inner)
        doc.kv("Ready", "True" if status.ready else "False", inner)
        doc.kv("Restart Count", status.restart_count, inner)
    for group, values in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
        if values:
            doc.heading(f"{group}:", inner)
            for key in sorted(values):
                doc.kv(key, values[key], inner + 1)
    for label, probe in (("Liveness", c.liveness_probe), ("Readiness", c.readiness_probe)):
        if probe.ByteSize():
            doc.kv(label, _probe(probe), inner)
    doc.lines_of("Environment", [_env(e) for e in c.env], inner)
    if c.env_from:
        doc.lines_of("Environment Variables from", [
            (f"{s.config_map_ref.name} ConfigMap" if s.HasField("config_map_ref") else f"{s.secret_ref.name} Secret")
            + (f" (prefix {s.prefix})" if s.prefix else "") for s in c.env_from], inner)
    doc.lines_of("Mounts", [f"{m.mount_path} from {m.name} ({'ro' if m.read_only else 'rw'}"
                            + (f", path {m.sub_path!r})" if m.sub_path else ")") for m in c.volume_mounts], inner)


def _env(e: objects_pb2.EnvVar) -> str:
    """A variable; one from a ConfigMap or Secret by reference, never its value (as kubectl)."""
    if e.value_from.HasField("config_map_key_ref"):
        ref = e.value_from.config_map_key_ref
        return f"{e.name}: <set to the key '{ref.key}' of config map '{ref.name}'>"
    if e.value_from.HasField("secret_key_ref"):
        ref = e.value_from.secret_key_ref
        return f"{e.name}: <set to the key '{ref.key}' in secret '{ref.name}'>"
    return f"{e.name}={e.value}"


def _volumes(doc: Doc, volumes: Sequence[objects_pb2.Volume]) -> None:
    if not volumes:
        doc.kv("Volumes", NONE)
        return
    doc.heading("Volumes:")
    for v in volumes:
        doc.heading(f"{v.name}:", 1)
        if v.HasField("empty_dir"):
            doc.kv("Type", "EmptyDir (a temporary directory that shares a pod's lifetime)", 2)
            doc.kv("Medium", v.empty_dir.medium, 2)
            doc.kv("SizeLimit", v.empty_dir.size_limit or "<unset>", 2)
        elif v.HasField("config_map"):
            doc.kv("Type", "ConfigMap (a volume populated by a ConfigMap)", 2)
            doc.kv("Name", v.config_map.name, 2)
        elif v.HasField("secret"):
            doc.kv("Type", "Secret (a volume populated by a Secret)", 2)
            doc.kv("SecretName", v.secret.secret_name, 2)
        elif v.HasField("host_path"):
            doc.kv("Type", "HostPath (bare host directory volume)", 2)
            doc.kv("Path", v.host_path.path, 2)
        elif v.HasField("persistent_volume_claim"):
            doc.kv("Type", "PersistentVolumeClaim (a reference to a claim in the same namespace)", 2)
            doc.kv("ClaimName", v.persistent_volume_claim.claim_name, 2)
            doc.kv("ReadOnly", str(v.persistent_volume_claim.read_only).lower(), 2)


def _state(doc: Doc, label: str, state: objects_pb2.ContainerState, indent: int) -> None:
    doc.kv(label, (state.state or "waiting").capitalize(), indent)
    for key, value in (("Reason", state.reason), ("Message", state.message), ("Started", state.started_at),
                       ("Finished", state.finished_at)):
        if value:
            doc.kv(key, value, indent + 1)
    if state.state == "terminated":
        doc.kv("Exit Code", state.exit_code, indent + 1)


def _probe(p: objects_pb2.Probe) -> str:
    if p.HasField("http_get"):
        how = f"http-get {p.http_get.scheme.lower() or 'http'}://:{p.http_get.port}{p.http_get.path}"
    elif p.HasField("tcp_socket"):
        how = f"tcp-socket :{p.tcp_socket.port}"
    else:
        how = f"exec [{' '.join(p.exec.command)}]"
    return (f"{how} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds}s period={p.period_seconds}s "
            f"#success={p.success_threshold} #failure={p.failure_threshold}")


def _template(doc: Doc, template: objects_pb2.PodTemplateSpec) -> None:
    doc.heading("Pod Template:")
    doc.lines_of("Labels", _pairs(template.metadata.labels), 1)
    doc.heading("Containers:", 1)
    for c in template.spec.containers:
        _container(doc, c, None, 2)


def _pod(doc: Doc, client: Client, pod: objects_pb2.Pod) -> None:
    now = time.time()
    doc.kv("Node", f"{pod.spec.node_name}/{pod.status.host_ip}" if pod.status.host_ip else pod.spec.node_name or NONE)
    doc.kv("Start Time", pod.status.start_time or NONE)
    doc.kv("Status", printers.pod_summary(pod, now).status)
    for key, value in (("Reason", pod.status.reason), ("Message", pod.status.message)):
        if value:
            doc.kv(key, value)
    doc.kv("IP", pod.status.pod_ip or NONE)
    if pod.spec.init_containers:
        doc.heading("Init Containers:")
        init_statuses = {s.name: s for s in pod.status.init_container_statuses}
        for c in pod.spec.init_containers:
            _container(doc, c, init_statuses.get(c.name), 1)
    doc.heading("Containers:")
    statuses = {s.name: s for s in pod.status.container_statuses}
    for c in pod.spec.containers:
        _container(doc, c, statuses.get(c.name), 1)
    _conditions(doc, pod.status.conditions)
    _volumes(doc, pod.spec.volumes)
    doc.lines_of("Node-Selectors", _pairs(pod.spec.node_selector))
    doc.kv("Restart Policy", pod.spec.restart_policy or "Always")


def _owned(client: Client, kind: str, namespace: str, owner: Message) -> list[Message]:
    items, _ = client.objects.list(kind, namespace)
    uid = meta(owner).uid
    return [i for i in items if (ref := controller_of(meta(i))) is not None and ref.uid == uid]


def _revision(rs: Message) -> int:
    value = meta(rs).annotations.get(REVISION_ANNOTATION, "")
    return int(value) if value.isdigit() else 0


def _deployment(doc: Doc, client: Client, d: objects_pb2.Deployment) -> None:
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    st = d.status
    doc.kv("Selector", ",".join(_pairs(d.spec.selector.match_labels)) or NONE)
    doc.kv("Replicas", f"{desired} desired | {st.updated_replicas} updated | {st.replicas} total | "
                       f"{st.available_replicas} available | {st.unavailable_replicas} unavailable")
    doc.kv("StrategyType", d.spec.strategy.type or "RollingUpdate")
    doc.kv("MinReadySeconds", d.spec.min_ready_seconds)
    if (d.spec.strategy.type or "RollingUpdate") == "RollingUpdate":
        r = d.spec.strategy.rolling_update
        doc.kv("RollingUpdateStrategy",
               f"{r.max_unavailable or '25%'} max unavailable, {r.max_surge or '25%'} max surge")
    if d.spec.paused:
        doc.kv("Paused", "true")
    _template(doc, d.spec.template)
    _conditions(doc, st.conditions)
    owned = sorted(_owned(client, "replicasets", d.metadata.namespace, d), key=_revision)
    new = owned[-1] if owned else None
    old = [rs for rs in owned[:-1] if isinstance(rs, objects_pb2.ReplicaSet) and rs.spec.replicas > 0]

    def describe_rs(rs: Message) -> str:
        assert isinstance(rs, objects_pb2.ReplicaSet)
        return f"{rs.metadata.name} ({rs.status.replicas}/{rs.spec.replicas} replicas created)"

    doc.kv("OldReplicaSets", ", ".join(describe_rs(rs) for rs in old) or NONE)
    doc.kv("NewReplicaSet", describe_rs(new) if new is not None else NONE)


def _replica_set(doc: Doc, client: Client, rs: objects_pb2.ReplicaSet) -> None:
    doc.kv("Selector", ",".join(_pairs(rs.spec.selector.match_labels)) or NONE)
    doc.kv("Replicas", f"{rs.status.replicas} current / {rs.spec.replicas} desired")
    pods = [p for p in _owned(client, "pods", rs.metadata.namespace, rs) if isinstance(p, objects_pb2.Pod)]
    phases = [p.status.phase or "Pending" for p in pods]
    doc.kv("Pods Status", f"{phases.count('Running')} Running / {phases.count('Pending')} Waiting / "
                          f"{phases.count('Succeeded')} Succeeded / {phases.count('Failed')} Failed")
    _template(doc, rs.spec.template)


def _service(doc: Doc, client: Client, svc: objects_pb2.Service) -> None:
    doc.kv("Selector", ",".join(_pairs(svc.spec.selector)) or NONE)
    doc.kv("Type", svc.spec.type or "ClusterIP")
    doc.kv("IP", svc.spec.cluster_ip or NONE)
    for p in svc.spec.ports:
        doc.kv("Port", f"{p.name or '<unset>'}  {p.port}/{p.protocol or 'TCP'}")
        doc.kv("TargetPort", f"{p.target_port or p.port}/{p.protocol or 'TCP'}")
        if p.node_port:
            doc.kv("NodePort", f"{p.name or '<unset>'}  {p.node_port}/{p.protocol or 'TCP'}")
    try:
        ep = client.objects.get("endpoints", svc.metadata.name, svc.metadata.namespace)
        assert isinstance(ep, objects_pb2.Endpoints)
        doc.kv("Endpoints", printers.endpoints_text(ep))
    except NotFound:  # an Endpoints object appears a moment after its service
        doc.kv("Endpoints", NONE)


def _node(doc: Doc, client: Client, node: objects_pb2.Node) -> None:
    now = time.time()
    doc.kv("Roles", printers.node_roles(node))
    taints = [f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}" for t in node.spec.taints]
    doc.kv("Taints", ", ".join(taints) or NONE)
    doc.kv("Unschedulable", "true" if node.spec.unschedulable else "false")
    _conditions(doc, node.status.conditions, node=True)
    doc.heading("Addresses:")
    for a in node.status.addresses:
        doc.kv(a.type, a.address, 1)
    for group, values in (("Capacity", node.status.capacity), ("Allocatable", node.status.allocatable)):
        doc.heading(f"{group}:")
        for key in sorted(values):
            doc.kv(key, _memory_units(values[key]) if key == "memory" else values[key], 1)
    doc.heading("System Info:")
    doc.kv("Container Runtime", node.status.runtime or NONE, 1)
    doc.kv("Agent Version", node.status.agent_version or NONE, 1)
    doc.kv("Agent Endpoint", node.status.agent_endpoint or NONE, 1)
    doc.kv("PodCIDR", node.spec.pod_cidr or NONE)
    pods, _ = client.objects.list("pods", "", field_selector=f"spec.nodeName={node.metadata.name}")
    active = [p for p in pods if isinstance(p, objects_pb2.Pod) and p.status.phase not in ("Succeeded", "Failed")]
    doc.heading(f"Non-terminated Pods: ({len(active)} in total)")
    if active:
        doc.table(["Namespace", "Name", "CPU Requests", "Memory Requests", "Age"],
                  [[p.metadata.namespace, p.metadata.name,
                    ",".join(c.resources.requests.get("cpu", "0") for c in p.spec.containers),
                    ",".join(c.resources.requests.get("memory", "0") for c in p.spec.containers),
                    printers.age(p.metadata.creation_timestamp, now)] for p in active])


def _secret(doc: Doc, secret: objects_pb2.Secret) -> None:
    """Keys and sizes only, as kubectl: a describe is often pasted where values must not go."""
    doc.kv("Type", secret.type or "Opaque")
    doc.heading("Data")
    doc.heading("====")
    for key in sorted(secret.data):
        doc.kv(key, f"{len(secret.data[key])} bytes")


def _other(doc: Doc, client: Client, msg: Message) -> None:
    body = {k: v for k, v in to_manifest(msg).items() if k not in ("apiVersion", "kind", "metadata")}
    for line in as_yaml(body).splitlines() if body else []:
        doc.heading(line)


def _memory_units(value: str) -> str:
    """A stored memory quantity in Ki/Mi/Gi (agents store plain bytes)."""
    try:
        return memory_text(parse_memory(value))
    except Invalid:
        return value


def _events(doc: Doc, client: Client, kind: Kind, msg: Message) -> None:
    m = meta(msg)
    items, _ = client.objects.list(EVENT.plural, m.namespace if kind.namespaced else "")
    mine = [e for e in items if isinstance(e, objects_pb2.Event) and e.involved_object.kind == kind.name
            and e.involved_object.name == m.name
            and (not e.involved_object.uid or not m.uid or e.involved_object.uid == m.uid)]
    if not mine:
        doc.kv("Events", NONE)
        return
    now = time.time()
    mine.sort(key=printers.event_order)
    doc.heading("Events:")
    rows = []
    for e in mine:
        when = printers.age(printers.event_time(e), now)
        if e.count > 1:
            when += f" (x{e.count} over {printers.age(e.first_timestamp, now)})"
        rows.append([e.type or "Normal", e.reason, when, e.source or NONE, " ".join(e.message.split())])
    doc.table(["Type", "Reason", "Age", "From", "Message"], rows)


def describe_object(client: Client, kind: Kind, msg: Message) -> str:
    doc = Doc()
    _header(doc, kind, msg)
    if isinstance(msg, objects_pb2.Pod):
        _pod(doc, client, msg)
    elif isinstance(msg, objects_pb2.Deployment):
        _deployment(doc, client, msg)
    elif isinstance(msg, objects_pb2.ReplicaSet):
        _replica_set(doc, client, msg)
    elif isinstance(msg, objects_pb2.Service):
        _service(doc, client, msg)
    elif isinstance(msg, objects_pb2.Node):
        _node(doc, client, msg)
    elif isinstance(msg, objects_pb2.Namespace):
        doc.kv("Status", msg.status.phase or "Active")
    elif isinstance(msg, objects_pb2.Secret):
        _secret(doc, msg)
    else:
        _other(doc, client, msg)
    _events(doc, client, kind, msg)
    return doc.render()


@click.command()
@click.argument("kind_arg", metavar="KIND", shell_complete=complete_kind)
@click.argument("names", nargs=-1)
@namespace_option
@click.option("-l", "--selector", default="", help="Describe every object of KIND with these labels.")
@handle_errors
def describe(kind_arg: str, names: tuple[str, ...], namespace: str, selector: str) -> None:
    """Show one object (or several) in detail: its spec, status, conditions and events.

    \b
    Example:
      raftctl describe deployment web
      raftctl describe pod/web-6d4b9c-x7k2p
      raftctl describe nodes
      raftctl describe pods -l app=web
    """
    kind_text, slash, first = kind_arg.partition("/")
    if slash:
        if not first:
            raise Invalid(f'"{kind_arg}": expected KIND/NAME')
        names = (first, *names)
    kind = resolve_kind(kind_text)
    client = get_ctx().client()
    ns = namespace if kind.namespaced else ""
    if names:
        objects = [client.objects.get(kind.plural, name, ns) for name in names]
    else:
        objects, _ = client.objects.list(kind.plural, ns, label_selector=selector)
        if not objects:
            click.echo(f"No resources found in {namespace} namespace." if kind.namespaced else "No resources found",
                       err=True)
            return
    click.echo("\n\n".join(describe_object(client, kind, o).rstrip("\n") for o in objects))
