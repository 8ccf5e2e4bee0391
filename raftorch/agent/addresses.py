"""Fixed pod addresses on the node's pod bridge, for pods whose one container runs without a sandbox.

A pod with a sandbox has the address Docker gave its sandbox, for as long as the sandbox lives,
while its containers come and go. A pod of one container has no sandbox (one container per pod,
as Docker Swarm and Nomad run tasks): its container holds the network namespace, and a new
container replaces it after every exit. So that the pod keeps its address, the agent chooses it
and creates each of the pod's containers at it, and holds it for the pod until the pod is gone
or has finished.

The agent takes its addresses from the upper half of the node's pod CIDR, from the top down.
Docker gives the other containers on the bridge (sandboxes, the warm pool) the lowest free
address of the whole CIDR, so the two meet only when more than half the CIDR is in use; an
address seen on any running container is never chosen. Pure: the reconciler calls it with what
it knows, and remembers the outcome (`PodRecord.address`); a restarted agent finds the addresses
again on its containers (the `pod-ip` label, on exited containers too) or in the pods' status.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["AddressRange"]


class AddressRange:
    """The addresses of `pod_cidr` the agent gives out: its upper half, but the broadcast address
    and the gateway (the first host address)."""

    def __init__(self, pod_cidr: str) -> None:
        network = ipaddress.IPv4Network(pod_cidr, strict=False)
        base, size = int(network.network_address), network.num_addresses
        self._first = max(base + size // 2, base + 2)
        self._last = base + size - 2

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not address:
            return False
        try:
            value = int(ipaddress.IPv4Address(address))
        except ValueError:
            return False
        return self._first <= value <= self._last

    def first_free(self, taken: Iterable[str]) -> str | None:
        """The highest address of the range not in `taken`; None when all are."""
        used = set(taken)
        for value in range(self._last, self._first - 1, -1):
            address = str(ipaddress.IPv4Address(value))
            if address not in used:
                return address
        return None
