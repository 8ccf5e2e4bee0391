"""What the kubectl-like verbs share: kind names, KIND/NAME arguments, namespaces, durations,
and read-modify-write of one object."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from google.protobuf.message import Message

from raftorch.client import Client
from raftorch.errors import Conflict, Invalid
from raftorch.objects import KINDS, Kind, kind_of
from raftorch.objects.meta import meta

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Message)

DEFAULT_NAMESPACE = "default"
# Kubernetes' API groups, as kubectl names objects: "deployment.apps/web", "service/web".
_GROUPS = {"Deployment": "apps", "ReplicaSet": "apps", "DaemonSet": "apps", "Job": "batch", "CronJob": "batch"}
_UPDATE_ATTEMPTS = 5
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def resolve_kind(text: str) -> Kind:
    """A kind as kubectl users write it: "deploy", "deployments", "deployment.apps", "Pod"."""
    base = text
    for suffix in (".v1.apps", ".apps", ".v1"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return kind_of(base)


def type_name(kind: Kind) -> str:
    group = _GROUPS.get(kind.name)
    return f"{kind.name.lower()}.{group}" if group else kind.name.lower()


def plural_name(kind: Kind) -> str:
    group = _GROUPS.get(kind.name)
    return f"{kind.plural}.{group}" if group else kind.plural


def ref(kind: Kind, name: str) -> str:
    """kubectl's name of an object: "deployment.apps/web"."""
    return f"{type_name(kind)}/{name}"


def kind_words() -> list[str]:
    return sorted({w for k in KINDS for w in (k.name.lower(), k.plural, *k.short_names)})


def complete_kind(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [w for w in [*kind_words(), "all"] if w.startswith(incomplete.lower())]


def targets(args: Sequence[str]) -> list[tuple[Kind, str]]:
    """`KIND NAME...` or `KIND/NAME...` as (kind, name) pairs; a lone KIND gives no names."""
    if not args:
        raise Invalid("a kind is required, e.g. deployment/web or deployment web")
    if "/" in args[0]:
        out = []
        for arg in args:
            kind_text, slash, name = arg.partition("/")
            if not slash or not name or not kind_text:
                raise Invalid(f'"{arg}": expected KIND/NAME; do not mix KIND/NAME with KIND NAME')
            out.append((resolve_kind(kind_text), name))
        return out
    kind = resolve_kind(args[0])
    return [(kind, name) for name in args[1:]]


def one_target(arg: str, allowed: Sequence[Kind], name: str | None = None) -> tuple[Kind, str]:
    """`deployment/web`, or `deployment web` split over two arguments."""
    kind_text, slash, object_name = arg.partition("/")
    if slash:
        if name is not None:
            raise Invalid(f'"{arg}" already names the object; drop "{name}"')
    else:
        object_name = name or ""
    kind = resolve_kind(kind_text)
    if kind not in allowed:
        raise Invalid(f"{plural_name(kind)} are not supported here; use {', '.join(k.plural for k in allowed)}")
    if not object_name:
        raise Invalid(f"a name is required: {kind.name.lower()}/NAME")
    return kind, object_name


def namespace_option(fn: F) -> F:
    return click.option("-n", "--namespace", default=DEFAULT_NAMESPACE, show_default=True,
                        help="The namespace of the objects.")(fn)


def namespace_was_given() -> bool:
    source = click.get_current_context().get_parameter_source("namespace")
    return source is not None and source != click.core.ParameterSource.DEFAULT


def parse_duration(text: str) -> float:
    """Seconds in "30s", "2m", "1h", "500ms" or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise Invalid(f'invalid duration "{text}": expected a number with a unit, like 30s, 2m or 1h')
    return float(match.group("number")) * _UNITS[match.group("unit")]


class Duration(click.ParamType[float]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except Invalid as err:
            self.fail(err.message, param, ctx)


def modify(client: Client, kind: Kind, namespace: str, name: str, mutate: Callable[[Any], bool]
           ) -> tuple[Message, bool]:
    """Read, change and write one object, again from a fresh read when someone else wrote in
    between. `mutate` changes the object in place and says whether it changed anything; an
    unchanged object is not written. Returns the object and whether it was written."""
    for attempt in range(_UPDATE_ATTEMPTS):
        current = client.objects.get(kind.plural, name, namespace if kind.namespaced else "")
        if not mutate(current):
            return current, False
        try:
            return client.objects.update(current), True
        except Conflict:
            if attempt == _UPDATE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def typed(msg: Message, cls: type[M]) -> M:
    if not isinstance(msg, cls):
        raise Invalid(f"expected a {cls.DESCRIPTOR.name}, got a {msg.DESCRIPTOR.name}")
    return msg


def name_of(msg: Message) -> str:
    return meta(msg).name
