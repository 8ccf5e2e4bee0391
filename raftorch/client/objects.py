"""Cluster objects through the Resources API: create, get, list, update, delete, watch."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message

from raftorch.api.v1 import agents_pb2, objects_pb2, resources_pb2
from raftorch.client.stream import ResumableStream
from raftorch.errors import from_grpc_code
from raftorch.objects import unwrap, wrap

if TYPE_CHECKING:
    from raftorch.client.connection import Connection, Stubs

_RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    type: str  # ADDED, MODIFIED, DELETED
    object: Message
    resource_version: int


def _unwrap(obj: objects_pb2.Object) -> Message:
    return unwrap(obj)[1]


class Objects:
    """`client.objects`: typed access to pods, deployments, services, nodes, ..."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def create(self, msg: Message) -> Message:
        req = resources_pb2.CreateRequest(object=wrap(msg), request_id=uuid.uuid4().hex)
        return _unwrap(self._conn.call(lambda s, t: s.resources.Create(req, timeout=t)))

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        req = resources_pb2.GetRequest(kind=kind, namespace=namespace, name=name)
        return _unwrap(self._conn.call(lambda s, t: s.resources.Get(req, timeout=t)))

    def list(self, kind: str, namespace: str = "", label_selector: str = "", field_selector: str = "",
             serializable: bool = False) -> tuple[list[Message], int]:
        req = resources_pb2.ListRequest(kind=kind, namespace=namespace, label_selector=label_selector,
                                        field_selector=field_selector, serializable=serializable)
        resp: resources_pb2.ListResponse = self._conn.call(lambda s, t: s.resources.List(req, timeout=t))
        return [_unwrap(o) for o in resp.items], resp.resource_version

    def update(self, msg: Message) -> Message:
        req = resources_pb2.UpdateRequest(object=wrap(msg), request_id=uuid.uuid4().hex)
        return _unwrap(self._conn.call(lambda s, t: s.resources.Update(req, timeout=t)))

    def update_status(self, msg: Message) -> Message:
        req = resources_pb2.UpdateRequest(object=wrap(msg), request_id=uuid.uuid4().hex)
        return _unwrap(self._conn.call(lambda s, t: s.resources.UpdateStatus(req, timeout=t)))

    def delete(self, kind: str, name: str, namespace: str = "", resource_version: int = 0,
               propagation: str = "") -> Message:
        req = resources_pb2.DeleteRequest(kind=kind, namespace=namespace, name=name,
                                          resource_version=resource_version, propagation=propagation,
                                          request_id=uuid.uuid4().hex)
        return _unwrap(self._conn.call(lambda s, t: s.resources.Delete(req, timeout=t)))

    def watch(self, kind: str, namespace: str = "", label_selector: str = "", field_selector: str = "",
              resource_version: int = 0) -> ObjectWatch:
        return ObjectWatch(self._conn, resources_pb2.WatchObjectsRequest(
            kind=kind, namespace=namespace, label_selector=label_selector, field_selector=field_selector,
            resource_version=resource_version))

    def logs(self, pod: str, namespace: str = "", container: str = "", follow: bool = False,
             tail_lines: int = 0) -> Iterator[bytes]:
        """A pod's log as chunks of bytes, relayed by a master from the agent of the pod's node;
        with `follow`, until the container stops or the iterator is closed.

        The pod is read first, which finds a master that answers (with failover) and reports a
        missing pod as NotFound. The stream itself is not moved to another master on failure:
        UNAVAILABLE from it usually means the node's agent is unreachable, which another master
        would not change."""
        self.get("pods", pod, namespace)
        req = agents_pb2.LogsRequest(namespace=namespace, pod=pod, container=container, follow=follow,
                                     tail_lines=tail_lines)
        call = self._conn.stubs(self._conn._candidate()).pods.Logs(req)
        return _log_chunks(call)

    def follow_logs(self, pod: str, namespace: str = "", container: str = "", tail_lines: int = 0) -> LogStream:
        """`logs(..., follow=True)` that another thread may stop (`close()`): for servers that
        relay a log until their own client goes away."""
        self.get("pods", pod, namespace)
        req = agents_pb2.LogsRequest(namespace=namespace, pod=pod, container=container, follow=True,
                                     tail_lines=tail_lines)
        return LogStream(self._conn.stubs(self._conn._candidate()).pods.Logs(req))


class LogStream:
    """A pod's log chunks as they come; `close()`, from any thread, ends the stream."""

    def __init__(self, call: grpc.Future) -> None:
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        return _log_chunks(self._call)

    def close(self) -> None:
        self._call.cancel()


def _log_chunks(call: grpc.Future) -> Iterator[bytes]:
    try:
        for chunk in call:
            yield chunk.data
    except grpc.RpcError as exc:
        raise from_grpc_code(exc.code(), exc.details() or exc.code().name) from None
    finally:
        call.cancel()


class ObjectWatch(ResumableStream[ObjectEvent]):
    """Object events in order, resumed on another master from the last resource_version seen."""

    def __init__(self, conn: Connection, request: resources_pb2.WatchObjectsRequest | agents_pb2.WatchNodePodsRequest,
                 open_stream: str = "resources") -> None:
        super().__init__(conn)
        self._request = request
        self._kind = open_stream
        self.resource_version = request.resource_version
        # Set once the stream has delivered the current state (its first bookmark).
        self.synced = threading.Event()

    def _open(self, stubs: Stubs) -> grpc.Future:
        req = type(self._request).FromString(self._request.SerializeToString())
        req.resource_version = self.resource_version
        if self._kind == "agents":
            return stubs.agents.WatchNodePods(req)
        return stubs.resources.Watch(req)

    def _receive(self, ev: resources_pb2.ObjectEvent) -> Iterator[ObjectEvent]:
        if ev.type != "BOOKMARK":
            yield ObjectEvent(ev.type, _unwrap(ev.object), ev.resource_version)
        # Before the first bookmark of a watch from 0, the stream lists current objects in key
        # order: only the bookmark says where that list ended.
        if ev.type == "BOOKMARK" or self.resource_version:
            self.resource_version = max(self.resource_version, ev.resource_version)
        if ev.type == "BOOKMARK":
            self.synced.set()
