from __future__ import annotations

from collections.abc import Callable

import pytest

from raftorch.errors import Invalid
from raftorch.objects.quantity import format_cpu, format_memory, parse_count, parse_cpu, parse_memory


@pytest.mark.parametrize(("text", "milli"), [
    ("500m", 500), ("2", 2000), ("0.5", 500), ("1.5", 1500), ("0.1", 100), (".25", 250), ("1m", 1),
    ("0", 0), ("0m", 0), ("1e3", 1_000_000), ("5e-1", 500), ("1e-3", 1), ("+1", 1000), ("2.", 2000),
    ("1500m", 1500), ("64", 64_000),
])
def test_parse_cpu(text: str, milli: int) -> None:
    assert parse_cpu(text) == milli


CPU_HINT = 'expected cores like "2" or "0.5", or millicores like "500m"'


@pytest.mark.parametrize(("text", "message"), [
    ("", f'invalid cpu quantity "": {CPU_HINT}'),
    ("abc", f'invalid cpu quantity "abc": {CPU_HINT}'),
    ("1Ki", f'invalid cpu quantity "1Ki": {CPU_HINT}'),
    ("1 m", f'invalid cpu quantity "1 m": {CPU_HINT}'),
    (" 1", f'invalid cpu quantity " 1": {CPU_HINT}'),
    ("1.2.3", f'invalid cpu quantity "1.2.3": {CPU_HINT}'),
    ("-1", 'invalid cpu quantity "-1": must not be negative'),
    ("-500m", 'invalid cpu quantity "-500m": must not be negative'),
    ("0.0005", 'invalid cpu quantity "0.0005": not a whole number of millicores (1m is the finest)'),
    ("1.5m", 'invalid cpu quantity "1.5m": not a whole number of millicores (1m is the finest)'),
    ("1e99", 'invalid cpu quantity "1e99": exponent out of range'),
    ("1e18", 'invalid cpu quantity "1e18": too large'),
])
def test_parse_cpu_rejects(text: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_cpu(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("1048576", 1048576), ("1e3", 1000), ("1E3", 1000), ("128Mi", 134217728), ("1Ki", 1024),
    ("1Gi", 2**30), ("2Ti", 2 * 2**40), ("1Pi", 2**50), ("1Ei", 2**60), ("1.5Ki", 1536), ("0.5Gi", 2**29),
    ("1k", 1000), ("1K", 1000), ("1M", 10**6), ("1G", 10**9), ("1T", 10**12), ("1P", 10**15), ("1E", 10**18),
    ("1.5G", 1_500_000_000),
])
def test_parse_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


MEMORY_HINT = 'expected bytes like "1048576", or with a suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E'


@pytest.mark.parametrize(("text", "message"), [
    ("", f'invalid memory quantity "": {MEMORY_HINT}'),
    ("lots", f'invalid memory quantity "lots": {MEMORY_HINT}'),
    ("128MB", f'invalid memory quantity "128MB": {MEMORY_HINT}'),
    ("128mi", f'invalid memory quantity "128mi": {MEMORY_HINT}'),
    ("1" * 65, f'invalid memory quantity "{"1" * 65}": {MEMORY_HINT}'),
    ("-1Mi", 'invalid memory quantity "-1Mi": must not be negative'),
    ("1.5", 'invalid memory quantity "1.5": not a whole number of bytes'),
    ("0.3Ki", 'invalid memory quantity "0.3Ki": not a whole number of bytes'),
    ("1e-1", 'invalid memory quantity "1e-1": not a whole number of bytes'),
    ("100m", 'invalid memory quantity "100m": "m" means thousandths of a byte; use "Mi" or "M" for megabytes'),
    ("8Ei", 'invalid memory quantity "8Ei": too large'),
])
def test_parse_memory_rejects(text: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_memory(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(("text", "count"), [("110", 110), ("0", 0), ("1k", 1000), ("1e2", 100)])
def test_parse_count(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize(("text", "message"), [
    ("1.5", 'invalid count quantity "1.5": not a whole number of items'),
    ("-3", 'invalid count quantity "-3": must not be negative'),
    ("10Ki", 'invalid count quantity "10Ki": expected a whole number like "110"'),
    ("many", 'invalid count quantity "many": expected a whole number like "110"'),
])
def test_parse_count_rejects(text: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_count(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(("milli", "text"), [(0, "0"), (1, "1m"), (500, "500m"), (1000, "1"), (1500, "1500m"),
                                             (2000, "2"), (64_000, "64")])
def test_format_cpu_is_canonical_and_parses_back(milli: int, text: str) -> None:
    assert format_cpu(milli) == text
    assert parse_cpu(text) == milli


@pytest.mark.parametrize(("size", "text"), [
    (0, "0"), (1, "1"), (1000, "1k"), (1024, "1Ki"), (1536, "1536"), (134217728, "128Mi"), (2**30, "1Gi"),
    (3 * 2**40, "3Ti"), (10**9, "1G"), (1_500_000_000, "1500M"), (1024 * 10**6, "1024M"), (2**60, "1Ei"),
    (12345, "12345"),
])
def test_format_memory_is_the_shortest_exact_spelling(size: int, text: str) -> None:
    assert format_memory(size) == text
    assert parse_memory(text) == size


@pytest.mark.parametrize(("formatter", "message"), [
    (format_cpu, "cpu: must not be negative, got -1m"),
    (format_memory, "memory: must not be negative, got -1"),
])
def test_formatting_a_negative_amount_is_invalid(formatter: Callable[[int], str], message: str) -> None:
    with pytest.raises(Invalid) as exc:
        formatter(-1)
    assert str(exc.value) == message
