from __future__ import annotations

import importlib
import types

import pytest

import raftorch.objects

MODULES = ["defaults", "kinds", "meta", "quantity", "scheduling", "selectors", "validation", "workloads"]

EXPECTED = {
    # pods the agents run for themselves, and why a container waits
    "MIRROR_ANNOTATION", "CREATE_CONTAINER_CONFIG_ERROR", "is_mirror", "check_host_port_forward",
    # scheduling and workloads
    "NODE_SELECTOR_OPERATORS", "TAINT_EFFECTS", "TOLERATION_OPERATORS", "JOB_NAME_LABEL",
    "TEST_EVERY_SECONDS_ANNOTATION", "cron_schedule_error", "job_from_cron_job",
    # kinds
    "CONFIG_MAP", "CRON_JOB", "DAEMON_SET", "DEPLOYMENT", "ENDPOINTS", "EVENT", "JOB", "KINDS", "NAMESPACE", "NODE",
    "PERSISTENT_VOLUME_CLAIM", "POD", "REPLICA_SET", "SECRET", "SERVICE", "Kind",
    "kind_of", "kind_of_message", "parse_store_key", "store_key", "store_prefix", "unwrap", "wrap",
    # quantity
    "format_cpu", "format_memory", "parse_count", "parse_cpu", "parse_memory",
    # selectors
    "FieldRequirement", "LabelSelector", "Operator", "Requirement", "check_field_selector", "format_selector",
    "matches", "object_matches_fields", "parse_field_selector", "parse_label_selector", "pod_matches_fields",
    "selector_from_match_labels",
    # validation
    "MAX_OBJECT_BYTES", "check_object_size", "check_unknown_fields", "validate", "validate_metadata",
    "pod_references",
    # defaults
    "DEFAULT_NAMESPACE", "apply_defaults", "default_pod_spec",
    # meta, except `meta` itself: see test_the_meta_module_is_not_hidden
    "controller_of", "format_time", "get_condition", "int_or_percent", "owned_by", "parse_int_or_percent",
    "parse_time", "pod_is_ready", "pod_is_terminal", "set_condition",
}


def test_all_is_the_public_api() -> None:
    assert set(raftorch.objects.__all__) == EXPECTED
    assert len(raftorch.objects.__all__) == len(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_name_is_the_modules_own(name: str) -> None:
    exported = getattr(raftorch.objects, name)
    owners = [m for m in MODULES if name in importlib.import_module(f"raftorch.objects.{m}").__all__]
    assert len(owners) == 1, owners
    assert getattr(importlib.import_module(f"raftorch.objects.{owners[0]}"), name) is exported


def test_the_package_reexports_every_modules_api_but_meta() -> None:
    names = {n for m in MODULES for n in importlib.import_module(f"raftorch.objects.{m}").__all__}
    assert names - set(raftorch.objects.__all__) == {"meta"}


def test_the_meta_module_is_not_hidden() -> None:
    import raftorch.objects.meta as meta_module

    assert isinstance(meta_module, types.ModuleType)
    assert isinstance(raftorch.objects.meta, types.ModuleType)
    assert callable(meta_module.meta)


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_small(module: str) -> None:
    path = importlib.import_module(f"raftorch.objects.{module}").__file__
    assert path is not None
    with open(path, encoding="utf-8") as source:
        assert len(source.readlines()) < 400
