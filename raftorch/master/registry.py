"""Cluster objects in the store: how each kind is kept, created, updated and deleted.

Objects are protobuf messages stored under `/registry/...` keys; an object's
resource_version is its key's mod revision. Every write is one store transaction whose
compares make it safe against concurrent writers (create: the key is absent and the
namespace exists; update and delete: the key is unchanged since it was read), so writes can
go through any master. Allocations (ClusterIPs, NodePorts, pod CIDRs) are keys of their own,
taken in the same transaction as the object that holds them.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import kv_pb2, objects_pb2, store_pb2
from raftorch.errors import AlreadyExists, Conflict, Invalid, NotFound, RaftorchError, error_for_code
from raftorch.master.ids import new_request_id, new_uid
from raftorch.master.stored import (
    absent,
    decode,
    decode_checked,
    delete_op,
    encode_bounded,
    get_op,
    present,
    put_op,
    try_decode,
    unchanged,
)
from raftorch.objects import (
    Kind,
    apply_defaults,
    check_unknown_fields,
    format_time,
    kind_of,
    kind_of_message,
    store_key,
    store_prefix,
    validate,
)
from raftorch.store.replica import RaftReplica

log = structlog.get_logger("raftorch.registry")

ALLOC_PREFIX = "/registry/allocations/"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
NODE_PORT_RANGE = (30000, 32767)
SYSTEM_NAMESPACE = "raftorch-system"


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    service_cidr: str = DEFAULT_SERVICE_CIDR
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_cidr_prefix: int = 24


@dataclass(frozen=True, slots=True)
class StatusPatch:
    """A new status for the object namespace/name, if it is still the one with `uid`."""

    namespace: str
    name: str
    uid: str
    status: Message


@dataclass(frozen=True, slots=True)
class _Prepared:
    msg: Message
    future: Future[Message]
    compare: list[kv_pb2.Compare]
    success: list[kv_pb2.RequestOp]
    finish: Callable[[kv_pb2.TxnResponse], Message]


def _chain(future: Future[store_pb2.CommandResult],
           finish: Callable[[kv_pb2.TxnResponse], Message]) -> Future[Message]:
    out: Future[Message] = Future()

    def done(f: Future[store_pb2.CommandResult]) -> None:
        try:
            result = f.result()
            if result.WhichOneof("result") == "error":
                raise error_for_code(result.error.code, result.error.message)
            out.set_result(finish(result.txn))
        except BaseException as exc:
            out.set_exception(_untraced(exc))

    future.add_done_callback(done)
    return out


def _untraced(exc: BaseException) -> BaseException:
    """A domain error without its traceback: kept, the traceback's frame (which holds the
    future the error is set on) makes a reference cycle per failed write, left to the garbage
    collector; on a busy leader those collections paused it for 50-200 ms."""
    if isinstance(exc, RaftorchError):
        return exc.with_traceback(None)
    return exc


def _copy_outcome(target: Future[Message], source: Future[Message]) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class Registry:
    def __init__(self, replica: RaftReplica, network: NetworkSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.replica = replica
        self.network = network or NetworkSettings()
        self.clock = clock
        self._stamped = (-1, "")  # (second, its text): times are stored to the whole second

    def _now_text(self) -> str:
        second = math.floor(self.clock())
        stamped = self._stamped
        if stamped[0] != second:
            stamped = self._stamped = (second, format_time(second))
        return stamped[1]

    # -- reads (from the local replica; callers decide about read barriers) ----------

    def get(self, kind: Kind, namespace: str, name: str) -> Message:
        key = store_key(kind, namespace, name)
        with self.replica.reading() as machine:
            found = machine.index.current(key)
        if found is None:
            where = f" in namespace {namespace!r}" if kind.namespaced else ""
            raise NotFound(f"{kind.name.lower()} {name!r} not found{where}")
        return decode(kind, found)

    def list_kind(self, kind: Kind, namespace: str = "") -> tuple[list[Message], int]:
        prefix = store_prefix(kind, namespace or None)
        with self.replica.reading() as machine:
            found = list(machine.index.range(prefix, True, 0))
            revision = machine.revision
        return [m for kv in found if (m := try_decode(kind, kv)) is not None], revision

    # -- writes ---------------------------------------------------------------------------

    def _txn(self, compare: Sequence[kv_pb2.Compare], success: Sequence[kv_pb2.RequestOp],
             failure: Sequence[kv_pb2.RequestOp], request_id: str, fence_term: int,
             finish: Callable[[kv_pb2.TxnResponse], Message]) -> Future[Message]:
        txn = kv_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        command = store_pb2.Command(request_id=request_id or new_request_id(), txn=txn, fence_term=fence_term)
        return _chain(self.replica.submit(command), finish)

    def create(self, msg: Message, request_id: str = "", fence_term: int = 0) -> Future[Message]:
        compare, success, failure, finish = self._prepare_create(msg, checked=False)
        return self._txn(compare, success, failure, request_id, fence_term, finish)

    def create_many(self, msgs: Sequence[Message], fence_term: int = 0,
                    checked: Callable[[Message], bool] | None = None) -> list[Future[Message]]:
        """Several creates, each its own command (in order), each future ending as its own
        `create` would. `checked(msg)` tells an object that needs no checks beyond its
        metadata's (template_pods.py: a replica set's pod, checked there); anything else is
        checked in full. One transaction for all was tried: at full size it went with more
        elections and slower creates (bench/README.md, 2026-12-03 evening)."""
        out: list[Future[Message]] = []
        for msg in msgs:
            try:
                compare, success, failure, finish = self._prepare_create(
                    msg, checked=checked is not None and checked(msg))
                out.append(self._txn(compare, success, failure, "", fence_term, finish))
            except RaftorchError as err:
                failed: Future[Message] = Future()
                failed.set_exception(_untraced(err))
                out.append(failed)
        return out

    def _prepare_create(self, msg: Message, checked: bool) -> tuple[
            list[kv_pb2.Compare], list[kv_pb2.RequestOp], list[kv_pb2.RequestOp],
            Callable[[kv_pb2.TxnResponse], Message]]:
        """The transaction of a create. `checked`: the object needs no unknown-field walk,
        defaults or validation here (its caller did them, or knows them done)."""
        kind = kind_of_message(msg)
        meta = msg.metadata  # type: ignore[attr-defined]
        if not checked:
            check_unknown_fields(msg)
            apply_defaults(msg)
            if not kind.namespaced and meta.namespace:
                raise Invalid(f"metadata.namespace: {kind.name} objects are not namespaced")
            validate(msg)
        meta.uid = new_uid()
        meta.creation_timestamp = self._now_text()
        meta.generation = 1
        meta.resource_version = 0
        meta.ClearField("deletion_timestamp")
        key = store_key(kind, meta.namespace, meta.name)
        compare = [absent(key)]
        success = [put_op(key, b"")]
        failure = [get_op(key)]
        ns_key = ""
        if kind.namespaced:
            ns_key = store_key(kind_of("Namespace"), "", meta.namespace)
            compare.append(present(ns_key))
            failure.append(get_op(ns_key))
        allocations = self._allocate(kind, msg)
        for alloc_key, _ in allocations:
            compare.append(absent(alloc_key))
            success.append(put_op(alloc_key, key.encode()))
            failure.append(get_op(alloc_key))
        success[0] = put_op(key, encode_bounded(kind, msg))

        def finish(resp: kv_pb2.TxnResponse) -> Message:
            if resp.succeeded:
                msg.metadata.resource_version = resp.header.revision  # type: ignore[attr-defined]
                return msg
            existing, *rest = (r.response_range for r in resp.responses)
            if existing.kvs:
                raise AlreadyExists(f"{kind.name.lower()} {meta.name!r} already exists"
                                    + (f" in namespace {meta.namespace!r}" if kind.namespaced else ""))
            if kind.namespaced:
                ns_found, *rest = rest
                if not ns_found.kvs:
                    raise NotFound(f"namespace {meta.namespace!r} not found")
            for found, (_, field_path) in zip(rest, allocations, strict=True):
                if found.kvs:
                    raise AlreadyExists(f"{field_path}: already allocated to another object; choose another")
            raise Conflict("the store changed during the create; retry")

        return compare, success, failure, finish

    def _allocate(self, kind: Kind, msg: Message, held: set[str] | None = None) -> list[tuple[str, str]]:
        """Fill in ClusterIP and NodePorts of a new service; returns (allocation key, field)."""
        if kind.name == "Node":
            node: objects_pb2.Node = msg  # type: ignore[assignment]
            if not node.spec.pod_cidr:
                return []
            return [(f"{ALLOC_PREFIX}podcidrs/{node.spec.pod_cidr.replace('/', '_')}",
                     f"spec.podCIDR: {node.spec.pod_cidr}")]
        if kind.name != "Service":
            return []
        svc: objects_pb2.Service = msg  # type: ignore[assignment]
        with self.replica.reading() as machine:
            # Keys this object already holds are not taken from its point of view.
            taken = {kv.key for kv in machine.index.range(ALLOC_PREFIX, True, 0)} - (held or set())
        out: list[tuple[str, str]] = []
        if not svc.spec.cluster_ip:
            svc.spec.cluster_ip = self._free_ip(taken)
        elif ipaddress.ip_address(svc.spec.cluster_ip) not in ipaddress.ip_network(self.network.service_cidr):
            raise Invalid(f"spec.clusterIP: {svc.spec.cluster_ip} is outside the service range "
                          f"{self.network.service_cidr}")
        out.append((f"{ALLOC_PREFIX}clusterips/{svc.spec.cluster_ip}", "spec.clusterIP"))
        if svc.spec.type == "NodePort":
            chosen = {p.node_port for p in svc.spec.ports if p.node_port}
            for i, port in enumerate(svc.spec.ports):
                if not port.node_port:
                    port.node_port = self._free_node_port(taken, chosen)
                    chosen.add(port.node_port)
                out.append((f"{ALLOC_PREFIX}nodeports/{port.protocol or 'TCP'}/{port.node_port}",
                            f"spec.ports[{i}].nodePort: {port.node_port}"))
        return out

    def _free_ip(self, taken: set[str]) -> str:
        net = ipaddress.ip_network(self.network.service_cidr)
        size = net.num_addresses
        for _ in range(200):
            ip = str(net[random.randrange(10, size - 1)])
            if f"{ALLOC_PREFIX}clusterips/{ip}" not in taken:
                return ip
        raise RaftorchError("no free ClusterIP left in the service range")

    def _free_node_port(self, taken: set[str], chosen: set[int]) -> int:
        low, high = NODE_PORT_RANGE
        free = [p for p in range(low, high + 1)
                if p not in chosen and f"{ALLOC_PREFIX}nodeports/TCP/{p}" not in taken
                and f"{ALLOC_PREFIX}nodeports/UDP/{p}" not in taken]
        if not free:
            raise RaftorchError("no free NodePort left in 30000-32767")
        return random.choice(free)

    def update(self, msg: Message, status_only: bool = False, request_id: str = "",
               fence_term: int = 0) -> Future[Message]:
        compare, success, failure, finish = self._prepare_update(msg, status_only)
        return self._txn(compare, success, failure, request_id, fence_term, finish)

    def update_many(self, msgs: Sequence[Message], status_only: bool = False,
                    fence_term: int = 0) -> list[Future[Message]]:
        """Several updates committed as one transaction (one command, one compare per object):
        what the scheduler's bindings and a node's status reports cost instead of one command
        each. If any object changed meanwhile, each is tried again on its own, so every future
        ends as its own `update` would. Services (which allocate) are updated one by one."""
        out: list[Future[Message]] = []
        batch: list[_Prepared] = []
        for msg in msgs:
            if kind_of_message(msg).name == "Service":
                out.append(self.update(msg, status_only, fence_term=fence_term))
                continue
            future: Future[Message] = Future()
            out.append(future)
            try:
                cmp, ops, _, finish = self._prepare_update(msg, status_only)
            except RaftorchError as err:
                future.set_exception(_untraced(err))
                continue
            batch.append(_Prepared(msg, future, cmp, ops, finish))
        self._commit_batch(batch, status_only, fence_term)
        return out

    def bind_pods(self, pods: Sequence[objects_pb2.Pod], fence_term: int = 0) -> list[Future[Message]]:
        """The scheduler's bindings in one transaction. A pod that is exactly its stored version
        with spec.nodeName now set (and was unbound) takes the narrow path: the node must exist,
        nothing else changed, so nothing else is decoded, defaulted or validated again. Any
        other pod is a plain update (update_many's checks). A binding to a node that does not
        exist is refused (NotFound)."""
        kind = kind_of("Pod")
        out: list[Future[Message]] = []
        batch: list[_Prepared] = []
        keys = [store_key(kind, p.metadata.namespace or "default", p.metadata.name) for p in pods]
        with self.replica.reading() as machine:
            found = [machine.index.current(key) for key in keys]
            nodes = {p.spec.node_name: machine.index.current(store_key(kind_of("Node"), "", p.spec.node_name))
                     for p in pods if p.spec.node_name}
        for pod, key, kv in zip(pods, keys, found, strict=True):
            future: Future[Message] = Future()
            out.append(future)
            try:
                bound = _as_binding(kind, kv, pod)
                if bound is not None:
                    if nodes.get(pod.spec.node_name) is None:
                        raise NotFound(f"pod {pod.metadata.name!r}: node {pod.spec.node_name!r} not found; "
                                       "a pod is bound to an existing node only")
                    cmp, ops, _, finish = _plain_write(kind, key, bound.metadata.resource_version, bound)
                else:
                    cmp, ops, _, finish = self._prepare_update(pod, False)
            except RaftorchError as err:
                future.set_exception(_untraced(err))
                continue
            batch.append(_Prepared(pod, future, cmp, ops, finish))
        self._commit_batch(batch, False, fence_term)
        return out

    def patch_statuses(self, kind: Kind, patches: Sequence[StatusPatch],
                       allow: Callable[[int, Message], None] | None = None,
                       fence_term: int = 0) -> list[Future[Message] | None]:
        """Set the status of several objects in one transaction, changing nothing else: the
        narrow path of agents' status reports. Each object is read and decoded once; only the
        status given is checked (unknown fields), since nothing else of the stored object
        changes. `allow(i, current)` may refuse patch i's object (node restriction): it fails
        the call, and nothing of it is written.
        Per patch: None when the object is gone or is another one now (its uid differs),
        else the write's future (retried one by one if any object changed meanwhile)."""
        out: list[Future[Message] | None] = []
        batch: list[_Prepared] = []
        keys = [store_key(kind, p.namespace, p.name) for p in patches]
        with self.replica.reading() as machine:
            found = [machine.index.current(key) for key in keys]
        for i, (patch, key, kv) in enumerate(zip(patches, keys, found, strict=True)):
            if kv is None:
                out.append(None)
                continue
            future: Future[Message] = Future()
            try:
                current = decode(kind, kv)
                if current.metadata.uid != patch.uid:  # type: ignore[attr-defined]
                    out.append(None)
                    continue
                if allow is not None:
                    allow(i, current)
                check_unknown_fields(patch.status)
                current.status.CopyFrom(patch.status)  # type: ignore[attr-defined]
                cmp, ops, _, finish = _plain_write(kind, key, kv.mod_revision, current)
            except Conflict as err:
                future.set_exception(_untraced(err))
                out.append(future)
                continue
            out.append(future)
            batch.append(_Prepared(current, future, cmp, ops, finish))
        self._commit_batch(batch, True, fence_term)
        return out

    def _commit_batch(self, batch: list[_Prepared], status_only: bool, fence_term: int) -> None:
        """One transaction for prepared writes; if any compare fails, each is tried on its own."""
        if not batch:
            return
        compare = [c for item in batch for c in item.compare]
        success = [op for item in batch for op in item.success]
        txn = kv_pb2.TxnRequest(compare=compare, success=success)
        command = store_pb2.Command(request_id=new_request_id(), txn=txn, fence_term=fence_term)

        def one_by_one(msg: Message, future: Future[Message]) -> None:
            try:
                single = self.update(msg, status_only, fence_term=fence_term)
            except BaseException as exc:
                future.set_exception(_untraced(exc))
                return
            single.add_done_callback(functools.partial(_copy_outcome, future))

        def retry_all() -> None:
            for item in batch:
                one_by_one(item.msg, item.future)

        def done(f: Future[store_pb2.CommandResult]) -> None:
            try:
                result = f.result()
                if result.WhichOneof("result") == "error":
                    raise error_for_code(result.error.code, result.error.message)
            except BaseException as exc:
                for item in batch:
                    item.future.set_exception(_untraced(exc))
                return
            if not result.txn.succeeded:
                # Re-read and resubmit off this thread: done callbacks run on Raft's thread.
                threading.Thread(target=retry_all, name="registry-batch-retry", daemon=True).start()
                return
            for item in batch:
                try:
                    item.future.set_result(item.finish(result.txn))
                except BaseException as exc:
                    item.future.set_exception(_untraced(exc))

        self.replica.submit(command).add_done_callback(done)

    def _prepare_update(self, msg: Message, status_only: bool) -> tuple[
            list[kv_pb2.Compare], list[kv_pb2.RequestOp], list[kv_pb2.RequestOp],
            Callable[[kv_pb2.TxnResponse], Message]]:
        kind = kind_of_message(msg)
        check_unknown_fields(msg)
        meta = msg.metadata  # type: ignore[attr-defined]
        if kind.namespaced and not meta.namespace:
            meta.namespace = "default"
        current = self.get(kind, meta.namespace, meta.name)
        cur_meta = current.metadata  # type: ignore[attr-defined]
        if meta.resource_version and meta.resource_version != cur_meta.resource_version:
            raise Conflict(f"{kind.name.lower()} {meta.name!r} was changed since revision "
                           f"{meta.resource_version} (now {cur_meta.resource_version}): re-read and retry")
        if status_only:
            new = type(current)()
            new.CopyFrom(current)
            if not hasattr(new, "status"):
                raise Invalid(f"{kind.name} objects have no status")
            new.status.CopyFrom(msg.status)  # type: ignore[attr-defined]
        else:
            new = msg
            apply_defaults(new)
            if meta.uid and meta.uid != cur_meta.uid:
                raise Conflict(f"metadata.uid: {meta.uid} is not the stored object's uid {cur_meta.uid}")
            # Server-managed metadata stays as stored.
            meta.uid = cur_meta.uid
            meta.creation_timestamp = cur_meta.creation_timestamp
            meta.generation = cur_meta.generation
            if cur_meta.deletion_timestamp:
                meta.deletion_timestamp = cur_meta.deletion_timestamp
            if hasattr(new, "status") and not status_only and kind.name not in ("Node", "Namespace"):
                new.status.CopyFrom(current.status)  # type: ignore[attr-defined]
            if kind.name == "Service":
                self._keep_allocations(current, new)
            if _spec_bytes(new) != _spec_bytes(current):
                meta.generation = cur_meta.generation + 1
            validate(new)
        new.metadata.resource_version = cur_meta.resource_version  # type: ignore[attr-defined]
        key = store_key(kind, cur_meta.namespace, cur_meta.name)
        if kind.name != "Service" or status_only:
            return _plain_write(kind, key, cur_meta.resource_version, new)
        compare = [unchanged(key, cur_meta.resource_version)]
        success = [put_op(key, b"")]
        failure = [get_op(key)]
        added: list[tuple[str, str]] = []
        if kind.name == "Service" and not status_only:
            # Ports or type changed: allocate what is new, release what is gone, atomically.
            old_keys = set(self._held_allocations(kind, current))
            wanted = self._allocate(kind, new, held=old_keys)
            added = [(k, f) for k, f in wanted if k not in old_keys]
            for alloc_key, _ in added:
                compare.append(absent(alloc_key))
                success.append(put_op(alloc_key, key.encode()))
                failure.append(get_op(alloc_key))
            success += [delete_op(k) for k in old_keys - {k for k, _ in wanted}]
        success[0] = put_op(key, encode_bounded(kind, new))

        def finish(resp: kv_pb2.TxnResponse) -> Message:
            if not resp.succeeded:
                found, *allocs = (r.response_range for r in resp.responses)
                if not found.kvs:
                    raise NotFound(f"{kind.name.lower()} {cur_meta.name!r} not found")
                if found.kvs[0].mod_revision == cur_meta.resource_version:
                    for got, (_, field_path) in zip(allocs, added, strict=True):
                        if got.kvs:
                            raise AlreadyExists(f"{field_path}: already allocated to another object; choose another")
                raise Conflict(f"{kind.name.lower()} {cur_meta.name!r} was changed concurrently: re-read and retry")
            new.metadata.resource_version = resp.header.revision  # type: ignore[attr-defined]
            return new

        return compare, success, failure, finish

    @staticmethod
    def _keep_allocations(current: Message, new: Message) -> None:
        """An update that leaves out the ClusterIP or a port's NodePort keeps the stored one."""
        cur: objects_pb2.Service = current  # type: ignore[assignment]
        svc: objects_pb2.Service = new  # type: ignore[assignment]
        if not svc.spec.cluster_ip:
            svc.spec.cluster_ip = cur.spec.cluster_ip
        if svc.spec.type == "NodePort":
            stored = {(p.port, p.protocol or "TCP"): p.node_port for p in cur.spec.ports if p.node_port}
            for port in svc.spec.ports:
                if not port.node_port:
                    port.node_port = stored.get((port.port, port.protocol or "TCP"), 0)
        else:
            for port in svc.spec.ports:
                port.node_port = 0

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: int = 0,
               request_id: str = "", fence_term: int = 0) -> Future[Message]:
        if kind.namespaced and not namespace:
            namespace = "default"
        key = store_key(kind, namespace, name)
        with self.replica.reading() as machine:
            found = machine.index.current(key)
        if found is None:
            where = f" in namespace {namespace!r}" if kind.namespaced else ""
            raise NotFound(f"{kind.name.lower()} {name!r} not found{where}")
        rv = found.mod_revision
        if resource_version and resource_version != rv:
            raise Conflict(f"{kind.name.lower()} {name!r} was changed since revision {resource_version}")
        decoded, _ = decode_checked(kind, found)
        if decoded is None:
            # An object that cannot be decoded can still be deleted: that is the way out.
            make: Any = kind.message  # a generated class; its fields are not in Message's stub
            current: Message = make(metadata=objects_pb2.ObjectMeta(
                name=name, namespace=namespace if kind.namespaced else "", resource_version=rv))
            held = self._allocations_owned_by(key)
        else:
            current = decoded
            held = self._held_allocations(kind, current)
        success = [delete_op(key)] + [delete_op(k) for k in held]
        if kind.name == "Namespace":
            # Everything in the namespace goes with it.
            success += [delete_op(store_prefix(k, name), prefix=True) for k in _namespaced_kinds()]

        def finish(resp: kv_pb2.TxnResponse) -> Message:
            if not resp.succeeded:
                found = resp.responses[0].response_range
                if not found.kvs:
                    raise NotFound(f"{kind.name.lower()} {name!r} not found")
                raise Conflict(f"{kind.name.lower()} {name!r} was changed concurrently: re-read and retry")
            return current

        return self._txn([unchanged(key, rv)], success, [get_op(key)], request_id, fence_term, finish)

    def _allocations_owned_by(self, key: str) -> list[str]:
        # Each allocation key's value is the key of the object that holds it.
        with self.replica.reading() as machine:
            return [kv.key for kv in machine.index.range(ALLOC_PREFIX, True, 0) if kv.value == key.encode()]

    def _held_allocations(self, kind: Kind, msg: Message) -> list[str]:
        if kind.name == "Service":
            svc: objects_pb2.Service = msg  # type: ignore[assignment]
            keys = [f"{ALLOC_PREFIX}clusterips/{svc.spec.cluster_ip}"] if svc.spec.cluster_ip else []
            keys += [f"{ALLOC_PREFIX}nodeports/{p.protocol or 'TCP'}/{p.node_port}"
                     for p in svc.spec.ports if p.node_port]
            return keys
        if kind.name == "Node":
            node: objects_pb2.Node = msg  # type: ignore[assignment]
            return [f"{ALLOC_PREFIX}podcidrs/{node.spec.pod_cidr.replace('/', '_')}"] if node.spec.pod_cidr else []
        return []

    # -- nodes ----------------------------------------------------------------------------

    def register_node(self, node: objects_pb2.Node) -> Future[Message]:
        """Create the node with a fresh pod CIDR, or update what the agent reports of it."""
        kind = kind_of("Node")
        try:
            current: objects_pb2.Node = self.get(kind, "", node.metadata.name)  # type: ignore[assignment]
        except NotFound:
            node.spec.pod_cidr = self._free_pod_cidr()
            node.status.ClearField("conditions")
            return self.create(node)
        merged = objects_pb2.Node()
        merged.CopyFrom(current)
        merged.metadata.labels.clear()
        merged.metadata.labels.update(node.metadata.labels)
        status = merged.status
        conditions = list(status.conditions)
        status.CopyFrom(node.status)
        del status.conditions[:]
        status.conditions.extend(conditions)
        return self.update(merged)

    def _free_pod_cidr(self) -> str:
        net = ipaddress.ip_network(self.network.cluster_cidr)
        with self.replica.reading() as machine:
            taken = {kv.key for kv in machine.index.range(f"{ALLOC_PREFIX}podcidrs/", True, 0)}
        free: list[str] = []
        for subnet in net.subnets(new_prefix=self.network.node_cidr_prefix):
            if f"{ALLOC_PREFIX}podcidrs/{str(subnet).replace('/', '_')}" not in taken:
                free.append(str(subnet))
                if len(free) == 32:
                    break
        if not free:
            raise RaftorchError(f"no free pod CIDR left in the cluster CIDR {net}")
        # Nodes registering at once would all pick the lowest free one and collide.
        return random.choice(free)

    def ensure_namespaces(self, names: Iterable[str], fence_term: int = 0,
                          labels: Mapping[str, Mapping[str, str]] | None = None) -> list[Future[Message]]:
        """Create the namespaces that are missing, with `labels[name]` if given."""
        futures = []
        for name in names:
            try:
                self.get(kind_of("Namespace"), "", name)
            except NotFound:
                ns = objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name=name, labels=(labels or {}).get(name)),
                                           status=objects_pb2.NamespaceStatus(phase="Active"))
                futures.append(self.create(ns, request_id=f"namespace-{name}", fence_term=fence_term))
        return futures


