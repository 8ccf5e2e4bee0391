"""The narrow write paths of the registry, over an in-memory replica: status patches (agents'
reports) change the status and nothing else, refuse what they must, and batch; the loop waker
hands results over in bursts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Conflict, Invalid, NotFound, PermissionDenied
from raftorch.master.registry import Registry, StatusPatch
from raftorch.objects import POD
from raftorch.store.loop_wake import settled
from raftorch.store.memory import MemoryReplica


@pytest.fixture
def registry() -> Registry:
    reg = Registry(MemoryReplica())  # type: ignore[arg-type]
    reg.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="default"))).result()
    return reg


def make_pod(registry: Registry, name: str, node: str = "n1") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
                          spec=objects_pb2.PodSpec(node_name=node, containers=[
                              objects_pb2.Container(name="c", image="busybox")]))
    made = registry.create(pod).result()
    assert isinstance(made, objects_pb2.Pod)
    return made


def stored(registry: Registry, name: str) -> objects_pb2.Pod:
    pod = registry.get(POD, "default", name)
    assert isinstance(pod, objects_pb2.Pod)
    return pod


def running() -> objects_pb2.PodStatus:
    return objects_pb2.PodStatus(phase="Running", pod_ip="10.0.0.5", host_ip="n1")


def test_a_patch_sets_the_status_and_keeps_everything_else(registry: Registry) -> None:
    pod = make_pod(registry, "a")
    (future,) = registry.patch_statuses(POD, [StatusPatch("default", "a", pod.metadata.uid, running())])
    assert future is not None
    written = future.result()
    assert isinstance(written, objects_pb2.Pod)
    now = stored(registry, "a")
    assert now.status.phase == "Running" and now.status.pod_ip == "10.0.0.5"
    assert now.spec == pod.spec
    assert now.metadata.uid == pod.metadata.uid and now.metadata.generation == pod.metadata.generation
    assert now.metadata.resource_version == written.metadata.resource_version > pod.metadata.resource_version


def test_one_report_is_one_transaction(registry: Registry) -> None:
    pods = [make_pod(registry, f"p{i}") for i in range(5)]
    before = registry.replica.machine.revision
    outcomes = registry.patch_statuses(POD, [StatusPatch("default", p.metadata.name, p.metadata.uid, running())
                                             for p in pods])
    revisions = {f.result().metadata.resource_version for f in outcomes if f is not None}  # type: ignore[attr-defined]
    assert len(outcomes) == 5 and revisions == {before + 1}
    assert all(stored(registry, p.metadata.name).status.phase == "Running" for p in pods)


def test_gone_and_replaced_pods_are_told_apart(registry: Registry) -> None:
    pod = make_pod(registry, "a")
    outcomes = registry.patch_statuses(POD, [StatusPatch("default", "missing", "u1", running()),
                                             StatusPatch("default", "a", "another-uid", running()),
                                             StatusPatch("default", "a", pod.metadata.uid, running())])
    assert outcomes[0] is None and outcomes[1] is None
    assert outcomes[2] is not None and outcomes[2].result() is not None
    assert stored(registry, "a").status.phase == "Running"


def test_a_refused_pod_fails_the_whole_report(registry: Registry) -> None:
    mine = make_pod(registry, "mine", node="n1")
    theirs = make_pod(registry, "theirs", node="n2")

    def bound_to_n1(_i: int, pod: Message) -> None:
        if pod.spec.node_name != "n1":  # type: ignore[attr-defined]
            raise PermissionDenied("not bound to n1")

    with pytest.raises(PermissionDenied):
        registry.patch_statuses(POD, [StatusPatch("default", "mine", mine.metadata.uid, running()),
                                      StatusPatch("default", "theirs", theirs.metadata.uid, running())], bound_to_n1)
    assert stored(registry, "mine").status.phase == "" and stored(registry, "theirs").status.phase == ""


def test_each_patch_is_checked_against_its_own_owner(registry: Registry) -> None:
    """A report for many nodes' pods (the hollow fleet's): `allow` gets each patch's index, so
    each pod is checked against the node its update names; one transaction for all."""
    a, b = make_pod(registry, "a", node="n1"), make_pod(registry, "b", node="n2")
    patches = [StatusPatch("default", "a", a.metadata.uid, running()), StatusPatch("default", "b", b.metadata.uid,
                                                                                    running())]

    def owned_by(owners: list[str]) -> Callable[[int, Message], None]:
        def allow(i: int, pod: Message) -> None:
            if pod.spec.node_name != owners[i]:  # type: ignore[attr-defined]
                raise PermissionDenied(f"not bound to {owners[i]}")
        return allow

    with pytest.raises(PermissionDenied, match="not bound to n1"):
        registry.patch_statuses(POD, patches, owned_by(["n1", "n1"]))
    assert stored(registry, "a").status.phase == "" and stored(registry, "b").status.phase == ""
    before = registry.replica.machine.revision
    outcomes = registry.patch_statuses(POD, patches, owned_by(["n1", "n2"]))
    assert {f.result().metadata.resource_version for f in outcomes if f is not None} == {before + 1}  # type: ignore[attr-defined]
    assert stored(registry, "a").status.phase == "Running" and stored(registry, "b").status.phase == "Running"


def test_a_status_with_fields_this_version_does_not_know_is_refused(registry: Registry) -> None:
    pod = make_pod(registry, "a")
    status = running()
    newer = status.SerializeToString() + b"\xf8\x06\x01"  # field 111, varint 1: unknown here
    status = objects_pb2.PodStatus.FromString(newer)
    with pytest.raises(Invalid, match="unknown field number 111"):
        registry.patch_statuses(POD, [StatusPatch("default", "a", pod.metadata.uid, status)])
    assert stored(registry, "a").status.phase == ""


def test_settled_resolves_futures_from_another_thread() -> None:
    async def main() -> list[object]:
        sources: list[Future[object]] = [Future() for _ in range(50)]
        failed: Future[object] = Future()
        targets = [settled(f) for f in sources]
        failing = settled(failed)

        def settle() -> None:
            for i, f in enumerate(sources):
                f.set_result(i)
            failed.set_exception(Invalid("bad"))

        threading.Thread(target=settle).start()
        results = list(await asyncio.gather(*targets))
        with pytest.raises(Invalid):
            await failing
        done: Future[object] = Future()
        done.set_result("early")
        results.append(await settled(done))
        return results

    assert asyncio.run(main()) == [*range(50), "early"]


def add_node(registry: Registry, name: str) -> None:
    registry.create(objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=name))).result()


def unbound(registry: Registry, name: str) -> objects_pb2.Pod:
    return make_pod(registry, name, node="")


def test_bindings_set_the_node_alone_in_one_transaction(registry: Registry) -> None:
    add_node(registry, "n1")
    pods = [unbound(registry, f"p{i}") for i in range(3)]
    before = registry.replica.machine.revision
    for pod in pods:
        pod.spec.node_name = "n1"
    written = [f.result() for f in registry.bind_pods(pods)]
    assert {w.metadata.resource_version for w in written} == {before + 1}  # type: ignore[attr-defined]
    for pod in pods:
        now = stored(registry, pod.metadata.name)
        assert now.spec.node_name == "n1"
        now.spec.node_name = ""
        pod.spec.node_name = ""
        assert now.spec == pod.spec and now.metadata.uid == pod.metadata.uid


def test_a_binding_to_a_missing_node_is_refused(registry: Registry) -> None:
    add_node(registry, "n1")
    good, bad = unbound(registry, "good"), unbound(registry, "bad")
    good.spec.node_name, bad.spec.node_name = "n1", "nowhere"
    ok, refused = registry.bind_pods([good, bad])
    assert ok.result().spec.node_name == "n1"  # type: ignore[attr-defined]
    with pytest.raises(NotFound, match="node 'nowhere' not found"):
        refused.result()
    assert stored(registry, "bad").spec.node_name == ""


def test_a_binding_that_changes_more_is_a_full_update(registry: Registry) -> None:
    add_node(registry, "n1")
    pod = unbound(registry, "p")
    pod.spec.node_name = "n1"
    pod.spec.containers[0].image = ""  # not a binding any more: validated as any update
    (refused,) = registry.bind_pods([pod])
    with pytest.raises(Invalid, match="image"):
        refused.result()
    stale = unbound(registry, "q")
    stale.spec.node_name = "n1"
    stale.metadata.resource_version -= 1  # decided on an older version
    (conflict,) = registry.bind_pods([stale])
    with pytest.raises(Conflict):
        conflict.result()
    assert stored(registry, "p").spec.node_name == "" and stored(registry, "q").spec.node_name == ""
