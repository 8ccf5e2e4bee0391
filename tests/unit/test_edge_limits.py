"""The bounds the masters' gRPC edge puts on every request, without a server."""

from __future__ import annotations

import pytest

from raftorch.api.v1 import agents_pb2, kv_pb2, objects_pb2, resources_pb2, store_pb2
from raftorch.errors import Invalid, PermissionDenied, ResourceExhausted
from raftorch.master import validation
from raftorch.master.edge import StreamCaps, parse
from raftorch.objects import wrap

GROUP_OPEN, GROUP_CLOSE = b"\x9b\x06", b"\x9c\x06"  # field 99, start and end group


def _nested(depth: int) -> bytes:
    return b"\x0a\x01k" + GROUP_OPEN * depth + GROUP_CLOSE * depth


@pytest.mark.parametrize(("raw", "needle"), [
    (b"\x0a\x02\xff\xfe", "not a valid PutRequest"),
    (b"\x0a\x05ab", "not a valid PutRequest"),
    (_nested(5000), "not a valid PutRequest"),
    # Nested within the parser's limit, but unknown: refused before it can reach the log, where
    # one more level of nesting (the log entry around it) would no longer parse.
    (_nested(99), "PutRequest: unknown field number 99"),
    (b"\x12" + b"\x80\x80\x80\x01" + b"v" * (2 * 1024 * 1024), "request: 2097157 bytes is larger than the limit"),
])
def test_requests_that_do_not_parse_or_carry_unknown_fields_are_invalid(raw: bytes, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        parse(kv_pb2.PutRequest, raw)
    assert needle in info.value.message


def test_a_parsed_request_wrapped_in_a_log_entry_always_parses_again() -> None:
    for depth in (10, 98, 99, 100):
        try:
            put = parse(kv_pb2.PutRequest, _nested(depth))
        except Invalid:
            continue
        batch = store_pb2.CommandBatch(commands=[store_pb2.Command(put=put)])  # type: ignore[arg-type]
        store_pb2.CommandBatch.FromString(batch.SerializeToString())


@pytest.mark.parametrize(("msg", "needle"), [
    (kv_pb2.PutRequest(key="k", request_id="r" * 129), "request_id: 129 bytes is longer than the limit of 128"),
    (resources_pb2.ListRequest(kind="pods", label_selector="a=" + "b" * 5000),
     "label_selector: 5002 bytes is longer than the limit of 4096"),
    (kv_pb2.PutRequest(key="k", value=b"v" * (1024 * 1024 + 1)), "value: 1048577 bytes is larger than the limit"),
    (agents_pb2.HeartbeatBatch(nodes=["n"] * 10_001), "nodes: 10001 items is more than the limit of 10000"),
    (agents_pb2.HeartbeatRequest(node="n", nodes=["n"] * 10_001), "nodes: 10001 items is more than the limit of 10000"),
    (agents_pb2.HeartbeatRequest(node="n", nodes=["n" * 254]), "nodes[0]: 254 bytes is longer than the limit of 253"),
    (agents_pb2.WatchNodePodsRequest(node="n", nodes=["n" * 254]),
     "nodes[0]: 254 bytes is longer than the limit of 253"),
    (agents_pb2.ReportPodStatusRequest(node="n", updates=[agents_pb2.PodStatusUpdate(node="n" * 254)]),
     "updates[0].node: 254 bytes is longer than the limit of 253"),
    (objects_pb2.Pod(spec=objects_pb2.PodSpec(tolerations=[objects_pb2.Toleration(key="k")] * 101)),
     "spec.tolerations: 101 items is more than the limit of 100"),
    (objects_pb2.NodeSelectorRequirement(key="k", operator="In", values=["v"] * 101),
     "values: 101 items is more than the limit of 100"),
    (objects_pb2.NodeSelectorTerm(match_expressions=[objects_pb2.NodeSelectorRequirement(key="k")] * 101),
     "match_expressions: 101 items is more than the limit of 100"),
    (kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key="k", result=kv_pb2.Compare.Result.ValueType(9))]),
     "compare[0].result: 9 is not one of"),
    (resources_pb2.CreateRequest(object=wrap(objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(
        name="p", annotations={"a": "x" * 70_000}, labels={"b": "y" * 70_000})))),
     "object.pod.metadata.labels[b]: 70000 bytes is longer than the limit of 65536"),
])
def test_every_field_is_bounded(msg: object, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        validation.check_message(msg)  # type: ignore[arg-type]
    assert needle in info.value.message
    # The offending value is shown cut short.
    assert len(info.value.message) < 300


def test_values_within_bounds_pass() -> None:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", annotations={"a": "x" * 200_000}))
    validation.check_message(resources_pb2.CreateRequest(object=wrap(pod), request_id="r" * 128))
    validation.check_message(kv_pb2.PutRequest(key="k" * 1024, value=b"v" * (1024 * 1024)))


@pytest.mark.parametrize(("key", "prefix", "refused"), [
    ("/registry/pods/default/zz", False, True),
    ("/registry/allocations/clusterips/10.96.0.1", False, True),
    ("/registry/", True, True),
    ("/reg", True, True),
    ("", True, True),
    ("/", True, True),
    ("/registry", False, False),
    ("/registryish", True, False),
    ("app/config", True, False),
    ("/reg", False, False),
])
def test_keys_the_masters_own_are_not_writable(key: str, prefix: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(PermissionDenied, match="use the Resources API"):
            validation.check_writable(key, prefix, "key")
    else:
        validation.check_writable(key, prefix, "key")


def test_txn_branches_and_leases_are_checked() -> None:
    put = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="/registry/x", value=b"1", lease=5))
    with pytest.raises(PermissionDenied, match=r"txn\.failure\[0\]\.key"):
        validation.check_txn(kv_pb2.TxnRequest(failure=[put]))
    with pytest.raises(Invalid, match=r"lease: must be between 0 and 2\^62"):
        validation.check_put(kv_pb2.PutRequest(key="k", lease=2**62 + 1))
    with pytest.raises(Invalid, match="id: must be between 1 and 2"):
        validation.check_id(0, "id")
    validation.check_id(0, "id", allow_zero=True)


