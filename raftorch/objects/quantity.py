"""Resource quantities as Kubernetes writes them: "500m" CPU, "128Mi" memory, "110" pods.

Parsing is exact (decimal, never float), so "0.1" CPU is 100 millicores and not 99.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

from raftorch.errors import Invalid
from raftorch.objects._checks import quote

__all__ = [
    "format_cpu",
    "format_memory",
    "parse_count",
    "parse_cpu",
    "parse_memory",
]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
# "K" is not Kubernetes' spelling of kilo, but it is a common one and means nothing else.
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_CANONICAL_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|K|M|G|T|P|E))?"
)

MAX_QUANTITY_LENGTH = 64
MAX_EXPONENT = 30
MAX_VALUE = 2**63 - 1
# Enough digits that no input of MAX_QUANTITY_LENGTH characters is ever rounded.
_EXACT = Context(prec=200)


def _parse(what: str, text: str, allowed_suffixes: frozenset[str], hint: str) -> tuple[Decimal, str]:
    """The value of `text` in base units, and the suffix it used."""
    match = _QUANTITY.fullmatch(text) if len(text) <= MAX_QUANTITY_LENGTH else None
    suffix = (match.group("suffix") or "") if match else ""
    if match is None or (suffix and suffix not in allowed_suffixes):
        raise Invalid(f'invalid {what} quantity {quote(text)}: expected {hint}')
    number = Decimal(match.group("number"))
    if number < 0:
        raise Invalid(f'invalid {what} quantity {quote(text)}: must not be negative')
    exponent = match.group("exponent")
    try:
        if exponent is not None:
            power = int(exponent[1:])
            if abs(power) > MAX_EXPONENT:
                raise Invalid(f'invalid {what} quantity {quote(text)}: exponent out of range')
            number = _EXACT.multiply(number, _EXACT.power(Decimal(10), power))
        elif suffix == "m":
            number = _EXACT.divide(number, Decimal(1000))
        elif suffix:
            number = _EXACT.multiply(number, Decimal(_BINARY.get(suffix) or _DECIMAL[suffix]))
    except InvalidOperation as exc:  # pragma: no cover - the length and exponent limits keep this away
        raise Invalid(f'invalid {what} quantity {quote(text)}: out of range') from exc
    return number, suffix


def _to_int(what: str, text: str, value: Decimal, unit: str) -> int:
    if value != value.to_integral_value():
        raise Invalid(f'invalid {what} quantity {quote(text)}: not a whole number of {unit}')
    if value > MAX_VALUE:
        raise Invalid(f'invalid {what} quantity {quote(text)}: too large')
    return int(value)


_CPU_SUFFIXES = frozenset({"m"})
_MEMORY_SUFFIXES = frozenset(_BINARY) | frozenset(_DECIMAL) | {"m"}
_COUNT_SUFFIXES = frozenset(_DECIMAL)


def parse_cpu(text: str) -> int:
    """CPU in millicores: "500m" is 500, "2" is 2000, "0.5" is 500."""
    cores, _ = _parse("cpu", text, _CPU_SUFFIXES, 'cores like "2" or "0.5", or millicores like "500m"')
    return _to_int("cpu", text, _EXACT.multiply(cores, Decimal(1000)), "millicores (1m is the finest)")


def parse_memory(text: str) -> int:
    """Memory in bytes: "128Mi", "1Gi", "1G", "1e3" or a plain number of bytes."""
    value, suffix = _parse("memory", text, _MEMORY_SUFFIXES,
                           'bytes like "1048576", or with a suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E')
    if suffix == "m":
        # Kubernetes reads "m" as thousandths, so "100m" of memory is a tenth of a byte: surely a typo.
        raise Invalid(f'invalid memory quantity {quote(text)}: "m" means thousandths of a byte; '
                      'use "Mi" or "M" for megabytes')
    return _to_int("memory", text, value, "bytes")


def parse_count(text: str) -> int:
    """A count such as a node's "pods" capacity: "110", "1k", "1e3"."""
    value, _ = _parse("count", text, _COUNT_SUFFIXES, 'a whole number like "110"')
    return _to_int("count", text, value, "items")


def format_cpu(milli: int) -> str:
    """Whole cores as "2", anything else in millicores as "1500m"."""
    if milli < 0:
        raise Invalid(f"cpu: must not be negative, got {milli}m")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(size: int) -> str:
    """The shortest exact spelling, preferring binary suffixes: 134217728 is "128Mi"."""
    if size < 0:
        raise Invalid(f"memory: must not be negative, got {size}")
    best = str(size)
    if size == 0:
        return best
    for table in (_BINARY, _CANONICAL_DECIMAL):
        for suffix, factor in table.items():
            if size % factor == 0:
                candidate = f"{size // factor}{suffix}"
                if len(candidate) < len(best):
                    best = candidate
    return best
