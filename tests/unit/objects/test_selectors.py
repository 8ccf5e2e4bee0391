from __future__ import annotations

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects.kinds import DEPLOYMENT, NAMESPACE, NODE, POD, Kind
from raftorch.objects.selectors import (
    FieldRequirement,
    LabelSelector,
    Requirement,
    check_field_selector,
    format_selector,
    matches,
    object_matches_fields,
    parse_field_selector,
    parse_label_selector,
    pod_matches_fields,
    selector_from_match_labels,
)


@pytest.mark.parametrize(("text", "requirements"), [
    ("", ()),
    ("   ", ()),
    ("app=web", (Requirement("app", "=", ("web",)),)),
    ("app==web", (Requirement("app", "=", ("web",)),)),
    ("app!=web", (Requirement("app", "!=", ("web",)),)),
    ("app=", (Requirement("app", "=", ("",)),)),
    ("app", (Requirement("app", "exists"),)),
    ("!app", (Requirement("app", "!exists"),)),
    ("env in (prod, dev)", (Requirement("env", "in", ("dev", "prod")),)),
    ("env notin (qa)", (Requirement("env", "notin", ("qa",)),)),
    ("env in (b,a,b)", (Requirement("env", "in", ("a", "b")),)),
    (" app = web , tier!=db ", (Requirement("app", "=", ("web",)), Requirement("tier", "!=", ("db",)))),
    ("example.com/app=web,!example.com/old",
     (Requirement("example.com/app", "=", ("web",)), Requirement("example.com/old", "!exists"))),
    ("a=b,c in (x,y),d,!e,f notin (z)",
     (Requirement("a", "=", ("b",)), Requirement("c", "in", ("x", "y")), Requirement("d", "exists"),
      Requirement("e", "!exists"), Requirement("f", "notin", ("z",)))),
    ("in=notin", (Requirement("in", "=", ("notin",)),)),
])
def test_parse_label_selector(text: str, requirements: tuple[Requirement, ...]) -> None:
    selector = parse_label_selector(text)
    assert selector == LabelSelector(requirements)
    assert parse_label_selector(format_selector(selector)) == selector


@pytest.mark.parametrize(("text", "message"), [
    ("a in x", 'expected "(" after "in"'),
    ("a in (x", 'expected "," or ")" in the values of "a", got the end'),
    ("a in (x y)", 'expected "," or ")" in the values of "a", got "y"'),
    ("a in ()", 'expected a label value, got ")"'),
    ("a notin (x,)", 'expected a label value, got ")"'),
    ("a=b=c", 'expected "," between requirements, got "="'),
    ("!a=b", 'expected "," between requirements, got "="'),
    ("a=b c", 'expected "," between requirements, got "c"'),
    ("a b", 'expected "=", "==", "!=", "in" or "notin" after "a", got "b"'),
    ("a,", "expected a label key, got the end"),
    (",a", 'expected a label key, got ","'),
    ("a,,b", 'expected a label key, got ","'),
    ("=b", 'expected a label key, got "="'),
    ("!", "expected a label key, got the end"),
    ("-a=b", "key \"-a\": the name must consist of A-Z, a-z, 0-9, '-', '_' and '.', "
             "starting and ending with a letter or digit"),
    ("a=-b", "value \"-b\": must be empty or consist of A-Z, a-z, 0-9, '-', '_' and '.', "
             "starting and ending with a letter or digit"),
    (f"a={'x' * 64}", f'value "{"x" * 64}": must be at most 63 characters, got 64'),
    ("Bad_Prefix/a", "key \"Bad_Prefix/a\": the prefix before '/' must be a DNS subdomain (like example.com)"),
])
def test_parse_label_selector_rejects(text: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_label_selector(text)
    assert str(exc.value) == f'label selector "{text}": {message}'


LABELS = {"app": "web", "env": "prod", "empty": ""}


@pytest.mark.parametrize(("text", "selected"), [
    ("", True),
    ("app=web", True), ("app==web", True), ("app=db", False), ("missing=web", False),
    ("app!=db", True), ("app!=web", False), ("missing!=web", True),
    ("env in (prod,dev)", True), ("env in (dev)", False), ("missing in (prod)", False),
    ("env notin (dev)", True), ("env notin (prod)", False), ("missing notin (prod)", True),
    ("app", True), ("missing", False), ("!missing", True), ("!app", False),
    ("empty=", True), ("empty", True), ("app=web,env=prod", True), ("app=web,env=dev", False),
])
def test_matches(text: str, selected: bool) -> None:
    assert matches(parse_label_selector(text), LABELS) is selected


def test_selector_from_match_labels_matches_exactly_those_labels() -> None:
    selector = selector_from_match_labels({"tier": "front", "app": "web"})
    assert format_selector(selector) == "app=web,tier=front"
    assert str(selector) == "app=web,tier=front"
    assert matches(selector, {"app": "web", "tier": "front", "extra": "x"})
    assert not matches(selector, {"app": "web"})
    assert selector_from_match_labels({}) == LabelSelector()
    assert matches(LabelSelector(), {})


def test_format_selector() -> None:
    selector = LabelSelector((Requirement("a", "!=", ("b",)), Requirement("c", "notin", ("x", "y")),
                              Requirement("d", "exists"), Requirement("e", "!exists")))
    assert format_selector(selector) == "a!=b,c notin (x,y),d,!e"


# -- field selectors ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "requirements"), [
    ("", []),
    ("metadata.name=web", [("metadata.name", "=", "web")]),
    ("metadata.name==web", [("metadata.name", "=", "web")]),
    ("metadata.namespace!=kube", [("metadata.namespace", "!=", "kube")]),
    ("spec.nodeName=n1", [("spec.nodeName", "=", "n1")]),
    ("spec.node_name=n1", [("spec.nodeName", "=", "n1")]),
    ("spec.nodeName=", [("spec.nodeName", "=", "")]),
    ("status.phase=Running, spec.nodeName!=n1",
     [("status.phase", "=", "Running"), ("spec.nodeName", "!=", "n1")]),
])
def test_parse_field_selector(text: str, requirements: list[FieldRequirement]) -> None:
    assert parse_field_selector(text) == requirements


