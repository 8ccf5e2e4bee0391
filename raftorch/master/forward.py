"""Reaching the leader's gRPC API from another master (for state kept in leader memory), and
the agents' endpoints; over TLS with this master's certificate."""

from __future__ import annotations

import grpc.aio

from raftorch import rpc
from raftorch.api.v1 import cluster_pb2_grpc, kv_pb2_grpc
from raftorch.errors import NotLeader
from raftorch.store.replica import RaftReplica


class LeaderForwarder:
    def __init__(self, replica: RaftReplica, creds: rpc.Credentials | None = None) -> None:
        self._replica = replica
        # The master's own certificate: it authenticates to other masters and to agents.
        self._creds = creds
        self._channels: dict[str, grpc.aio.Channel] = {}

    def leader_client_addr(self) -> str:
        peer = self._replica.leader_peer_addr
        if not peer:
            raise NotLeader("no leader is known right now; retry")
        with self._replica.reading() as machine:
            for member in machine.members.values():
                if member.peer_addr == peer:
                    return member.client_addr
        raise NotLeader(f"the leader ({peer}) has not registered its client address yet; retry")

    def channel(self, addr: str) -> grpc.aio.Channel:
        chan = self._channels.get(addr)
        if chan is None:
            chan = self._channels[addr] = rpc.aio_channel(addr, self._creds)
        return chan

    def kv(self, _context: object = None) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(self.channel(self.leader_client_addr()))

    def cluster(self, addr: str) -> cluster_pb2_grpc.ClusterStub:
        return cluster_pb2_grpc.ClusterStub(self.channel(addr))

    async def close(self) -> None:
        for chan in self._channels.values():
            await chan.close()
        self._channels.clear()
