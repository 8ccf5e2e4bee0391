"""A seeded fuzz of three real masters: random and mutated requests to every RPC, garbage on
the peer port. Afterwards every master lives, one leads, earlier writes are intact, and no
request got UNKNOWN or INTERNAL: bad input always has a code that names the fault."""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from raftorch import rpc
from raftorch.api.v1 import agents_pb2, auth_pb2, cluster_pb2, kv_pb2, objects_pb2, resources_pb2
from raftorch.local.masters import LocalMasters
from raftorch.objects import wrap

pytestmark = pytest.mark.processes

SEED = 20261203
REQUESTS = 12_000
STREAMS = 400
CONCURRENCY = 48
UNARY_DEADLINE = 3.0
STREAM_DEADLINE = 1.0
KEPT_PREFIX = "/kept/"
KEPT_NAMESPACE = "kept-ns"
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

SERVICES = [
    kv_pb2.DESCRIPTOR.services_by_name["KV"],
    cluster_pb2.DESCRIPTOR.services_by_name["Cluster"],
    resources_pb2.DESCRIPTOR.services_by_name["Resources"],
    agents_pb2.DESCRIPTOR.services_by_name["Agents"],
    agents_pb2.DESCRIPTOR.services_by_name["Pods"],
    auth_pb2.DESCRIPTOR.services_by_name["Auth"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]

# Strings worth trying: plausible ones (names, kinds, selectors, keys) reach deep into the
# masters; hostile ones (the masters' own keys, odd and long text) test the edge. None starts
# with "/k" or equals the kept namespace, so no fuzzed write can touch what is kept.
STRINGS = [
    "", "a", "web", "default", "raftorch-system", "pods", "Pod", "deployments", "svc", "nodes", "ns", "events",
    "n1", "node-1", "c0", "app=web", "app in (a,b),!tier", "spec.nodeName=n1", "metadata.name!=x", "fuzz/a",
    "fuzz/b", "Always", "Never", "TCP", "UDP", "ClusterIP", "NodePort", "Orphan", "Background", "10.96.0.10",
    "10.244.1.0/24", "500m", "128Mi", "2024-01-01T00:00:00Z", "25%", "raftorch/busybox:latest", "127.0.0.1:1",
    "True", "Ready", "Running", "Pending", "http", "/healthz", "HTTP",
]
HOSTILE_STRINGS = [
    "/registry/pods/default/zz", "/registry/", "/reg", "/", "a=b=c", "1e400", "not a time", "é☃\u200b",
    "\x00\x01", "ADDED", "-", "..", "a" * 64, "x" * 300, "k" * 1025, "r" * 129, "y" * 70_000, "z" * 300_000,
]
INTS = [0, 1, 2, 3, 5, 30, 80, 8080, 30080]
HOSTILE_INTS = [-1, 65535, 65536, 2**31 - 1, -(2**31), 2**62, 2**62 + 1, 2**63 - 1, -(2**63)]
HOSTILE = 0.05


def _bounds(f: FieldDescriptor) -> tuple[int, int]:
    t = f.type
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return -(2**31), 2**31 - 1
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return 0, 2**32 - 1
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return 0, 2**64 - 1
    return -(2**63), 2**63 - 1


class Generator:
    """Requests built from the schema, with a seeded random source."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def scalar(self, f: FieldDescriptor) -> object:
        rng = self.rng
        hostile = rng.random() < HOSTILE
        if f.type == FieldDescriptor.TYPE_STRING:
            return rng.choice(HOSTILE_STRINGS if hostile else STRINGS)
        if f.type == FieldDescriptor.TYPE_BYTES:
            roll = rng.random()
            if roll < 0.01:
                return b"v" * rng.choice([1024 * 1024 + 1, 1_200_000])
            return rng.randbytes(rng.randrange(0, 64))
        if f.type == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if f.enum_type is not None:
            numbers = [v.number for v in f.enum_type.values]
            return rng.choice([7, 99]) if hostile else rng.choice(numbers)
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return rng.choice([0.0, 1.5, -1.0, 1e308])
        low, high = _bounds(f)
        value = (rng.choice(HOSTILE_INTS) if rng.random() < 0.7 else rng.randint(low, high)) if hostile \
            else rng.choice(INTS)
        return min(max(value, low), high)

    def message(self, descriptor: Descriptor, depth: int = 0) -> Message:
        rng = self.rng
        msg: Message = GetMessageClass(descriptor)()
        for f in descriptor.fields:
            if rng.random() < 0.4 + 0.1 * depth:
                continue
            target = getattr(msg, f.name)
            entry = f.message_type
            if entry is not None and entry.GetOptions().map_entry:
                for _ in range(rng.choice([0, 1, 2, 3, 3])):
                    key = self.scalar(entry.fields_by_name["key"])
                    value_field = entry.fields_by_name["value"]
                    if value_field.message_type is not None:
                        target[key].CopyFrom(self.message(value_field.message_type, depth + 1))
                    else:
                        target[key] = self.scalar(value_field)
            elif f.is_repeated:
                count = rng.choice([0, 1, 1, 2, 3]) if rng.random() > 0.02 else rng.choice([70, 300, 1200])
                for _ in range(count):
                    if entry is not None:
                        if depth < 6:
                            target.add().CopyFrom(self.message(entry, depth + 1))
                    else:
                        target.append(self.scalar(f))
            elif entry is not None:
                if depth < 6:
                    target.CopyFrom(self.message(entry, depth + 1))
            else:
                setattr(msg, f.name, self.scalar(f))
        return msg

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        if not data:
            return rng.randbytes(rng.randrange(1, 32))
        out = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(5)
            pos = rng.randrange(len(out)) if out else 0
            if op == 0 and out:
                out[pos] ^= 1 << rng.randrange(8)
            elif op == 1:
                del out[pos:]
            elif op == 2:
                out[pos:pos] = rng.randbytes(rng.randrange(1, 16))
            elif op == 3 and out:
                out[pos] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0xC3, 0x0A, 0x12, 0x1A])
            else:
                out[pos:pos] = out[pos:pos + rng.randrange(1, 32)]
        return bytes(out)

    def request(self, method: MethodDescriptor, templates: dict[str, list[bytes]]) -> bytes:
        """Random fields, a mutated valid request, a valid one, or plain garbage."""
        rng = self.rng
        roll = rng.random()
        valid = templates.get(method.full_name, [])
        if roll < 0.45:
            return self.message(method.input_type).SerializeToString()
        if roll < 0.75 and valid:
            return self.mutate(rng.choice(valid))
        if roll < 0.85 and valid:
            return rng.choice(valid)
        if roll < 0.93:
            return rng.randbytes(rng.randrange(0, 200))
        nested = rng.choice([20, 99, 100, 101, 3000])
        return b"\x0a\x01k" + b"\x9b\x06" * nested + b"\x9c\x06" * nested


def _templates() -> dict[str, list[bytes]]:
    """Well-formed requests, the starting points of mutation."""
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="fz", namespace="default"))
    pod.spec.containers.add(name="c", image="raftorch/busybox:latest", command=["sleep", "1"])
    pod.spec.containers[0].ports.add(container_port=80)
    node = objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="fz-node"))
    node.status.capacity["cpu"] = "2"
    put = kv_pb2.PutRequest(key="fuzz/a", value=b"1", request_id="r1")
    by_method: dict[str, list[Message]] = {
        "raftorch.v1.KV.Put": [put],
        "raftorch.v1.KV.Range": [kv_pb2.RangeRequest(key="fuzz/", prefix=True, limit=5)],
        "raftorch.v1.KV.DeleteRange": [kv_pb2.DeleteRangeRequest(key="fuzz/b")],
        "raftorch.v1.KV.Txn": [kv_pb2.TxnRequest(
            compare=[kv_pb2.Compare(key="fuzz/a", target=kv_pb2.Compare.VERSION, version=1)],
            success=[kv_pb2.RequestOp(request_put=put)],
            failure=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key="fuzz/a"))])],
        "raftorch.v1.KV.Compact": [kv_pb2.CompactRequest(revision=2)],
        "raftorch.v1.KV.Watch": [kv_pb2.WatchRequest(key="fuzz/", prefix=True, start_revision=1)],
        "raftorch.v1.KV.LeaseGrant": [kv_pb2.LeaseGrantRequest(ttl=30)],
        "raftorch.v1.KV.LeaseRevoke": [kv_pb2.LeaseRevokeRequest(id=1)],
        "raftorch.v1.KV.LeaseKeepAlive": [kv_pb2.LeaseKeepAliveRequest(id=1)],
        "raftorch.v1.KV.LeaseTimeToLive": [kv_pb2.LeaseTimeToLiveRequest(id=1, keys=True)],
        "raftorch.v1.Resources.Create": [resources_pb2.CreateRequest(object=wrap(pod))],
        "raftorch.v1.Resources.Update": [resources_pb2.UpdateRequest(object=wrap(pod))],
        "raftorch.v1.Resources.UpdateStatus": [resources_pb2.UpdateRequest(object=wrap(pod))],
        "raftorch.v1.Resources.Get": [resources_pb2.GetRequest(kind="pods", namespace="default", name="fz")],
        "raftorch.v1.Resources.List": [resources_pb2.ListRequest(kind="pods", label_selector="app=web")],
        "raftorch.v1.Resources.Delete": [resources_pb2.DeleteRequest(kind="pods", namespace="default", name="fz")],
        "raftorch.v1.Resources.Watch": [resources_pb2.WatchObjectsRequest(kind="pods", namespace="default")],
        "raftorch.v1.Agents.RegisterNode": [agents_pb2.RegisterNodeRequest(node=node)],
        "raftorch.v1.Agents.Heartbeat": [agents_pb2.HeartbeatRequest(node="fz-node", sequence=1)],
        "raftorch.v1.Agents.ForwardHeartbeats": [agents_pb2.HeartbeatBatch(nodes=["fz-node"])],
        "raftorch.v1.Agents.ReportPodStatus": [agents_pb2.ReportPodStatusRequest(
            node="fz-node", updates=[agents_pb2.PodStatusUpdate(namespace="default", name="fz", uid="u")])],
        "raftorch.v1.Agents.WatchNodePods": [agents_pb2.WatchNodePodsRequest(node="fz-node")],
        "raftorch.v1.Pods.Logs": [agents_pb2.LogsRequest(namespace="default", pod="fz", tail_lines=5)],
        "raftorch.v1.Pods.PortForward": [agents_pb2.PortForwardFrame(namespace="default", pod="fz", port=80)],
        "grpc.health.v1.Health.Check": [health_pb2.HealthCheckRequest(service="raftorch.v1.KV")],
        "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo": [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="raftorch.v1.KV")],
    }
    return {name: [m.SerializeToString() for m in msgs] for name, msgs in by_method.items()}


@dataclass
class Tally:
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    methods: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)
    sent: int = 0

    def record(self, method: str, code: grpc.StatusCode, details: str, raw: bytes) -> None:
        self.codes[code.name] += 1
        self.methods[method] += 1
        if code in BAD_CODES:
            self.bad.append(f"{method} -> {code.name}: {details[:200]} (request {raw[:80]!r}, {len(raw)} bytes)")


async def _unary(chan: grpc.aio.Channel, endpoint: str, method: MethodDescriptor, raw: bytes, tally: Tally) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    call = chan.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        await call(raw, timeout=UNARY_DEADLINE)
        tally.record(path, grpc.StatusCode.OK, "", raw)
    except grpc.aio.AioRpcError as err:
        tally.record(path, err.code(), err.details() or "", raw)


# The credentials every fuzzed call carries (set by the test).
_CREDENTIALS: list[rpc.Credentials | None] = [None]


def _client_stream(endpoint: str, path: str, raws: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """A client-streaming call with the blocking API: the asyncio client reports INTERNAL
    ("Internal error from Core") when the server ends a call before the client half-closes,
    hiding the server's own status (grpc/grpc#36066)."""
    with rpc.channel(endpoint, _CREDENTIALS[0]) as chan:
        call = chan.stream_stream(path, request_serializer=None, response_deserializer=None)(
            iter(raws), timeout=STREAM_DEADLINE)
        try:
            for _ in call:
                pass
        except grpc.RpcError as err:
            return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


async def _stream(chan: grpc.aio.Channel, endpoint: str, method: MethodDescriptor, raws: list[bytes],
                  tally: Tally) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:
        code, details = await asyncio.to_thread(_client_stream, endpoint, path, raws)
        tally.record(path, code, details, raws[0])
        return
    call = chan.unary_stream(path, request_serializer=None, response_deserializer=None)(
        raws[0], timeout=STREAM_DEADLINE)
    try:
        async for _ in call:
            pass
        tally.record(path, grpc.StatusCode.OK, "", raws[0])
    except grpc.aio.AioRpcError as err:
        tally.record(path, err.code(), err.details() or "", raws[0])


def _peer_garbage(addresses: list[str], rng: random.Random, stop: threading.Event) -> None:
    """Raw bytes to the Raft peer ports: random junk, and a huge length header."""
    payloads = [rng.randbytes(rng.randrange(1, 4096)) for _ in range(60)]
    payloads += [b"\x7f\xff\xff\xff" + rng.randbytes(256 * 1024), b"\xff\xff\xff\xff" + b"\x00" * 1024]
    for i, payload in enumerate(payloads):
        if stop.is_set():
            return
        host, port = addresses[i % len(addresses)].rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1.0) as sock:
                sock.sendall(payload)
        except OSError:
            pass  # the master may close a connection it does not like: that is its right


