"""render_nat_rules and jump_rules: the iptables-restore input for a node's services."""

from __future__ import annotations

import random
import re
import shlex

import pytest

from raftorch.errors import Invalid
from raftorch.net import DEFAULT_PREFIX, EndpointView, ServiceView, jump_rules, render_nat_rules
from raftorch.net.rules import chain_names, validate_prefix

BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def _view(name: str, *ips: str, port: int = 80, target: int = 8080, node_port: int = 0, protocol: str = "TCP",
          cluster_ip: str = "10.96.0.10", port_name: str = "http") -> ServiceView:
    return ServiceView("shop", name, port_name, protocol, port, cluster_ip, node_port,
                       tuple(EndpointView(ip, target) for ip in ips))


def _tables(text: str) -> dict[str, list[str]]:
    """table -> its lines, checking the overall shape on the way."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            assert current is None
            current = tables.setdefault(line[1:], [])
        elif line == "COMMIT":
            assert current is not None
            current = None
        else:
            assert current is not None, line
            current.append(line)
    assert current is None
    return tables


def _rules(text: str, table: str, chain_prefix: str) -> list[list[str]]:
    return [shlex.split(line)[2:] for line in _tables(text)[table]
            if line.startswith("-A ") and line.split()[1].startswith(chain_prefix)]


def _arg(tokens: list[str], flag: str) -> str | None:
    return tokens[tokens.index(flag) + 1] if flag in tokens else None


def _req(tokens: list[str], flag: str) -> str:
    value = _arg(tokens, flag)
    assert value is not None, (flag, tokens)
    return value


def _svc_chain(text: str, cluster_ip: str) -> str:
    for tokens in _rules(text, "nat", "RAFTORCH-SERVICES"):
        if _arg(tokens, "-d") == f"{cluster_ip}/32":
            return tokens[-1]
    raise AssertionError(f"no rule for {cluster_ip}")


def test_only_our_chains_are_declared_and_filled() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2", node_port=30080), _view("empty", cluster_ip="10.96.0.11")],
                            ["192.0.2.10"])
    tables = _tables(text)
    assert set(tables) == {"nat", "filter"}
    for lines in tables.values():
        for line in lines:
            chain = line[1:].split()[0] if line.startswith(":") else line.split()[1]
            assert chain.startswith("RAFTORCH-"), line
            assert line.startswith((":", "-A ")), line
            if line.startswith(":"):
                assert line.endswith(" - [0:0]")
                assert len(chain) <= 28
    for fixed in ("RAFTORCH-SERVICES", "RAFTORCH-NODEPORTS", "RAFTORCH-POSTROUTING", "RAFTORCH-MARK-MASQ"):
        assert f":{fixed} - [0:0]" in tables["nat"]
    assert tables["filter"][:2] == [":RAFTORCH-REJECT - [0:0]", ":RAFTORCH-FORWARD - [0:0]"]
    assert text.endswith("COMMIT\n")


def test_cascade_picks_evenly_one_third_one_half_then_the_last() -> None:
    text = render_nat_rules([_view("web", "10.1.0.4", "10.1.0.2", "10.1.0.3")], [])
    svc = _svc_chain(text, "10.96.0.10")
    assert re.fullmatch(r"RAFTORCH-SVC-[A-Z2-7]{15}", svc)
    picks = _rules(text, "nat", svc)
    assert [_arg(t, "--probability") for t in picks] == ["0.3333333333", "0.5000000000", None]
    assert all("statistic" in t for t in picks[:2]) and "statistic" not in picks[2]
    dnats = []
    for t in picks:
        sep = t[-1]
        assert re.fullmatch(r"RAFTORCH-SEP-[A-Z2-7]{15}", sep)
        body = _rules(text, "nat", sep)
        assert body[0][:2] == ["-s", _req(body[1], "--to-destination").split(":")[0] + "/32"]
        assert body[0][-2:] == ["-j", "RAFTORCH-MARK-MASQ"]
        dnats.append(_arg(body[1], "--to-destination"))
    assert dnats == ["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"]


def test_one_endpoint_is_unconditional() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2")], [])
    (pick,) = _rules(text, "nat", _svc_chain(text, "10.96.0.10"))
    assert "statistic" not in pick


def test_cluster_ip_rule() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2", port=8443)], [])
    services = _rules(text, "nat", "RAFTORCH-SERVICES")
    tokens = services[0]
    assert tokens[:8] == ["-d", "10.96.0.10/32", "-p", "tcp", "-m", "tcp", "--dport", "8443"]
    assert _arg(tokens, "--comment") == "shop/web:http"
    assert _req(tokens, "-j").startswith("RAFTORCH-SVC-")


def test_nodeport_marks_for_masquerade_then_jumps_to_the_service() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2", "10.1.0.3", node_port=30080)], [])
    svc = _svc_chain(text, "10.96.0.10")
    nodeports = _rules(text, "nat", "RAFTORCH-NODEPORTS")
    assert [(_arg(t, "--dport"), _arg(t, "-j")) for t in nodeports] == [("30080", "RAFTORCH-MARK-MASQ"),
                                                                        ("30080", svc)]
    # All local addresses but loopback lead to the NodePorts, as the last SERVICES rule.
    assert _rules(text, "nat", "RAFTORCH-SERVICES")[-1] == [
        "-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-j", "RAFTORCH-NODEPORTS"]
    assert _rules(text, "nat", "RAFTORCH-MARK-MASQ") == [["-j", "MARK", "--or-mark", "0x4000"]]
    assert _rules(text, "nat", "RAFTORCH-POSTROUTING") == [
        ["-m", "mark", "!", "--mark", "0x4000/0x4000", "-j", "RETURN"],
        ["-j", "MARK", "--xor-mark", "0x4000"],
        ["-m", "comment", "--comment", "raftorch service traffic requiring SNAT", "-j", "MASQUERADE"],
    ]


def test_nodeports_on_given_node_ips_only() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2", node_port=30080)], ["192.0.2.11", "192.0.2.10", "192.0.2.10"])
    jumps = [t for t in _rules(text, "nat", "RAFTORCH-SERVICES") if t[-1] == "RAFTORCH-NODEPORTS"]
    assert jumps == [["-d", "192.0.2.10/32", "-j", "RAFTORCH-NODEPORTS"],
                     ["-d", "192.0.2.11/32", "-j", "RAFTORCH-NODEPORTS"]]
    with pytest.raises(Invalid):
        render_nat_rules([], ["eth0"])


def test_no_endpoints_rejects_cluster_ip_and_nodeport_and_has_no_nat_chain() -> None:
    text = render_nat_rules([_view("empty", node_port=30081), _view("dns", port=53, protocol="UDP",
                                                                     cluster_ip="10.96.0.53", port_name="dns")],
                            ["192.0.2.10"])
    assert not any(line.startswith((":RAFTORCH-SVC-", ":RAFTORCH-SEP-")) for line in _tables(text)["nat"])
    assert not any("30081" in line or "10.96.0.53" in line for line in _tables(text)["nat"])
    rejects = _rules(text, "filter", "RAFTORCH-REJECT")
    assert rejects == [
        ["-d", "10.96.0.53/32", "-p", "udp", "-m", "udp", "--dport", "53", "-m", "comment", "--comment",
         "shop/dns:dns has no endpoints", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
        ["-d", "10.96.0.10/32", "-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "comment", "--comment",
         "shop/empty:http has no endpoints", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-d", "192.0.2.10/32", "-p", "tcp", "-m", "tcp", "--dport", "30081", "-m", "comment", "--comment",
         "shop/empty:http nodePort has no endpoints", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ]


def test_nodeport_reject_on_all_local_addresses_without_node_ips() -> None:
    text = render_nat_rules([_view("empty", node_port=30081, cluster_ip="")], [])
    assert _rules(text, "filter", "RAFTORCH-REJECT") == [
        ["-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-p", "tcp", "-m", "tcp",
         "--dport", "30081", "-m", "comment", "--comment", "shop/empty:http nodePort has no endpoints",
         "-j", "REJECT", "--reject-with", "tcp-reset"]]


def test_udp_service() -> None:
    text = render_nat_rules([_view("dns", "10.1.0.2", port=53, target=5353, protocol="UDP", port_name="dns")], [])
    (rule,) = [t for t in _rules(text, "nat", "RAFTORCH-SERVICES") if "--dport" in t]
    assert rule[2:7] == ["-p", "udp", "-m", "udp", "--dport"]
    (pick,) = _rules(text, "nat", rule[-1])
    dnat = _rules(text, "nat", pick[-1])[1]
    assert dnat[:4] == ["-p", "udp", "-m", "udp"]
    assert _arg(dnat, "--to-destination") == "10.1.0.2:5353"


def test_named_target_ports_arrive_resolved_per_endpoint() -> None:
    view = ServiceView("shop", "web", "http", "TCP", 80, "10.96.0.10", 0,
                       (EndpointView("10.1.0.2", 8080), EndpointView("10.1.0.3", 8081)))
    text = render_nat_rules([view], [])
    seps = [t[-1] for t in _rules(text, "nat", _svc_chain(text, "10.96.0.10"))]
    assert [_arg(_rules(text, "nat", s)[1], "--to-destination") for s in seps] == ["10.1.0.2:8080", "10.1.0.3:8081"]


def test_headless_service_without_node_port_gets_nothing() -> None:
    text = render_nat_rules([_view("headless", "10.1.0.2", cluster_ip="")], [])
    assert "SVC-" not in text and "10.1.0.2" not in text


def test_deterministic_whatever_the_input_order() -> None:
    views = [_view(f"svc{i}", *(f"10.1.{i}.{j}" for j in range(1, i % 4 + 1)), cluster_ip=f"10.96.1.{i}",
                   node_port=30000 + i if i % 2 else 0) for i in range(12)]
    expected = render_nat_rules(views, ["192.0.2.10", "192.0.2.11"])
    for seed in range(5):
        shuffled = [ServiceView(v.namespace, v.name, v.port_name, v.protocol, v.port, v.cluster_ip, v.node_port,
                                tuple(random.Random(seed).sample(v.endpoints, len(v.endpoints)))) for v in views]
        random.Random(seed).shuffle(shuffled)
        assert render_nat_rules(shuffled, ["192.0.2.11", "192.0.2.10"]) == expected
    # Chain names depend on the service and endpoint only, so they survive other changes.
    fewer = render_nat_rules(views[:3], [])
    assert _svc_chain(fewer, "10.96.1.2") == _svc_chain(expected, "10.96.1.2")


def test_duplicates_are_rendered_once() -> None:
    view = ServiceView("shop", "web", "http", "TCP", 80, "10.96.0.10", 0,
                       (EndpointView("10.1.0.2", 8080), EndpointView("10.1.0.2", 8080, "node-a")))
    text = render_nat_rules([view, view], [])
    declared = [line for line in _tables(text)["nat"] if line.startswith(":")]
    assert len(declared) == len(set(declared)) == 6
    assert len(_rules(text, "nat", "RAFTORCH-SERVICES")) == 2


def test_cluster_cidr_masquerades_outside_traffic_and_accepts_forwarding() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2")], [], cluster_cidr="10.1.0.0/16")
    services = _rules(text, "nat", "RAFTORCH-SERVICES")
    assert services[0][:3] == ["!", "-s", "10.1.0.0/16"] and services[0][-1] == "RAFTORCH-MARK-MASQ"
    assert services[1][-1].startswith("RAFTORCH-SVC-")
    assert _rules(text, "filter", "RAFTORCH-FORWARD")[-2:] == [["-s", "10.1.0.0/16", "-j", "ACCEPT"],
                                                                ["-d", "10.1.0.0/16", "-j", "ACCEPT"]]


def test_forward_chain_accepts_marked_and_established() -> None:
    text = render_nat_rules([], [])
    assert _rules(text, "filter", "RAFTORCH-FORWARD") == [
        ["-m", "mark", "--mark", "0x4000/0x4000", "-j", "ACCEPT"],
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]]
    assert _rules(text, "nat", "RAFTORCH-SERVICES") == [
        ["-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-j", "RAFTORCH-NODEPORTS"]]


def test_comments_are_sanitised() -> None:
    view = ServiceView("shop", 'we"b;$(x)', "http", "TCP", 80, "10.96.0.10", 0, (EndpointView("10.1.0.2", 80),))
    text = render_nat_rules([view], [])
    assert '"' not in "".join(re.findall(r'--comment "([^"]*)"', text)).replace("\\", "")
    assert "$(" not in text and ";" not in text


def test_other_prefix_and_chain_length() -> None:
    text = render_nat_rules([_view("web", "10.1.0.2", node_port=30080)], [], prefix="RT_TEST_1234567")
    for line in text.splitlines():
        if line.startswith(":"):
            name = line[1:].split()[0]
            assert name.startswith("RT_TEST_1234567-") and len(name) <= 28
    assert "RAFTORCH" not in text
    for bad in ("", "RAFTORCH-X", "1ABC", "A" * 16, "rt ch"):
        with pytest.raises(Invalid):
            validate_prefix(bad)


def test_jump_rules_lead_from_builtins_into_our_chains() -> None:
    jumps = jump_rules()
    c = chain_names(DEFAULT_PREFIX)
    assert [(t, chain, args[-1]) for t, chain, args in jumps] == [
        ("nat", "PREROUTING", c.services), ("nat", "OUTPUT", c.services), ("nat", "POSTROUTING", c.postrouting),
        ("filter", "INPUT", c.reject), ("filter", "FORWARD", c.reject), ("filter", "OUTPUT", c.reject),
        ("filter", "FORWARD", c.forward)]
    for _, chain, args in jumps:
        assert chain in BUILTIN and args[-2] == "-j"
    assert all(args[:4] == ["-m", "conntrack", "--ctstate", "NEW"] for t, _, args in jumps if args[-1] == c.reject)
    assert jump_rules("OTHER")[0][2][-1] == "OTHER-SERVICES"


def test_hand_made_views_with_unusable_parts_are_trimmed() -> None:
    views = [
        ServiceView("shop", "sctp", "x", "SCTP", 80, "10.96.0.20", 0, (EndpointView("10.1.0.2", 80),)),
        ServiceView("shop", "web", "http", "TCP", 80, "not-an-ip", 70000,
                    (EndpointView("fd00::1", 80), EndpointView("10.1.0.2", 0), EndpointView("10.1.0.3", 80))),
    ]
    text = render_nat_rules(views, [])
    assert "10.96.0.20" not in text and "sctp" not in text.lower()
    assert "fd00" not in text and "10.1.0.2" not in text and "70000" not in text and "not-an-ip" not in text
    assert "10.1.0.3" not in text  # neither a cluster IP nor a node port is left to reach it by
