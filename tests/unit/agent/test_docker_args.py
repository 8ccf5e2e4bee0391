"""What the Docker runtime asks the engine for, from a container's securityContext."""

from __future__ import annotations

from typing import Any

from raftorch.agent.runtime.base import ContainerSpec, PortMapping
from raftorch.agent.runtime.docker import _create_args


class RecordingAPI:
    """Stands in for the SDK's low-level API: host config and networking as plain dicts."""

    @staticmethod
    def create_host_config(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    @staticmethod
    def create_endpoint_config(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    @staticmethod
    def create_networking_config(endpoints: dict[str, Any]) -> dict[str, Any]:
        return endpoints


def spec(**kwargs: object) -> ContainerSpec:
    return ContainerSpec("uid", "default", "web", "node-1", "c", "img", **kwargs)  # type: ignore[arg-type]


def engine_options(args: dict[str, Any]) -> dict[str, Any]:
    return {**args, **args["host_config"]}


def test_no_security_context_asks_for_nothing_more() -> None:
    args = engine_options(_create_args(spec(), RecordingAPI))
    assert not {"privileged", "user", "security_opt", "cap_add", "cap_drop"} & set(args)


def test_security_context_maps_to_engine_options() -> None:
    args = engine_options(_create_args(spec(privileged=True, run_as_user=0, no_new_privileges=True,
                                            cap_add=("NET_ADMIN",), cap_drop=("ALL",)), RecordingAPI))
    assert args["privileged"] is True and args["user"] == "0"
    assert args["security_opt"] == ["no-new-privileges"]
    assert (args["cap_add"], args["cap_drop"]) == (["NET_ADMIN"], ["ALL"])


def test_a_container_without_a_sandbox_holds_the_pods_network_name_address_and_ports() -> None:
    args = engine_options(_create_args(spec(network="raftorch-node-1", ip_address="10.88.0.254",
                                            ports=(PortMapping(8080, 30080),)), RecordingAPI))
    assert (args["hostname"], args["network_mode"]) == ("web", "raftorch-node-1")
    assert args["networking_config"] == {"raftorch-node-1": {"ipv4_address": "10.88.0.254"}}
    assert args["port_bindings"] == {"8080/tcp": 30080}
    assert args["labels"]["raftorch.io/pod-ip"] == "10.88.0.254"


def test_a_container_joining_a_sandbox_has_none_of_those() -> None:
    args = engine_options(_create_args(spec(network="raftorch-node-1", sandbox="sb1",
                                            ports=(PortMapping(8080, 30080),)), RecordingAPI))
    assert args["network_mode"] == "container:sb1"
    assert not {"hostname", "networking_config", "port_bindings"} & set(args)
    assert "raftorch.io/pod-ip" not in args["labels"]
