"""Label selectors (kubectl's `-l`) and field selectors (`--field-selector`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects._checks import label_value_error, qualified_name_error, quote
from raftorch.objects.kinds import NAMESPACE, POD, Kind

__all__ = [
    "FieldRequirement",
    "LabelSelector",
    "Operator",
    "Requirement",
    "check_field_selector",
    "format_selector",
    "matches",
    "object_matches_fields",
    "parse_field_selector",
    "parse_label_selector",
    "pod_matches_fields",
    "selector_from_match_labels",
]

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    # One value for = and !=, a sorted set for in and notin, none for exists and !exists.
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == "=" or self.operator == "in":
            return present and value in self.values
        if self.operator == "!=" or self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """All requirements must hold; no requirements select everything."""

    requirements: tuple[Requirement, ...] = ()

    def __str__(self) -> str:
        return format_selector(self)


_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|!|\(|\)|,)|(?P<word>[^\s,()=!]+))")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            break  # only trailing whitespace is left
        tokens.append(match.group("op") or match.group("word"))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, message: str) -> Invalid:
        return Invalid(f"label selector {quote(self.text)}: {message}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def word(self, what: str) -> str:
        token = self.take()
        if token is None or not _is_word(token):
            raise self.fail(f"expected {what}, got {_describe(token)}")
        return token

    def key(self) -> str:
        key = self.word("a label key")
        error = qualified_name_error(key)
        if error is not None:
            raise self.fail(error)
        return key

    def value(self, token: str) -> str:
        error = label_value_error(token)
        if error is not None:
            raise self.fail(error)
        return token

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.key(), "!exists")
        key = self.key()
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            following = self.peek()
            # "a=" selects an empty value, as in Kubernetes.
            value = "" if following is None or following == "," else self.value(self.word("a label value"))
            return Requirement(key, "!=" if op == "!=" else "=", (value,))
        if op in ("in", "notin"):
            if self.take() != "(":
                raise self.fail(f'expected "(" after "{op}"')
            values = {self.value(self.word("a label value"))}
            while (token := self.take()) == ",":
                values.add(self.value(self.word("a label value")))
            if token != ")":
                raise self.fail(f'expected "," or ")" in the values of "{key}", got {_describe(token)}')
            operator: Operator = "in" if op == "in" else "notin"
            return Requirement(key, operator, tuple(sorted(values)))
        raise self.fail(f'expected "=", "==", "!=", "in" or "notin" after "{key}", got {_describe(op)}')

    def parse(self) -> LabelSelector:
        if not self.tokens:
            return LabelSelector()
        requirements = [self.requirement()]
        while (token := self.take()) is not None:
            if token != ",":
                raise self.fail(f'expected "," between requirements, got {_describe(token)}')
            requirements.append(self.requirement())
        return LabelSelector(tuple(requirements))


def _is_word(token: str) -> bool:
    return token not in ("==", "!=", "=", "!", "(", ")", ",")


def _describe(token: str | None) -> str:
    return "the end" if token is None else f'"{token}"'


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`; an empty text selects everything."""
    return _Parser(text).parse()


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in selector.requirements)


def selector_from_match_labels(match_labels: Mapping[str, str]) -> LabelSelector:
    return LabelSelector(tuple(Requirement(key, "=", (match_labels[key],)) for key in sorted(match_labels)))


def format_selector(selector: LabelSelector) -> str:
    """The text form, which parse_label_selector reads back to an equal selector."""
    parts: list[str] = []
    for r in selector.requirements:
        if r.operator in ("=", "!="):
            parts.append(f"{r.key}{r.operator}{r.values[0]}")
        elif r.operator in ("in", "notin"):
            parts.append(f"{r.key} {r.operator} ({','.join(r.values)})")
        elif r.operator == "exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)


# -- field selectors -------------------------------------------------------------

FieldRequirement = tuple[str, str, str]
"""(path, operator, value): the path in its camelCase spelling, the operator "=" or "!="."""

_FIELD_PATHS = {
    "metadata.name": "metadata.name",
    "metadata.namespace": "metadata.namespace",
    "spec.nodeName": "spec.nodeName",
    "spec.node_name": "spec.nodeName",
    "status.phase": "status.phase",
}
_FIELD_TERM = re.compile(r"\s*(?P<path>[^=!]*?)\s*(?P<op>!=|==|=)(?P<value>.*)", re.DOTALL)
_ALL_KINDS_FIELDS = ("metadata.name", "metadata.namespace")
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    POD.name: (*_ALL_KINDS_FIELDS, "spec.nodeName", "status.phase"),
    NAMESPACE.name: (*_ALL_KINDS_FIELDS, "status.phase"),
}


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """Parse `status.phase=Running,spec.nodeName!=n1`; an empty text selects everything."""
    if not text.strip():
        return []
    requirements: list[FieldRequirement] = []
    for term in text.split(","):
        match = _FIELD_TERM.fullmatch(term)
        if match is None:
            raise Invalid(f'field selector {quote(text)}: {quote(term.strip())} has no operator; '
                          'expected "=", "==" or "!="')
        path, op, value = match.group("path", "op", "value")
        canonical = _FIELD_PATHS.get(path)
        if canonical is None:
            supported = ", ".join(sorted(set(_FIELD_PATHS.values())))
            raise Invalid(f"field selector {quote(text)}: field {quote(path)} is not supported; "
                          f"supported fields: {supported}")
        requirements.append((canonical, "!=" if op == "!=" else "=", value.strip()))
    return requirements


def _field_values(msg: Message) -> dict[str, str]:
    metadata = getattr(msg, "metadata", None)
    values: dict[str, str] = {}
    if isinstance(metadata, objects_pb2.ObjectMeta):
        values = {"metadata.name": metadata.name, "metadata.namespace": metadata.namespace}
    if isinstance(msg, objects_pb2.Pod):
        values["spec.nodeName"] = msg.spec.node_name
        values["status.phase"] = msg.status.phase
    elif isinstance(msg, objects_pb2.Namespace):
        values["status.phase"] = msg.status.phase
    return values


def _matches(values: Mapping[str, str], requirements: Iterable[FieldRequirement]) -> bool:
    return all((values.get(path, "") == value) == (op == "=") for path, op, value in requirements)


def check_field_selector(kind: Kind, requirements: Sequence[FieldRequirement]) -> None:
    """Reject fields the kind does not have, before any object is looked at."""
    supported = _KIND_FIELDS.get(kind.name, _ALL_KINDS_FIELDS)
    for path, _, _ in requirements:
        if path not in supported:
            raise Invalid(f'field selector: field "{path}" is not supported for {kind.name}; '
                          f"supported fields: {', '.join(supported)}")


def pod_matches_fields(pod: objects_pb2.Pod, requirements: Sequence[FieldRequirement]) -> bool:
    return object_matches_fields(POD, pod, requirements)


def object_matches_fields(kind: Kind, msg: Message, requirements: Sequence[FieldRequirement]) -> bool:
    check_field_selector(kind, requirements)
    return _matches(_field_values(msg), requirements)
