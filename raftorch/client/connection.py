"""Endpoints, leader discovery and retries, shared by every call of the client."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from raftorch import rpc
from raftorch.api.v1 import (
    agents_pb2_grpc,
    auth_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    kv_pb2_grpc,
    resources_pb2_grpc,
)
from raftorch.errors import Invalid, RaftorchError, Unavailable, UnknownOutcome, from_grpc_code

T = TypeVar("T")

_default_credentials: rpc.Credentials | None = None


def set_default_credentials(creds: rpc.Credentials | None) -> None:
    """The credentials a Client uses when it is given none: for programs that talk to one
    cluster from many places (drills, benchmarks, local test clusters set it). Pass
    `rpc.INSECURE` to a Client for an explicitly plaintext one."""
    global _default_credentials
    _default_credentials = creds


def default_credentials() -> rpc.Credentials | None:
    return _default_credentials


# Codes after which another master may succeed.
_FAILOVER_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.CANCELLED}


class Stubs:
    def __init__(self, address: str, creds: rpc.Credentials | None = None) -> None:
        self.address = address
        self.channel = rpc.channel(address, creds)
        self.kv = kv_pb2_grpc.KVStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(self.channel)
        self.resources = resources_pb2_grpc.ResourcesStub(self.channel)
        self.agents = agents_pb2_grpc.AgentsStub(self.channel)
        self.pods = agents_pb2_grpc.PodsStub(self.channel)
        self.auth = auth_pb2_grpc.AuthStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def parse_endpoints(endpoints: str | list[str]) -> list[str]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = [e.strip() for e in items if e.strip()]
    if not out:
        raise Invalid("no master endpoints given (HOST:PORT,...)")
    for e in out:
        host, sep, port = e.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise Invalid(f"endpoint {e!r}: expected HOST:PORT")
    return out


class Connection:
    """Picks a master for each call: the leader when known, else the next endpoint."""

    def __init__(self, endpoints: list[str], timeout: float, retry_for: float, pin: bool = False,
                 creds: rpc.Credentials | None = None) -> None:
        self.endpoints = list(endpoints)
        self.creds = creds if creds is not None else _default_credentials
        self.timeout = timeout
        self.retry_for = retry_for
        self._lock = threading.Lock()
        self._stubs: dict[str, Stubs] = {}
        self._preferred: str | None = None
        self._cursor = 0 if pin else random.randrange(len(self.endpoints))
        # Pinned: talk to the given endpoints only, never to a discovered leader.
        self._discovered = pin
        self.pin = pin

    def stubs(self, address: str) -> Stubs:
        with self._lock:
            stubs = self._stubs.get(address)
            if stubs is None:
                stubs = self._stubs[address] = Stubs(address, self.creds)
            return stubs

    def set_credentials(self, creds: rpc.Credentials) -> None:
        """Use `creds` (a renewed certificate) from now on. Channels in use are closed, so
        their streams reconnect with the new credentials."""
        with self._lock:
            self.creds = creds
            old, self._stubs = self._stubs, {}
        for stubs in old.values():
            stubs.close()

    def _candidate(self) -> str:
        with self._lock:
            if self._preferred is not None:
                return self._preferred
            address = self.endpoints[self._cursor % len(self.endpoints)]
            return address

    def _failed(self, address: str) -> None:
        with self._lock:
            if self._preferred == address:
                self._preferred = None
            if self.endpoints[self._cursor % len(self.endpoints)] == address:
                self._cursor += 1

    def discover_leader(self, address: str, failed: str = "") -> None:
        """Ask one master who leads; prefer the leader if its address is one we may use.

        `failed` is an address that just failed us: a master may still name it as leader for
        a moment after it died, and going back to it would only waste the retry."""
        try:
            resp: cluster_pb2.MemberListResponse = self.stubs(address).cluster.MemberList(
                cluster_pb2.MemberListRequest(), timeout=min(self.timeout, 1.0))
        except grpc.RpcError:
            return
        for member in resp.members:
            if member.name == resp.leader and member.client_addr and member.client_addr != failed:
                with self._lock:
                    if member.client_addr not in self.endpoints:
                        # Learned from the cluster: usable as a fallback too.
                        self.endpoints.append(member.client_addr)
                    self._preferred = member.client_addr
                return

    def call(self, fn: Callable[[Stubs, float], T], idempotent: bool = True) -> T:
        """Run `fn` against masters until it succeeds, fails for good, or time runs out.

        Writes are safe to repeat because each carries a request id the store deduplicates,
        so `idempotent` is false only for calls that must not be repeated at all."""
        if not self._discovered:
            self._discovered = True
            self.discover_leader(self._candidate())
        deadline = time.monotonic() + self.retry_for
        delay = 0.02
        last: RaftorchError | None = None
        tried: set[str] = set()
        while True:
            address = self._candidate()
            try:
                return fn(self.stubs(address), self.timeout)
            except grpc.RpcError as exc:
                code = exc.code()
                err = from_grpc_code(code, f"{address}: {exc.details() or code.name}")
                if code not in _FAILOVER_CODES or not idempotent:
                    raise err from None
                last = err
                first_failure = address not in tried
                tried.add(address)
                self._failed(address)
                if first_failure and not self.pin:
                    self.discover_leader(self._candidate(), failed=address)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if len(tried) >= len(self.endpoints):
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.5)
                tried.clear()
        if isinstance(last, UnknownOutcome):
            raise last
        where = ", ".join(self.endpoints)
        hint = "" if self.creds is not None and not self.creds.insecure else \
            " (this client has no credentials and speaks plaintext; masters speak TLS only: " \
            "set ca-file and cert-file/key-file or token in the client config)"
        raise Unavailable(f"no master answered in {self.retry_for:.0f}s (tried {where}): {last}{hint}")

    def close(self) -> None:
        with self._lock:
            for stubs in self._stubs.values():
                stubs.close()
            self._stubs.clear()