async def _fuzz(endpoints: list[str], tally: Tally) -> None:
    rng = random.Random(SEED)
    gen = Generator(rng)
    templates = _templates()
    methods = [m for s in SERVICES for m in s.methods]
    unary = [m for m in methods if not m.client_streaming and not m.server_streaming]
    streaming = [m for m in methods if m.client_streaming or m.server_streaming]
    jobs: list[Callable[[grpc.aio.Channel, str], Awaitable[None]]] = []
    for i in range(REQUESTS):
        method = unary[i % len(unary)] if i < 4 * len(unary) else rng.choice(unary)
        raw = gen.request(method, templates)
        jobs.append(functools.partial(_unary, method=method, raw=raw, tally=tally))
    for i in range(STREAMS):
        method = streaming[i % len(streaming)]
        raws = [gen.request(method, templates) for _ in range(rng.randrange(1, 4) if method.client_streaming else 1)]
        tally.sent += len(raws) - 1
        jobs.append(functools.partial(_stream, method=method, raws=raws, tally=tally))
    rng.shuffle(jobs)
    tally.sent += len(jobs)
    channels = [rpc.aio_channel(e, _CREDENTIALS[0]) for e in endpoints]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(jobs)):
        queue.put_nowait(i)

    async def worker(n: int) -> None:
        chan, endpoint = channels[n % len(channels)], endpoints[n % len(endpoints)]
        while not queue.empty():
            await jobs[queue.get_nowait()](chan, endpoint)

    try:
        await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    finally:
        for chan in channels:
            await chan.close()