SUPPORTED = "supported fields: metadata.name, metadata.namespace, spec.nodeName, status.phase"


@pytest.mark.parametrize(("text", "message"), [
    ("spec.replicas=1", f'field "spec.replicas" is not supported; {SUPPORTED}'),
    ("metadata.labels=x", f'field "metadata.labels" is not supported; {SUPPORTED}'),
    ("=x", f'field "" is not supported; {SUPPORTED}'),
    ("status.phase", '"status.phase" has no operator; expected "=", "==" or "!="'),
    ("status.phase=Running,", '"" has no operator; expected "=", "==" or "!="'),
])
def test_parse_field_selector_rejects(text: str, message: str) -> None:
    with pytest.raises(Invalid) as exc:
        parse_field_selector(text)
    assert str(exc.value) == f'field selector "{text}": {message}'


def _pod(name: str = "web-1", namespace: str = "default", node: str = "n1", phase: str = "Running") -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.spec.node_name, pod.status.phase = node, phase
    return pod


@pytest.mark.parametrize(("text", "selected"), [
    ("", True),
    ("metadata.name=web-1", True), ("metadata.name=web-2", False), ("metadata.name!=web-2", True),
    ("metadata.namespace=default", True), ("metadata.namespace!=default", False),
    ("spec.nodeName=n1", True), ("spec.nodeName=", False), ("spec.nodeName!=", True),
    ("status.phase=Running", True), ("status.phase!=Running", False),
    ("status.phase=Running,spec.nodeName=n2", False), ("status.phase=Running,spec.node_name=n1", True),
])
def test_pod_matches_fields(text: str, selected: bool) -> None:
    assert pod_matches_fields(_pod(), parse_field_selector(text)) is selected


def test_unscheduled_pods_have_an_empty_node_name() -> None:
    assert pod_matches_fields(_pod(node=""), parse_field_selector("spec.nodeName="))


@pytest.mark.parametrize(("kind", "msg", "text", "selected"), [
    (DEPLOYMENT, objects_pb2.Deployment(metadata=objects_pb2.ObjectMeta(name="web", namespace="prod")),
     "metadata.name=web,metadata.namespace=prod", True),
    (DEPLOYMENT, objects_pb2.Deployment(metadata=objects_pb2.ObjectMeta(name="web", namespace="prod")),
     "metadata.namespace=default", False),
    (NODE, objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="n1")), "metadata.name!=n1", False),
    (NODE, objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="n1")), "metadata.namespace=", True),
    (NAMESPACE, objects_pb2.Namespace(status=objects_pb2.NamespaceStatus(phase="Terminating")),
     "status.phase=Terminating", True),
    (POD, _pod(), "status.phase=Running", True),
])
def test_object_matches_fields(kind: Kind, msg: objects_pb2.Deployment, text: str, selected: bool) -> None:
    assert object_matches_fields(kind, msg, parse_field_selector(text)) is selected


@pytest.mark.parametrize(("kind", "text", "message"), [
    (DEPLOYMENT, "spec.nodeName=n1", 'field selector: field "spec.nodeName" is not supported for Deployment; '
                                     "supported fields: metadata.name, metadata.namespace"),
    (NODE, "status.phase=Ready", 'field selector: field "status.phase" is not supported for Node; '
                                 "supported fields: metadata.name, metadata.namespace"),
])
def test_fields_a_kind_lacks_are_invalid(kind: Kind, text: str, message: str) -> None:
    requirements = parse_field_selector(text)
    with pytest.raises(Invalid) as exc:
        check_field_selector(kind, requirements)
    assert str(exc.value) == message
    with pytest.raises(Invalid):
        object_matches_fields(kind, kind.message(), requirements)
