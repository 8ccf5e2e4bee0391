"""The Python client of raftorch's masters: KV, leases, watches and cluster status."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from raftorch.api.v1 import cluster_pb2, kv_pb2
from raftorch.client.auth import AuthAPI
from raftorch.client.config import ClientConfig
from raftorch.client.connection import Connection, Stubs, parse_endpoints
from raftorch.client.objects import Objects
from raftorch.client.types import (
    ClusterStatus,
    Compare,
    Delete,
    DeleteResult,
    Get,
    KeyValue,
    Lease,
    LeaseTTL,
    Member,
    MemberStatus,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)
from raftorch.client.watch import Watch
from raftorch.errors import Invalid
from raftorch.rpc import Credentials

_TARGETS = {"version": kv_pb2.Compare.VERSION, "create": kv_pb2.Compare.CREATE, "mod": kv_pb2.Compare.MOD,
            "value": kv_pb2.Compare.VALUE, "lease": kv_pb2.Compare.LEASE}
_RESULTS = {"==": kv_pb2.Compare.EQUAL, "!=": kv_pb2.Compare.NOT_EQUAL, ">": kv_pb2.Compare.GREATER,
            "<": kv_pb2.Compare.LESS}
_TARGET_FIELD = {"version": "version", "create": "create_revision", "mod": "mod_revision",
                 "value": "value", "lease": "lease"}


def _request_id() -> str:
    return uuid.uuid4().hex


def _range_result(resp: kv_pb2.RangeResponse) -> RangeResult:
    return RangeResult(resp.header.revision, [KeyValue.from_pb(kv) for kv in resp.kvs], resp.count, resp.more)


def _put_result(resp: kv_pb2.PutResponse) -> PutResult:
    return PutResult(resp.header.revision, KeyValue.from_pb(resp.prev_kv) if resp.HasField("prev_kv") else None)


def _delete_result(resp: kv_pb2.DeleteRangeResponse) -> DeleteResult:
    return DeleteResult(resp.header.revision, resp.deleted, [KeyValue.from_pb(kv) for kv in resp.prev_kvs])


class Client:
    """Talks to any of the given masters; retries on another when one fails.

    >>> c = Client(["127.0.0.1:2379", "127.0.0.1:2381"])
    >>> c.put("greeting", b"hello").revision
    """

    def __init__(self, endpoints: str | list[str], timeout: float = 5.0, retry_for: float = 15.0,
                 pin: bool = False, credentials: Credentials | None = None) -> None:
        """`pin` keeps every call on the given endpoints (in order) instead of moving to the
        leader the cluster reports; writes still work, as any master forwards them.

        `credentials`: the cluster CA and a client certificate or token (see
        `raftorch.client.load_credentials` and `Client.from_config`); None is plaintext,
        which only a master started with --insecure answers."""
        self._conn = Connection(parse_endpoints(endpoints), timeout, retry_for, pin, credentials)
        self.objects = Objects(self._conn)
        self.auth = AuthAPI(self._conn)

    @classmethod
    def from_config(cls, path: Path | None = None, **overrides: object) -> Client:
        """A client as raftctl makes one: endpoints and credentials from the client config
        (default ~/.config/raftorch/config.yaml)."""
        cfg = ClientConfig.load(path)
        kwargs: dict[str, object] = {"timeout": cfg.timeout, "retry_for": cfg.retry_for,
                                     "credentials": cfg.credentials()}
        kwargs.update(overrides)
        return cls(cfg.endpoints, **kwargs)  # type: ignore[arg-type]

    @property
    def credentials(self) -> Credentials | None:
        return self._conn.creds

    @property
    def endpoints(self) -> list[str]:
        return list(self._conn.endpoints)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- KV ----------------------------------------------------------------------------

    def put(self, key: str, value: bytes | str, lease: int = 0, prev_kv: bool = False) -> PutResult:
        req = kv_pb2.PutRequest(key=key, value=value.encode() if isinstance(value, str) else value,
                                lease=lease, prev_kv=prev_kv, request_id=_request_id())
        return _put_result(self._conn.call(lambda s, t: s.kv.Put(req, timeout=t)))

    def get(self, key: str, prefix: bool = False, revision: int = 0, limit: int = 0,
            serializable: bool = False, keys_only: bool = False, count_only: bool = False) -> RangeResult:
        req = kv_pb2.RangeRequest(key=key, prefix=prefix, revision=revision, limit=limit,
                                  serializable=serializable, keys_only=keys_only, count_only=count_only)
        return _range_result(self._conn.call(lambda s, t: s.kv.Range(req, timeout=t)))

    def get_one(self, key: str, serializable: bool = False) -> KeyValue | None:
        result = self.get(key, serializable=serializable)
        return result.kvs[0] if result.kvs else None

    def delete(self, key: str, prefix: bool = False, prev_kv: bool = False) -> DeleteResult:
        req = kv_pb2.DeleteRangeRequest(key=key, prefix=prefix, prev_kv=prev_kv, request_id=_request_id())
        return _delete_result(self._conn.call(lambda s, t: s.kv.DeleteRange(req, timeout=t)))

    def txn(self, compare: Iterable[Compare], success: Iterable[Put | Get | Delete] = (),
            failure: Iterable[Put | Get | Delete] = ()) -> TxnResult:
        req = kv_pb2.TxnRequest(request_id=_request_id())
        for c in compare:
            if c.target not in _TARGETS or c.op not in _RESULTS:
                raise Invalid(f"compare on {c.target!r} with {c.op!r} is not supported")
            pb = req.compare.add(key=c.key, target=_TARGETS[c.target], result=_RESULTS[c.op])
            setattr(pb, _TARGET_FIELD[c.target], c.operand)
        for ops, target in ((success, req.success), (failure, req.failure)):
            for op in ops:
                if isinstance(op, Put):
                    target.add(request_put=kv_pb2.PutRequest(key=op.key, value=op.value, lease=op.lease))
                elif isinstance(op, Get):
                    target.add(request_range=kv_pb2.RangeRequest(key=op.key, prefix=op.prefix))
                else:
                    target.add(request_delete_range=kv_pb2.DeleteRangeRequest(key=op.key, prefix=op.prefix))
        resp: kv_pb2.TxnResponse = self._conn.call(lambda s, t: s.kv.Txn(req, timeout=t))
        results: list[PutResult | RangeResult | DeleteResult] = []
        for r in resp.responses:
            kind = r.WhichOneof("response")
            if kind == "response_put":
                results.append(_put_result(r.response_put))
            elif kind == "response_range":
                results.append(_range_result(r.response_range))
            else:
                results.append(_delete_result(r.response_delete_range))
        return TxnResult(resp.header.revision, resp.succeeded, results)

    def compact(self, revision: int) -> int:
        req = kv_pb2.CompactRequest(revision=revision, request_id=_request_id())
        resp: kv_pb2.CompactResponse = self._conn.call(lambda s, t: s.kv.Compact(req, timeout=t))
        return resp.header.revision

    def watch(self, key: str, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False) -> Watch:
        """Changes to `key` (or every key under it) from `start_revision` on, in order, once each,
        resuming on another master if the one serving the stream fails."""
        return Watch(self._conn, key, prefix, start_revision, prev_kv)

    # -- leases --------------------------------------------------------------------------

    def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        req = kv_pb2.LeaseGrantRequest(ttl=ttl, id=lease_id, request_id=_request_id())
        resp: kv_pb2.LeaseGrantResponse = self._conn.call(lambda s, t: s.kv.LeaseGrant(req, timeout=t))
        return Lease(resp.id, resp.ttl)

    def lease_revoke(self, lease_id: int) -> None:
        req = kv_pb2.LeaseRevokeRequest(id=lease_id, request_id=_request_id())
        self._conn.call(lambda s, t: s.kv.LeaseRevoke(req, timeout=t))

    def lease_keep_alive(self, lease_id: int) -> int:
        req = kv_pb2.LeaseKeepAliveRequest(id=lease_id)
        resp: kv_pb2.LeaseKeepAliveResponse = self._conn.call(lambda s, t: s.kv.LeaseKeepAlive(req, timeout=t))
        return resp.ttl

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTTL:
        req = kv_pb2.LeaseTimeToLiveRequest(id=lease_id, keys=keys)
        resp: kv_pb2.LeaseTimeToLiveResponse = self._conn.call(
            lambda s, t: s.kv.LeaseTimeToLive(req, timeout=t))
        return LeaseTTL(resp.id, resp.ttl, resp.granted_ttl, list(resp.keys))

    # -- cluster -------------------------------------------------------------------------

    def cluster_status(self) -> ClusterStatus:
        resp: cluster_pb2.StatusResponse = self._conn.call(
            lambda s, t: s.cluster.Status(cluster_pb2.StatusRequest(), timeout=t))
        return ClusterStatus(resp.leader, [_member_status(m) for m in resp.members])

    def member_list(self) -> tuple[str, list[Member]]:
        resp: cluster_pb2.MemberListResponse = self._conn.call(
            lambda s, t: s.cluster.MemberList(cluster_pb2.MemberListRequest(), timeout=t))
        return resp.leader, [Member(m.name, m.client_addr, m.peer_addr) for m in resp.members]

    def member_status(self, endpoint: str) -> MemberStatus:
        """The status one master reports of itself (no failover: that master is the question)."""
        stubs = Stubs(endpoint, self._conn.creds)
        try:
            resp = stubs.cluster.LocalStatus(cluster_pb2.LocalStatusRequest(), timeout=self._conn.timeout)
            return _member_status(resp)
        finally:
            stubs.close()


def _member_status(m: cluster_pb2.MemberStatus) -> MemberStatus:
    return MemberStatus(m.name, m.client_addr, m.peer_addr, m.role, m.term, m.commit_index,
                        m.applied_index, m.healthy, m.leader, m.revision, m.error, m.store_bytes,
                        m.quota_bytes, tuple(m.alarms))