def test_fuzzed_requests_never_hurt_the_masters(masters: LocalMasters) -> None:
    # As the admin: a stranger is turned away before anything is parsed, and the point here is
    # what bad requests do once they reach the handlers.
    _CREDENTIALS[0] = masters.credentials
    with masters.client() as c:
        kept = {f"{KEPT_PREFIX}{i}": f"value-{i}".encode() for i in range(20)}
        revisions = {key: c.put(key, value).revision for key, value in kept.items()}
        ns = c.objects.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name=KEPT_NAMESPACE)))
    leader_before = masters.leader()
    peers = [m.peer_addr for m in masters.masters.values()]
    stop = threading.Event()
    garbage = threading.Thread(target=_peer_garbage, args=(peers, random.Random(SEED + 1), stop), daemon=True)
    started = time.monotonic()
    garbage.start()
    tally = Tally()
    try:
        asyncio.run(_fuzz(masters.endpoints, tally))
    finally:
        stop.set()
        garbage.join(30)
    elapsed = time.monotonic() - started
    print(f"fuzz: {tally.sent} requests in {elapsed:.1f}s; codes: {dict(tally.codes.most_common())}; "
          f"leader before {leader_before}")
    assert tally.sent >= REQUESTS
    every = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert {m for m, n in tally.methods.items() if n >= 20} == every
    assert not tally.bad, f"{len(tally.bad)} requests got UNKNOWN or INTERNAL:\n" + "\n".join(tally.bad[:20])
    # Every master lives, and they agree on one leader.
    for m in masters.masters.values():
        assert m.alive, f"master {m.name} died; see {m.log_path}"
    leader = masters.wait_ready(timeout=60)
    print(f"leader after: {leader}")
    # What was written before is intact, on every master.
    for name in masters.masters:
        with masters.client([name]) as c:
            got = c.get(KEPT_PREFIX, prefix=True)
            assert {kv.key: kv.value for kv in got.kvs} == kept
            assert {kv.key: kv.mod_revision for kv in got.kvs} == revisions
            again = c.objects.get("namespaces", KEPT_NAMESPACE)
            assert again.metadata.uid == ns.metadata.uid  # type: ignore[attr-defined]
    # And the cluster still takes writes.
    with masters.client() as c:
        c.put(f"{KEPT_PREFIX}after", b"ok")
