"""The Cluster gRPC service: members, roles and Raft progress."""

from __future__ import annotations

import asyncio

import grpc.aio

from raftorch.api.v1 import cluster_pb2, cluster_pb2_grpc
from raftorch.master.forward import LeaderForwarder
from raftorch.master.handlers import unary
from raftorch.store.replica import RaftReplica

STATUS_PROBE_TIMEOUT = 1.0


class ClusterService(cluster_pb2_grpc.ClusterServicer):
    def __init__(self, replica: RaftReplica, client_addr: str, forwarder: LeaderForwarder) -> None:
        self._replica = replica
        self._client_addr = client_addr
        self._forwarder = forwarder

    def _known_members(self) -> dict[str, cluster_pb2.Member]:
        """Registered members, plus configured peers that have not registered yet."""
        with self._replica.reading() as machine:
            members = {name: cluster_pb2.Member(name=m.name, client_addr=m.client_addr, peer_addr=m.peer_addr)
                       for name, m in machine.members.items()}
        registered_peers = {m.peer_addr for m in members.values()}
        for name, peer in self._replica.peers.items():
            if name not in members and peer not in registered_peers:
                members[name] = cluster_pb2.Member(name=name, peer_addr=peer)
        members[self._replica.name] = cluster_pb2.Member(
            name=self._replica.name, client_addr=self._client_addr, peer_addr=self._replica.peer_addr)
        return members

    def _leader_name(self, members: dict[str, cluster_pb2.Member]) -> str:
        peer = self._replica.leader_peer_addr
        for member in members.values():
            if peer and member.peer_addr == peer:
                return member.name
        return ""

    def local_status(self) -> cluster_pb2.MemberStatus:
        st = self._replica.status()
        members = self._known_members()
        leader = self._leader_name(members)
        healthy = st.has_quorum and bool(st.leader_peer_addr)
        with self._replica.reading() as machine:
            store_bytes, quota_bytes, alarms = machine.usage, machine.quota_bytes, machine.alarms
        return cluster_pb2.MemberStatus(
            name=self._replica.name, client_addr=self._client_addr, peer_addr=self._replica.peer_addr,
            role=st.role, term=st.term, commit_index=st.commit_index, applied_index=st.applied_index,
            healthy=healthy, leader=leader, revision=st.revision,
            error="" if healthy else ("no quorum" if not st.has_quorum else "no leader"),
            store_bytes=store_bytes, quota_bytes=quota_bytes, alarms=alarms,
        )

    @unary
    async def LocalStatus(self, request: cluster_pb2.LocalStatusRequest, context: grpc.aio.ServicerContext
                          ) -> cluster_pb2.MemberStatus:
        return self.local_status()

    @unary
    async def MemberList(self, request: cluster_pb2.MemberListRequest, context: grpc.aio.ServicerContext
                         ) -> cluster_pb2.MemberListResponse:
        members = self._known_members()
        return cluster_pb2.MemberListResponse(members=[members[n] for n in sorted(members)],
                                              leader=self._leader_name(members))

    @unary
    async def Status(self, request: cluster_pb2.StatusRequest, context: grpc.aio.ServicerContext
                     ) -> cluster_pb2.StatusResponse:
        members = self._known_members()
        names = sorted(members)
        statuses = await asyncio.gather(*(self._probe(members[n]) for n in names))
        leaders = {s.name for s in statuses if s.role == "leader"}
        leader = self._leader_name(members)
        if len(leaders) == 1:
            leader = next(iter(leaders))
        return cluster_pb2.StatusResponse(members=statuses, leader=leader)

    async def _probe(self, member: cluster_pb2.Member) -> cluster_pb2.MemberStatus:
        if member.name == self._replica.name:
            return self.local_status()
        unreachable = cluster_pb2.MemberStatus(
            name=member.name, client_addr=member.client_addr, peer_addr=member.peer_addr,
            role="unknown", healthy=False)
        if not member.client_addr:
            unreachable.error = "has not registered its client address"
            return unreachable
        try:
            status: cluster_pb2.MemberStatus = await self._forwarder.cluster(member.client_addr).LocalStatus(
                cluster_pb2.LocalStatusRequest(), timeout=STATUS_PROBE_TIMEOUT)
            return status
        except grpc.aio.AioRpcError as exc:
            unreachable.error = f"unreachable: {exc.code().name.lower()}"
            return unreachable
