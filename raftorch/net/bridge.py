"""The pod network of a node running Docker: one bridge network on the node's pod CIDR.

Pods (containers) attached to it get addresses from the node's pod CIDR, so `routes` can
send other nodes' pod traffic here. Docker masquerades the network's egress to the outside
world; the networks are labelled so that `remove_docker_network` never removes a network
raftorch did not create.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import docker.errors
import docker.types

from raftorch.dockerlib import explain, translated
from raftorch.errors import Conflict, Invalid, Unavailable

__all__ = ["MANAGED_LABEL", "POD_CIDR_LABEL", "bridge_name", "ensure_docker_network", "remove_docker_network"]

MANAGED_LABEL = "raftorch.io/managed"
POD_CIDR_LABEL = "raftorch.io/pod-cidr"


def bridge_name(network_name: str) -> str:
    """`rt0-<8 hex>`: stable for a network name and within the 15 bytes Linux allows."""
    return "rt0-" + hashlib.sha256(network_name.encode()).hexdigest()[:8]


def ensure_docker_network(client: Any, name: str, pod_cidr: str) -> str:
    """Creates, unless it exists, the bridge network `name` on `pod_cidr` (gateway: its
    first host address) and returns its name.

    Raises Invalid for a CIDR with fewer than two host addresses, Conflict when a network
    of that name exists on another subnet (it may have containers; it is not replaced) or
    the CIDR overlaps another network, Unavailable when Docker cannot be reached."""
    try:
        network = ipaddress.IPv4Network(pod_cidr, strict=True)
    except ValueError as e:
        raise Invalid(f"pod CIDR {pod_cidr!r}: {e}") from e
    if network.prefixlen > 30:
        raise Invalid(f"pod CIDR {pod_cidr}: too small for a gateway and pods")
    subnet, gateway = str(network), str(next(network.hosts()))
    with translated(f"docker network {name}", sdk_failure=Unavailable):
        existing = _find(client, name)
        if existing is None:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
            try:
                client.networks.create(
                    name, driver="bridge", ipam=ipam, check_duplicate=True,
                    labels={MANAGED_LABEL: "true", POD_CIDR_LABEL: subnet},
                    options={
                        "com.docker.network.bridge.name": bridge_name(name),
                        "com.docker.network.bridge.enable_ip_masquerade": "true",
                        "com.docker.network.bridge.enable_icc": "true",
                    },
                )
                return name
            except docker.errors.APIError as e:
                # Another agent (or a retry) may have created it meanwhile.
                existing = _find(client, name)
                if existing is None:
                    if not _remove_stale_overlapping(client, network):
                        raise Conflict(f"docker network {name} on {subnet}: {explain(e)}") from e
                    return ensure_docker_network(client, name, pod_cidr)
        subnets = [c.get("Subnet") for c in (existing.attrs.get("IPAM") or {}).get("Config") or []]
        if subnets != [subnet]:
            raise Conflict(f"docker network {name} exists on {', '.join(map(str, subnets)) or 'no subnet'}, "
                           f"not on {subnet}")
        return name


def remove_docker_network(client: Any, name: str) -> None:
    """Removes the network `name` if it exists; refuses (Conflict) to remove one raftorch did
    not create, or one that still has containers attached."""
    with translated(f"docker network {name}", sdk_failure=Unavailable):
        existing = _find(client, name)
        if existing is None:
            return
        if (existing.attrs.get("Labels") or {}).get(MANAGED_LABEL) != "true":
            raise Conflict(f"docker network {name} was not created by raftorch; not removing it")
        try:
            existing.remove()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            raise Conflict(f"docker network {name}: cannot remove: {explain(e)}") from e


def _remove_stale_overlapping(client: Any, network: ipaddress.IPv4Network) -> bool:
    """Removes raftorch's networks on subnets overlapping `network` that have no container
    attached: pod networks left by an earlier cluster on this host, which would otherwise keep
    a new node's pod CIDR from being used. Returns whether one was removed."""
    removed = False
    for summary in client.networks.list(filters={"label": f"{MANAGED_LABEL}=true"}):
        try:
            candidate = client.networks.get(summary.id)
            subnets = [ipaddress.IPv4Network(c["Subnet"], strict=False)
                       for c in (candidate.attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
            if candidate.attrs.get("Containers") or not any(s.overlaps(network) for s in subnets):
                continue
            candidate.remove()
            removed = True
        except (docker.errors.NotFound, ValueError):
            continue
        except docker.errors.APIError:
            continue  # in use after all: the caller reports the overlap
    return removed


def _find(client: Any, name: str) -> Any:
    # The daemon's name filter also matches partial names.
    for network in client.networks.list(names=[name]):
        if network.name == name:
            return client.networks.get(network.id)
    return None