def test_shown_values_are_cut() -> None:
    assert validation.shown("abc") == "'abc'"
    cut = validation.shown("x" * 4_000_000)
    assert cut.endswith("... (4000000 characters)") and len(cut) < 120


def test_stream_caps_count_per_client_and_group() -> None:
    caps = StreamCaps({"watch": 2, "stream": 1})
    caps.acquire("a", "watch")
    caps.acquire("a", "watch")
    with pytest.raises(ResourceExhausted, match="2 open watches"):
        caps.acquire("a", "watch")
    caps.acquire("b", "watch")
    caps.acquire("a", "stream")
    caps.release("a", "watch")
    caps.acquire("a", "watch")
    assert caps.open("a", "watch") == 2 and caps.open("b", "watch") == 1
    for _ in range(2):
        caps.release("a", "watch")
    assert caps.open("a", "watch") == 0


@pytest.mark.parametrize(("msg", "needle"), [
    (objects_pb2.Event(reason="R" * 129), "reason: 129 bytes is longer than the limit of 128"),
    (objects_pb2.Event(message="m" * 4097), "message: 4097 bytes is longer than the limit of 4096"),
    (agents_pb2.NodeUsage(timestamp="t" * 65), "timestamp: 65 bytes is longer than the limit of 64"),
])
def test_event_and_usage_fields_are_bounded_from_the_schema(msg: object, needle: str) -> None:
    with pytest.raises(Invalid, match=needle):
        validation.check_message(msg)  # type: ignore[arg-type]


def test_reported_usage_and_events_mean_something() -> None:
    ok = agents_pb2.NodeUsage(node="n", cpu_millicores=5, memory_bytes=1 << 20, window_seconds=15, pods=[
        agents_pb2.PodUsage(name="p", containers=[agents_pb2.ContainerUsage(name="c", cpu_millicores=1)])])
    validation.check_node_usage(ok)
    for field, value, needle in [("cpu_millicores", -1, "cpu_millicores: must be between 0 and 2\\^53"),
                                 ("memory_bytes", 2**60, "memory_bytes: must be between 0 and 2\\^53"),
                                 ("window_seconds", float("nan"), "window_seconds: must be between 0 and 3600")]:
        bad = agents_pb2.NodeUsage()
        bad.CopyFrom(ok)
        setattr(bad, field, value)
        with pytest.raises(Invalid, match=needle):
            validation.check_node_usage(bad)
    bad = agents_pb2.NodeUsage()
    bad.CopyFrom(ok)
    bad.pods[0].containers[0].cpu_millicores = -5
    with pytest.raises(Invalid, match=r"pods\[0\]\.containers\[0\]\.cpu_millicores"):
        validation.check_node_usage(bad)
    validation.check_reported_event(objects_pb2.Event(reason="Started", type="Normal", count=1), "events[0]")
    for event, needle in [(objects_pb2.Event(reason="Started", type="Odd", count=1), r"events\[0\]\.type"),
                          (objects_pb2.Event(reason="", type="Normal", count=1), r"events\[0\]\.reason: required"),
                          (objects_pb2.Event(reason="Started", type="Normal", count=0), r"events\[0\]\.count")]:
        with pytest.raises(Invalid, match=needle):
            validation.check_reported_event(event, "events[0]")