def _as_binding(kind: Kind, kv: Any, pod: objects_pb2.Pod) -> objects_pb2.Pod | None:
    """The stored pod with `pod`'s node set, if `pod` is exactly that (a binding and nothing
    else: same revision, unbound before); None otherwise. Comparing the encodings checks every
    field at once, unknown ones included, without a walk in Python."""
    if kv is None or not pod.spec.node_name or pod.metadata.resource_version != kv.mod_revision:
        return None
    stored, _ = decode_checked(kind, kv)
    if not isinstance(stored, objects_pb2.Pod) or stored.spec.node_name:
        return None
    stored.spec.node_name = pod.spec.node_name
    if stored.SerializeToString(deterministic=True) != pod.SerializeToString(deterministic=True):
        return None
    return stored


def _plain_write(kind: Kind, key: str, revision: int, new: Message) -> tuple[
        list[kv_pb2.Compare], list[kv_pb2.RequestOp], list[kv_pb2.RequestOp],
        Callable[[kv_pb2.TxnResponse], Message]]:
    """Replace the object at `key` with `new` if it is still at `revision` (no allocations)."""
    name = new.metadata.name  # type: ignore[attr-defined]

    def finish(resp: kv_pb2.TxnResponse) -> Message:
        if not resp.succeeded:
            found = resp.responses[0].response_range if resp.responses else None
            if found is not None and not found.kvs:
                raise NotFound(f"{kind.name.lower()} {name!r} not found")
            raise Conflict(f"{kind.name.lower()} {name!r} was changed concurrently: re-read and retry")
        new.metadata.resource_version = resp.header.revision  # type: ignore[attr-defined]
        return new

    return [unchanged(key, revision)], [put_op(key, encode_bounded(kind, new))], [get_op(key)], finish


def _namespaced_kinds() -> list[Kind]:
    from raftorch.objects import KINDS

    return [k for k in KINDS if k.namespaced]


def _spec_bytes(msg: Message) -> bytes:
    spec = getattr(msg, "spec", None)
    return spec.SerializeToString(deterministic=True) if spec is not None else b""
