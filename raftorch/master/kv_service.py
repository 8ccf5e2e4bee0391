"""The KV gRPC service: every master answers; writes and barriers go through Raft."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from raftorch.api.v1 import kv_pb2, kv_pb2_grpc, store_pb2
from raftorch.errors import Compacted, Invalid, error_for_code
from raftorch.master import validation
from raftorch.master.forward import LeaderForwarder
from raftorch.master.handlers import time_left, unary, wait_read, wait_write
from raftorch.store.leases import LeaseKeeper
from raftorch.store.machine import StateMachine
from raftorch.store.replica import RaftReplica
from raftorch.store.watch import Watcher

# An idle watch stream gets a progress message this often, so clients know it is alive.
WATCH_PROGRESS_INTERVAL = 5.0


class KVService(kv_pb2_grpc.KVServicer):
    def __init__(self, replica: RaftReplica, leases: LeaseKeeper, forwarder: LeaderForwarder,
                 write_timeout: float) -> None:
        self._replica = replica
        self._leases = leases
        self._forwarder = forwarder
        self._write_timeout = write_timeout

    async def _write(self, command: store_pb2.Command, context: grpc.aio.ServicerContext
                     ) -> store_pb2.CommandResult:
        if not command.request_id:
            command.request_id = uuid.uuid4().hex
        future = self._replica.submit(command)
        result = await wait_write(future, time_left(context, self._write_timeout))
        if result.WhichOneof("result") == "error":
            raise error_for_code(result.error.code, result.error.message)
        return result

    async def _barrier(self, context: grpc.aio.ServicerContext) -> None:
        await wait_read(self._replica.read_barrier(), time_left(context, self._write_timeout))

    def _stamp(self, header: kv_pb2.ResponseHeader) -> None:
        header.raft_term = self._replica.term

    @unary
    async def Put(self, request: kv_pb2.PutRequest, context: grpc.aio.ServicerContext) -> kv_pb2.PutResponse:
        validation.check_put(request)
        result = await self._write(store_pb2.Command(request_id=request.request_id, put=request), context)
        self._stamp(result.put.header)
        return result.put

    @unary
    async def Range(self, request: kv_pb2.RangeRequest, context: grpc.aio.ServicerContext
                    ) -> kv_pb2.RangeResponse:
        validation.check_range(request)
        if not request.serializable:
            await self._barrier(context)
        with self._replica.reading() as machine:
            resp = machine.range(request)
        self._stamp(resp.header)
        return resp

    @unary
    async def DeleteRange(self, request: kv_pb2.DeleteRangeRequest, context: grpc.aio.ServicerContext
                          ) -> kv_pb2.DeleteRangeResponse:
        validation.check_delete(request)
        result = await self._write(
            store_pb2.Command(request_id=request.request_id, delete_range=request), context)
        self._stamp(result.delete_range.header)
        return result.delete_range

    @unary
    async def Txn(self, request: kv_pb2.TxnRequest, context: grpc.aio.ServicerContext) -> kv_pb2.TxnResponse:
        validation.check_txn(request)
        result = await self._write(store_pb2.Command(request_id=request.request_id, txn=request), context)
        self._stamp(result.txn.header)
        return result.txn

    @unary
    async def Compact(self, request: kv_pb2.CompactRequest, context: grpc.aio.ServicerContext
                      ) -> kv_pb2.CompactResponse:
        validation.check_id(request.revision, "revision")
        validation.check_request_id(request.request_id)
        result = await self._write(store_pb2.Command(request_id=request.request_id, compact=request), context)
        return result.compact

    # -- leases ----------------------------------------------------------------------

    @unary
    async def LeaseGrant(self, request: kv_pb2.LeaseGrantRequest, context: grpc.aio.ServicerContext
                         ) -> kv_pb2.LeaseGrantResponse:
        validation.check_ttl(request.ttl)
        validation.check_id(request.id, "id", allow_zero=True)
        validation.check_request_id(request.request_id)
        result = await self._write(
            store_pb2.Command(request_id=request.request_id, lease_grant=request), context)
        return result.lease_grant

    @unary
    async def LeaseRevoke(self, request: kv_pb2.LeaseRevokeRequest, context: grpc.aio.ServicerContext
                          ) -> kv_pb2.LeaseRevokeResponse:
        validation.check_id(request.id, "id")
        validation.check_request_id(request.request_id)
        result = await self._write(
            store_pb2.Command(request_id=request.request_id, lease_revoke=request), context)
        return result.lease_revoke

    @unary
    async def LeaseKeepAlive(self, request: kv_pb2.LeaseKeepAliveRequest, context: grpc.aio.ServicerContext
                             ) -> kv_pb2.LeaseKeepAliveResponse:
        validation.check_id(request.id, "id")
        if not self._replica.is_leader:
            # TTLs live in the leader's memory.
            forwarded: kv_pb2.LeaseKeepAliveResponse = await self._forwarder.kv(context).LeaseKeepAlive(
                request, timeout=time_left(context, 2.0))
            return forwarded
        ttl = self._leases.keep_alive(request.id)
        return kv_pb2.LeaseKeepAliveResponse(header=self._header(), id=request.id, ttl=ttl)

    @unary
    async def LeaseTimeToLive(self, request: kv_pb2.LeaseTimeToLiveRequest,
                              context: grpc.aio.ServicerContext) -> kv_pb2.LeaseTimeToLiveResponse:
        validation.check_id(request.id, "id")
        if not self._replica.is_leader:
            ttl: kv_pb2.LeaseTimeToLiveResponse = await self._forwarder.kv(context).LeaseTimeToLive(
                request, timeout=time_left(context, 2.0))
            return ttl
        left, granted, keys = self._leases.time_to_live(request.id)
        return kv_pb2.LeaseTimeToLiveResponse(header=self._header(), id=request.id, ttl=left,
                                              granted_ttl=granted, keys=keys if request.keys else [])

    def _header(self) -> kv_pb2.ResponseHeader:
        with self._replica.reading() as machine:
            return machine.header(self._replica.term)

    # -- watch -----------------------------------------------------------------------

    async def Watch(self, request: kv_pb2.WatchRequest, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        # Errors raised here reach the client with their own code (see edge.py).
        validation.check_key(request.key, "key", allow_empty=request.prefix)
        if not 0 <= request.start_revision <= validation.MAX_ID:
            raise Invalid(f"start_revision: must be between 0 and 2^62, got {request.start_revision}")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[list[kv_pb2.KeyEvent], int]] = asyncio.Queue()

        def notify(events: list[kv_pb2.KeyEvent], revision: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (events, revision))

        watcher = Watcher(request.key, request.prefix, request.prev_kv, notify)
        with self._replica.reading() as machine:
            try:
                backlog = self._replay(machine, request, watcher)
            except Compacted as err:
                yield kv_pb2.WatchResponse(header=machine.header(self._replica.term),
                                           compact_revision=machine.index.compact_revision)
                await context.abort(err.grpc_code, err.message)
            start_header = machine.header(self._replica.term)
            self._replica.hub.add(watcher, machine.revision)
        try:
            for revision, events in backlog:
                yield kv_pb2.WatchResponse(header=kv_pb2.ResponseHeader(
                    member=start_header.member, revision=revision, raft_term=start_header.raft_term),
                    events=events)
            # Caught up to here: lets the client resume from the right place even if idle.
            yield kv_pb2.WatchResponse(header=start_header)
            while True:
                try:
                    events, revision = await asyncio.wait_for(queue.get(), WATCH_PROGRESS_INTERVAL)
                except TimeoutError:
                    if request.progress_notify:
                        yield kv_pb2.WatchResponse(header=self._header())
                    continue
                if watcher.overflowed and not events:
                    break
                watcher.consumed(len(events))
                # A client resuming on a lagging master asked for revisions it already has.
                events = [e for e in events if e.kv.mod_revision >= request.start_revision]
                if not events:
                    continue
                yield kv_pb2.WatchResponse(header=kv_pb2.ResponseHeader(
                    member=start_header.member, revision=revision, raft_term=self._replica.term),
                    events=events)
                if watcher.overflowed and queue.empty():
                    break
        finally:
            with self._replica.reading():
                self._replica.hub.remove(watcher)
        await context.abort(grpc.StatusCode.UNAVAILABLE,
                            "watch fell too far behind or the replica was reset; resume from the last revision")

    @staticmethod
    def _replay(machine: StateMachine, request: kv_pb2.WatchRequest, watcher: Watcher
                ) -> list[tuple[int, list[kv_pb2.KeyEvent]]]:
        if request.start_revision <= 0 or request.start_revision > machine.revision:
            return []
        grouped: list[tuple[int, list[kv_pb2.KeyEvent]]] = []
        for revision, change in machine.index.changes_since(request.start_revision):
            if not watcher.matches(change.kv.key):
                continue
            event = watcher.select([change])[0]
            if grouped and grouped[-1][0] == revision:
                grouped[-1][1].append(event)
            else:
                grouped.append((revision, [event]))
        return grouped
