"""Name and label rules shared by validation and selectors, plus the collector of problems.

Each `*_error` function returns why a value is invalid, or None; callers put the field path in
front, so one rule serves `metadata.labels`, `spec.selector` and a `-l` selector alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from raftorch.errors import Invalid

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

MAX_LABEL_LENGTH = 63
MAX_SUBDOMAIN_LENGTH = 253
MAX_PORT_NAME_LENGTH = 15
MAX_ANNOTATIONS_BYTES = 256 * 1024
# A message listing a thousand bad env names helps nobody; the first few are enough.
MAX_PROBLEMS_SHOWN = 10
# Characters of a value an error message shows: errors never echo megabytes back.
MAX_QUOTED_CHARS = 100


def quote(value: str) -> str:
    """A value in an error message: double-quoted, control characters escaped, cut when long."""
    if len(value) <= MAX_QUOTED_CHARS:
        return json.dumps(value, ensure_ascii=False)
    return f"{json.dumps(value[:MAX_QUOTED_CHARS], ensure_ascii=False)}... ({len(value)} characters)"


def dns1123_label_error(value: str) -> str | None:
    if not value:
        return "required"
    if len(value) > MAX_LABEL_LENGTH or not _DNS1123_LABEL.fullmatch(value):
        return (f"must be a DNS label: at most {MAX_LABEL_LENGTH} characters of a-z, 0-9 and '-', "
                f"starting and ending with a letter or digit, got {quote(value)}")
    return None


def dns1123_subdomain_error(value: str) -> str | None:
    if not value:
        return "required"
    if len(value) > MAX_SUBDOMAIN_LENGTH or not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (f"must be a DNS subdomain: at most {MAX_SUBDOMAIN_LENGTH} characters of a-z, 0-9, '-' and '.', "
                f"each dot-separated part starting and ending with a letter or digit, got {quote(value)}")
    return None


def qualified_name_error(key: str) -> str | None:
    """Label and annotation keys: an optional DNS subdomain prefix and '/', then a name."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"key {quote(key)}: the prefix before '/' must not be empty"
        if dns1123_subdomain_error(prefix) is not None:
            return f"key {quote(key)}: the prefix before '/' must be a DNS subdomain (like example.com)"
    if not name:
        return f"key {quote(key)}: the name must not be empty"
    if len(name) > MAX_LABEL_LENGTH:
        return f"key {quote(key)}: the name must be at most {MAX_LABEL_LENGTH} characters, got {len(name)}"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (f"key {quote(key)}: the name must consist of A-Z, a-z, 0-9, '-', '_' and '.', "
                "starting and ending with a letter or digit")
    return None


def label_value_error(value: str) -> str | None:
    if not value:
        return None
    if len(value) > MAX_LABEL_LENGTH:
        return f"value {quote(value)}: must be at most {MAX_LABEL_LENGTH} characters, got {len(value)}"
    if not _QUALIFIED_NAME.fullmatch(value):
        return (f"value {quote(value)}: must be empty or consist of A-Z, a-z, 0-9, '-', '_' and '.', "
                "starting and ending with a letter or digit")
    return None


def port_name_error(value: str) -> str | None:
    """IANA service names, as Kubernetes uses for container port names."""
    if (len(value) > MAX_PORT_NAME_LENGTH or not _IANA_SVC_NAME.fullmatch(value) or not _HAS_LETTER.search(value)
            or value.startswith("-") or value.endswith("-") or "--" in value):
        return (f"must be a port name: at most {MAX_PORT_NAME_LENGTH} characters of a-z, 0-9 and '-', "
                f"with at least one letter and no leading, trailing or double '-', got {quote(value)}")
    return None


def env_name_error(value: str) -> str | None:
    if not value:
        return "required"
    if not _ENV_NAME.fullmatch(value):
        return f"must consist of letters, digits, '-', '_' and '.', not starting with a digit, got {quote(value)}"
    return None


def port_number_or_name_error(value: str) -> str | None:
    """A port given as text: a number 1-65535 or a port name."""
    if not value:
        return "required"
    if value.isascii() and value.isdigit():
        number = int(value)
        return None if 1 <= number <= 65535 else f"must be between 1 and 65535, got {number}"
    return port_name_error(value)


class Problems:
    """Collects every problem of an object so one round trip reports them all."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def check(self, path: str, error: str | None) -> None:
        if error is not None:
            self.add(path, error)

    def one_of(self, path: str, value: str, allowed: Iterable[str], empty_ok: bool = True) -> None:
        choices = tuple(allowed)
        if (value or not empty_ok) and value not in choices:
            self.add(path, f"must be one of {', '.join(choices)}, got {quote(value)}")

    def in_range(self, path: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            self.add(path, f"must be between {low} and {high}, got {value}")

    def not_negative(self, path: str, value: int) -> None:
        if value < 0:
            self.add(path, f"must not be negative, got {value}")

    def labels(self, path: str, labels: Mapping[str, str]) -> None:
        for key in sorted(labels):
            self.check(path, qualified_name_error(key))
            self.check(f"{path}[{key}]", label_value_error(labels[key]))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:MAX_PROBLEMS_SHOWN]
        more = len(self.items) - len(shown)
        if more:
            shown.append(f"and {more} more")
        raise Invalid("; ".join(shown))
