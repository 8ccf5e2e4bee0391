"""ensure_docker_network / remove_docker_network against the real Docker engine.

Skipped when Docker cannot be reached, failed then when CI is set. Networks get unique
names and a random /24 in 10.200.0.0-10.250.255.0; all are removed at the end."""

from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import docker.types
import pytest
from netns_cluster import unusable

from raftorch.errors import Conflict, Invalid
from raftorch.net import bridge_name, ensure_docker_network, remove_docker_network
from raftorch.net.bridge import MANAGED_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture
def client() -> Iterator[Any]:
    try:
        c = docker.from_env(timeout=30)
        c.ping()
    except docker.errors.DockerException as e:
        unusable(f"Docker is not reachable: {e}")
    names: list[str] = []
    c.raftorch_test_names = names
    try:
        yield c
    finally:
        for name in names:
            for network in c.networks.list(names=[name]):
                if network.name == name:
                    network.remove()
        c.close()


def _name(client: Any) -> str:
    name = f"rt-{secrets.token_hex(3)}"
    client.raftorch_test_names.append(name)
    return name


def _free_cidr(client: Any) -> str:
    taken = [ipaddress.IPv4Network(cfg["Subnet"]) for n in client.networks.list(greedy=True)
             for cfg in (n.attrs.get("IPAM") or {}).get("Config") or [] if "." in cfg.get("Subnet", "")]
    for _ in range(100):
        cidr = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(cidr.overlaps(t) for t in taken):
            return str(cidr)
    raise AssertionError("no free /24 found")


def test_ensure_is_idempotent_and_remove_cleans_up(client: Any) -> None:
    name, cidr = _name(client), _free_cidr(client)
    assert ensure_docker_network(client, name, cidr) == name
    network = client.networks.get(name)
    assert network.attrs["Driver"] == "bridge"
    assert network.attrs["IPAM"]["Config"] == [{"Subnet": cidr, "Gateway": cidr.replace(".0/24", ".1")}]
    options = network.attrs["Options"]
    assert options["com.docker.network.bridge.name"] == bridge_name(name)
    assert options["com.docker.network.bridge.enable_ip_masquerade"] == "true"
    assert network.attrs["Labels"][MANAGED_LABEL] == "true"
    assert len(bridge_name(name)) <= 15 and bridge_name(name).startswith("rt0-")

    assert ensure_docker_network(client, name, cidr) == name
    assert [n.id for n in client.networks.list(names=[name]) if n.name == name] == [network.id]
    if shutil.which("ip"):
        link = subprocess.run(["ip", "-br", "addr", "show", "dev", bridge_name(name)], capture_output=True,
                              text=True, check=False)
        if link.returncode == 0:  # Docker runs in this network namespace
            assert cidr.replace(".0/24", ".1/24") in link.stdout

    with pytest.raises(Conflict, match="exists on"):
        ensure_docker_network(client, name, _free_cidr(client))
    remove_docker_network(client, name)
    assert not [n for n in client.networks.list(names=[name]) if n.name == name]
    remove_docker_network(client, name)


def test_refuses_foreign_networks_and_bad_cidrs(client: Any) -> None:
    name = _name(client)
    client.networks.create(name, driver="bridge")
    with pytest.raises(Conflict, match="not created by raftorch"):
        remove_docker_network(client, name)
    for cidr in ("10.201.0.1/24", "10.201.0.0/31", "nonsense"):
        with pytest.raises(Invalid):
            ensure_docker_network(client, _name(client), cidr)


def test_an_empty_network_left_by_an_earlier_cluster_gives_way(client: Any) -> None:
    """A node of a new cluster gets a pod CIDR that an earlier cluster's pod network on this
    host still holds: the stale network (raftorch's, nothing attached) is removed; a foreign
    network on an overlapping subnet is never touched and the overlap is reported."""
    cidr = _free_cidr(client)
    stale = _name(client)
    assert ensure_docker_network(client, stale, cidr) == stale
    fresh = _name(client)
    assert ensure_docker_network(client, fresh, cidr) == fresh
    assert not [n for n in client.networks.list(names=[stale]) if n.name == stale]

    foreign_cidr = _free_cidr(client)
    foreign = _name(client)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=foreign_cidr)])
    client.networks.create(foreign, driver="bridge", ipam=ipam)
    with pytest.raises(Conflict, match="overlap"):
        ensure_docker_network(client, _name(client), foreign_cidr)
    assert [n for n in client.networks.list(names=[foreign]) if n.name == foreign]
