"""Configuration layers (raftorch.config), MasterConfig, and the KV input limits
(raftorch.master.validation): every rejection names the offending key or field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from raftorch import config as cfg
from raftorch.api.v1 import kv_pb2
from raftorch.errors import Invalid, PermissionDenied
from raftorch.master import validation
from raftorch.master.config import MasterConfig, check_addr


@dataclass(frozen=True)
class Sample:
    name: str
    port: int = 80
    ratio: float = 1.0
    debug: bool = False
    data_dir: Path = Path("/var/lib/sample")
    labels: dict[str, str] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    nickname: str | None = None


def _build(*layers: dict[str, Any]) -> Sample:
    return cfg.build(Sample, [(f"layer{i}", values) for i, values in enumerate(layers)])


def _build_error(*layers: dict[str, Any]) -> str:
    with pytest.raises(Invalid) as info:
        _build(*layers)
    return info.value.message


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _master(**overrides: Any) -> MasterConfig:
    values: dict[str, Any] = {"name": "m1", "client_addr": "10.0.0.1:2379", "peer_addr": "10.0.0.1:2380",
                              "peers": {"m2": "10.0.0.2:2380", "m3": "10.0.0.3:2380"}}
    values.update(overrides)
    return MasterConfig(**values)


def _invalid_master(**overrides: Any) -> str:
    with pytest.raises(Invalid) as info:
        _master(**overrides).validate()
    return info.value.message


# -- layers ---------------------------------------------------------------------------------


def test_defaults_fill_unset_fields() -> None:
    assert _build({"name": "x"}) == Sample(name="x")


def test_later_layers_win() -> None:
    built = _build({"name": "file", "port": 1}, {"name": "env"}, {"name": "flag", "debug": True})
    assert (built.name, built.port, built.debug) == ("flag", 1, True)


def test_none_in_a_later_layer_does_not_erase_earlier_value() -> None:
    assert _build({"name": "x", "port": 7}, {"port": None}).port == 7


def test_dashed_and_underscored_keys_are_the_same_field() -> None:
    assert _build({"name": "x", "data-dir": "/a"}).data_dir == Path("/a")
    assert _build({"name": "x", "data_dir": "/b"}).data_dir == Path("/b")


def test_unknown_key_is_rejected_naming_key_and_layer() -> None:
    message = _build_error({"name": "x"}, {"prot": 80})
    assert "'prot'" in message
    assert message.startswith("layer1:")
    assert "port" in message  # the known keys are listed
    assert "data-dir" in message


def test_unknown_key_is_rejected_even_with_none_value() -> None:
    assert "'nope'" in _build_error({"name": "x", "nope": None})


def test_missing_required_field_is_reported() -> None:
    assert "name" in _build_error({"port": 1})


# -- coercion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), ("true", True), ("YES", True), ("on", True), ("1", True),
    ("false", False), ("No", False), ("off", False), ("0", False),
])
def test_bool_coercion(raw: object, expected: bool) -> None:
    assert _build({"name": "x", "debug": raw}).debug is expected


@pytest.mark.parametrize("raw", ["maybe", "", 1, 0, 2.0, ["true"]])
def test_bad_bool_names_key_and_value(raw: object) -> None:
    message = _build_error({"name": "x"}, {"debug": raw})
    assert "layer1: key 'debug'" in message
    assert "expected true or false" in message
    assert repr(raw) in message


@pytest.mark.parametrize(("raw", "expected"), [("8080", 8080), (8080, 8080), (" 9 ", 9)])
def test_int_coercion(raw: object, expected: int) -> None:
    assert _build({"name": "x", "port": raw}).port == expected


@pytest.mark.parametrize("raw", ["eighty", "80.5", "", True, [80], {"a": 1}])
def test_bad_int_names_key_and_value(raw: object) -> None:
    message = _build_error({"name": "x", "port": raw})
    assert "key 'port'" in message
    assert "expected a number" in message


def test_float_coercion() -> None:
    assert _build({"name": "x", "ratio": "2.5"}).ratio == 2.5
    assert _build({"name": "x", "ratio": 3}).ratio == 3.0
    assert "key 'ratio'" in _build_error({"name": "x", "ratio": "fast"})
    assert "key 'ratio'" in _build_error({"name": "x", "ratio": False})


def test_str_coercion_accepts_scalars_and_rejects_collections() -> None:
    assert _build({"name": 42}).name == "42"
    assert "key 'name': expected a string, got dict" in _build_error({"name": {"a": 1}})
    assert "key 'name': expected a string, got list" in _build_error({"name": ["a"]})


def test_optional_field() -> None:
    assert _build({"name": "x", "nickname": "nick"}).nickname == "nick"
    assert _build({"name": "x"}).nickname is None


def test_dict_from_pairs_string_and_from_mapping() -> None:
    assert _build({"name": "x", "labels": "a=1, b = 2,,"}).labels == {"a": "1", "b": "2"}
    assert _build({"name": "x", "labels": {"a": 1, 2: "b"}}).labels == {"a": "1", "2": "b"}


@pytest.mark.parametrize("raw", ["novalue", "a=", "=b", "a=1,broken"])
def test_bad_pairs_name_key_and_item(raw: str) -> None:
    message = _build_error({"name": "x", "labels": raw})
    assert "key 'labels'" in message
    assert "expected NAME=VALUE" in message


def test_dict_from_list_is_rejected() -> None:
    assert "key 'labels': expected a mapping" in _build_error({"name": "x", "labels": ["a=1"]})


def test_list_from_comma_string_and_from_list() -> None:
    assert _build({"name": "x", "hosts": "a, b,,c"}).hosts == ["a", "b", "c"]
    assert _build({"name": "x", "hosts": ["a", 1]}).hosts == ["a", "1"]
    assert "key 'hosts': expected a list" in _build_error({"name": "x", "hosts": {"a": 1}})


def test_parse_pairs() -> None:
    assert cfg.parse_pairs("", "w") == {}
    assert cfg.parse_pairs("m2=h:1,m3=h:2", "w") == {"m2": "h:1", "m3": "h:2"}
    with pytest.raises(Invalid, match=r"^where: expected NAME=VALUE, got 'bad'$"):
        cfg.parse_pairs("bad", "where")


# -- files and environment -----------------------------------------------------------------------


def test_read_file_returns_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: m1\npeers:\n  m2: h:2380\nwrite-timeout: 2.5\n")
    assert cfg.read_file(path) == {"name": "m1", "peers": {"m2": "h:2380"}, "write-timeout": 2.5}


def test_empty_file_is_empty_mapping(tmp_path: Path) -> None:
    assert cfg.read_file(_write(tmp_path, "# nothing here\n")) == {}


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: m1\npeers: [a, b\n", name="broken.yaml")
    with pytest.raises(Invalid) as info:
        cfg.read_file(path)
    assert str(path) in info.value.message
    assert "not valid YAML" in info.value.message
    assert "line" in info.value.message


def test_yaml_that_is_not_a_mapping_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(Invalid, match="expected a mapping of keys, got list") as info:
        cfg.read_file(path)
    assert str(path) in info.value.message


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(Invalid, match="cannot read config file") as info:
        cfg.read_file(path)
    assert str(path) in info.value.message


def test_from_env_reads_prefixed_fields_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "RATIO", "DEBUG", "LABELS", "HOSTS", "NICKNAME"):
        monkeypatch.delenv(f"SAMPLE_{name}", raising=False)
    monkeypatch.setenv("SAMPLE_NAME", "env-name")
    monkeypatch.setenv("SAMPLE_DATA_DIR", "/env")
    monkeypatch.setenv("SAMPLE_UNRELATED", "ignored")
    monkeypatch.setenv("SAMPLE_name", "lower-case is not the variable")
    assert cfg.from_env(Sample, "SAMPLE") == {"name": "env-name", "data_dir": "/env"}


def test_master_config_from_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "name: from-file\nclient-addr: 1.1.1.1:1\npeers:\n  m2: h2:2380\nwrite-timeout: 9\n")
    for name in ("NAME", "CLIENT_ADDR", "PEER_ADDR", "PEERS", "DATA_DIR", "SECRET_FILE", "LOG_LEVEL",
                 "WRITE_TIMEOUT"):
        monkeypatch.delenv(f"RAFTORCH_MASTER_{name}", raising=False)
    monkeypatch.setenv("RAFTORCH_MASTER_CLIENT_ADDR", "2.2.2.2:2")
    monkeypatch.setenv("RAFTORCH_MASTER_PEERS", "m2=e2:2380,m3=e3:2380")
    config = cfg.build(MasterConfig, [
        ("config file", cfg.read_file(path)),
        ("environment", cfg.from_env(MasterConfig, "RAFTORCH_MASTER")),
        ("flags", {"name": "from-flag", "log-level": None}),
    ])
    assert config.name == "from-flag"
    assert config.client_addr == "2.2.2.2:2"
    assert config.peers == {"m2": "e2:2380", "m3": "e3:2380"}
    assert config.write_timeout == 9.0
    assert config.log_level == "info"
    config.validate()


def test_master_config_typo_in_file_names_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: m1\nclient_adr: h:1\n")
    with pytest.raises(Invalid, match="'client_adr'"):
        cfg.build(MasterConfig, [(f"config file {path}", cfg.read_file(path))])


# -- MasterConfig ---------------------------------------------------------------------------------


def test_valid_master_config_passes() -> None:
    _master().validate()
    _master(peers={}).validate()


def test_master_name_is_required() -> None:
    assert _invalid_master(name="") == "name: required"


@pytest.mark.parametrize("addr", ["nohost", ":2379", "host:", "host:port", "host:0", "host:65536", "host:-1"])
def test_bad_addresses_name_the_field(addr: str) -> None:
    assert _invalid_master(client_addr=addr).startswith("client-addr:")
    assert _invalid_master(peer_addr=addr).startswith("peer-addr:")
    assert _invalid_master(peers={"m2": addr}).startswith("peers.m2:")


def test_check_addr_splits_host_and_port() -> None:
    assert check_addr("example.com:65535", "x") == ("example.com", 65535)
    assert check_addr("[::1]:2379", "x") == ("[::1]", 2379)


def test_peers_must_not_list_this_master() -> None:
    assert "m1" in _invalid_master(peers={"m1": "10.0.0.9:2380"})


def test_peers_must_not_contain_own_peer_address() -> None:
    assert "10.0.0.1:2380" in _invalid_master(peers={"m2": "10.0.0.1:2380"})


def test_read_secret_strips_whitespace(tmp_path: Path) -> None:
    secret = _write(tmp_path, "  0123456789abcdef-long-secret \n", name="secret")
    assert _master(secret_file=secret).read_secret() == "0123456789abcdef-long-secret"


def test_short_secret_is_rejected(tmp_path: Path) -> None:
    secret = _write(tmp_path, "short\n", name="secret")
    with pytest.raises(Invalid, match=r"^secret-file: .*fewer than 16 characters"):
        _master(secret_file=secret).read_secret()


def test_unreadable_secret_names_field_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(Invalid, match=r"^secret-file: cannot read") as info:
        _master(secret_file=missing).read_secret()
    assert str(missing) in info.value.message


# -- KV input limits (raftorch.master.validation) --------------------------------------------------


def _rejected(check: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(Invalid) as info:
        check(*args, **kwargs)
    return info.value.message


def test_empty_key_is_rejected_naming_field() -> None:
    assert _rejected(validation.check_key, "") == "key: must not be empty"
    assert _rejected(validation.check_put, kv_pb2.PutRequest(key="")) == "put.key: must not be empty"


def test_key_size_limit_counts_bytes() -> None:
    validation.check_key("k" * validation.MAX_KEY_BYTES)
    message = _rejected(validation.check_key, "k" * (validation.MAX_KEY_BYTES + 1), "put.key")
    assert message.startswith("put.key: 1025 bytes")
    assert "1024" in message
    multibyte = "é" * (validation.MAX_KEY_BYTES // 2 + 1)   # 513 characters, 1026 bytes
    assert _rejected(validation.check_key, multibyte).startswith("key: 1026 bytes")


def test_value_size_limit() -> None:
    validation.check_put(kv_pb2.PutRequest(key="k", value=b"x" * validation.MAX_VALUE_BYTES))
    message = _rejected(validation.check_put,
                        kv_pb2.PutRequest(key="k", value=b"x" * (validation.MAX_VALUE_BYTES + 1)))
    assert message.startswith("put.value: 1048577 bytes")
    assert str(1024 * 1024) in message


def test_negative_lease_is_rejected() -> None:
    assert _rejected(validation.check_put, kv_pb2.PutRequest(key="k", lease=-1)).startswith("put.lease:")


def test_range_and_delete_allow_empty_key_only_with_prefix() -> None:
    validation.check_range(kv_pb2.RangeRequest(key="", prefix=True))
    # Deleting every key would take the masters' own keys too: that is refused (see test_edge_limits).
    with pytest.raises(PermissionDenied):
        validation.check_delete(kv_pb2.DeleteRangeRequest(key="", prefix=True))
    assert _rejected(validation.check_range, kv_pb2.RangeRequest(key="")) == "range.key: must not be empty"
    assert _rejected(validation.check_delete, kv_pb2.DeleteRangeRequest(key="")) == "delete.key: must not be empty"


def test_range_rejects_negative_limit_and_revision() -> None:
    assert _rejected(validation.check_range, kv_pb2.RangeRequest(key="k", limit=-1)).startswith("range.limit:")
    assert _rejected(validation.check_range, kv_pb2.RangeRequest(key="k", revision=-1)).startswith(
        "range.revision:")


def _txn(compare: list[kv_pb2.Compare] | None = None, success: list[kv_pb2.RequestOp] | None = None,
         failure: list[kv_pb2.RequestOp] | None = None) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(compare=compare or [], success=success or [], failure=failure or [])


def test_txn_checks_name_the_operation() -> None:
    ok = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="k"))
    big = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="k", value=b"x" * (validation.MAX_VALUE_BYTES + 1)))
    assert _rejected(validation.check_txn, _txn(success=[ok, big])).startswith("txn.success[1].value:")
    assert _rejected(validation.check_txn, _txn(compare=[kv_pb2.Compare(key="")])) == (
        "txn.compare[0].key: must not be empty")
    assert _rejected(validation.check_txn, _txn(failure=[kv_pb2.RequestOp()])) == "txn.failure[0]: empty operation"
    bad_range = kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key="k", limit=-1))
    assert _rejected(validation.check_txn, _txn(failure=[ok, bad_range])).startswith("txn.failure[1].limit:")
    bad_delete = kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=""))
    assert _rejected(validation.check_txn, _txn(success=[bad_delete])).startswith("txn.success[0].key:")


def test_txn_operation_count_limit() -> None:
    op = kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key="k"))
    validation.check_txn(_txn(success=[op] * validation.MAX_TXN_OPS))
    assert "more than 128" in _rejected(validation.check_txn, _txn(success=[op] * 64, failure=[op] * 65))


def test_ttl_limits() -> None:
    validation.check_ttl(1)
    validation.check_ttl(365 * 24 * 3600)
    assert _rejected(validation.check_ttl, 0).startswith("ttl:")
    assert _rejected(validation.check_ttl, 365 * 24 * 3600 + 1).startswith("ttl:")


def test_master_quota_bytes_defaults_to_512_mib_and_is_bounded() -> None:
    assert _master().quota_bytes == 512 * 1024 * 1024
    assert _invalid_master(quota_bytes=1000).startswith("quota-bytes:")
    _master(quota_bytes=8 * 1024 * 1024).validate()


def test_unsafe_no_fsync_is_off_unless_asked_for() -> None:
    assert cfg.build(MasterConfig, [("defaults", {"name": "m1"})]).unsafe_no_fsync is False
    on = cfg.build(MasterConfig, [("config file", {"name": "m1", "unsafe-no-fsync": "true"})])
    assert on.unsafe_no_fsync is True


def test_controllers_run_in_a_process_by_default_or_in_a_thread() -> None:
    assert _master().controllers == "process"
    _master(controllers="thread").validate()
    assert "controllers: expected thread or process, got 'fork'" in _invalid_master(controllers="fork")
