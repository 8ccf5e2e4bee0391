"""Asking masters, one by one, who leads and whether they are healthy."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from raftorch.client import Client, MemberStatus
from raftorch.errors import Unavailable


def local_status(addr: str, timeout: float = 0.5) -> MemberStatus | None:
    """What the master at `addr` says of itself; None if it does not answer."""
    with Client([addr], timeout=timeout, retry_for=0.0, pin=True) as c:
        try:
            return c.member_status(addr)
        except Exception:
            return None


def statuses(endpoints: Mapping[str, str], names: Collection[str] | None = None,
             timeout: float = 0.5) -> dict[str, MemberStatus]:
    """The answers of the named masters (all by default) that answered."""
    out: dict[str, MemberStatus] = {}
    for name, addr in endpoints.items():
        if names is not None and name not in names:
            continue
        st = local_status(addr, timeout)
        if st is not None:
            out[name] = st
    return out


def quorum_leader(endpoints: Mapping[str, str], among: Collection[str] | None = None,
                  min_term: int = 0) -> tuple[str, int] | None:
    """(name, term) of a master that leads with a quorum, as a majority of all masters
    confirm, in a term of at least `min_term`; None while there is no such leader."""
    seen = statuses(endpoints, among)
    majority = len(endpoints) // 2 + 1
    for name, st in seen.items():
        if st.role != "leader" or not st.healthy or st.term < min_term:
            continue
        agree = sum(1 for other in seen.values() if other.leader == name and other.term == st.term)
        if agree >= majority:
            return name, st.term
    return None


def wait_for(check: Callable[[], bool], timeout: float, what: str, period: float = 0.05) -> float:
    """Poll until `check()` holds; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:
            pass
        if time.monotonic() >= deadline:
            raise Unavailable(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(period)


def wait_leader(endpoints: Mapping[str, str], among: Collection[str] | None = None, min_term: int = 0,
                timeout: float = 30.0) -> tuple[str, int]:
    """Wait for a quorum leader among the named masters; returns (name, term)."""
    found: list[tuple[str, int]] = []

    def check() -> bool:
        got = quorum_leader(endpoints, among, min_term)
        if got is not None:
            found.append(got)
        return got is not None

    wait_for(check, timeout, "a leader with a quorum")
    return found[-1]


def healthy(endpoints: Mapping[str, str], names: Collection[str] | None = None) -> bool:
    """Every named master answers, is healthy, names the same leader, and sees every named
    master registered and healthy (so the cluster may lose any one of them next)."""
    wanted = set(endpoints if names is None else names)
    seen = statuses(endpoints, wanted)
    if set(seen) != wanted or not all(st.healthy for st in seen.values()):
        return False
    leaders = {st.leader for st in seen.values()}
    if len(leaders) != 1 or not leaders <= wanted or seen[next(iter(leaders))].role != "leader":
        return False
    addr = endpoints[next(iter(leaders))]
    with Client([addr], timeout=1.0, retry_for=1.0, pin=True) as c:
        members = {m.name for m in c.cluster_status().members if m.healthy}
    return wanted <= members


def wait_healthy(endpoints: Mapping[str, str], names: Collection[str] | None = None,
                 timeout: float = 30.0) -> float:
    return wait_for(lambda: healthy(endpoints, names), timeout, "every master healthy", period=0.1)
