"""raftctl without a cluster: help, completion, bad input caught before any call, and the pure
helpers behind apply, rollout, drain and set image."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from raftorch.api.v1 import objects_pb2
from raftorch.cli.apply import desired_from
from raftorch.cli.common import one_target, parse_duration, ref, resolve_kind, targets
from raftorch.cli.create import container_name, deployment_manifest
from raftorch.cli.main import cli
from raftorch.cli.nodes import drain_plan
from raftorch.cli.rollout import RolloutFailed, rollout_state, split_image_args
from raftorch.errors import Invalid
from raftorch.objects import DEPLOYMENT, POD, REPLICA_SET, SERVICE, apply_defaults, validate


def run(tmp_path: Path, *args: str, input: str | None = None) -> Result:
    # Port 1 answers nothing: a test that reached the network would fail with "no master answered".
    base = ["--endpoints", "127.0.0.1:1", "--config", str(tmp_path / "none")]
    return CliRunner().invoke(cli, [*base, *args], input=input)


def one_error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "no master answered" not in lines[0]
    return lines[0]


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(all_commands(command, (*prefix, name)))
    return out


# Commands of other modules, registered here but not held to this module's conventions.
OTHER_COMMANDS = {"kv", "cluster", "drill", "up", "down", "port-forward"}


@pytest.mark.parametrize("path", [p for p in all_commands(cli) if p[0] not in OTHER_COMMANDS], ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_the_kubectl_verbs_are_registered_and_kv_and_cluster_kept() -> None:
    assert {"get", "describe", "create", "apply", "delete", "scale", "set", "rollout", "cordon", "uncordon", "drain",
            "logs", "expose", "completion"} | OTHER_COMMANDS <= set(cli.commands)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script(shell: str, tmp_path: Path) -> None:
    result = run(tmp_path, "completion", shell)
    assert result.exit_code == 0 and "_RAFTCTL_COMPLETE" in result.output


def test_apply_missing_file(tmp_path: Path) -> None:
    assert one_error(run(tmp_path, "apply", "-f", str(tmp_path / "nope.yaml"))) == (
        f'error: the path "{tmp_path / "nope.yaml"}" does not exist')


def test_apply_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   labels: oops\n")
    assert "invalid YAML at line 5" in one_error(run(tmp_path, "apply", "-f", str(path)))


def test_apply_unknown_kind_and_unknown_field(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("apiVersion: v1\nkind: Widget\nmetadata: {name: x}\n")
    assert 'unknown kind "Widget" (apiVersion v1); raftctl knows:' in one_error(run(tmp_path, "apply", "-f", str(path)))
    path.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labelz: {}}\n")
    assert one_error(run(tmp_path, "apply", "-f", str(path))) == f"error: {path}: metadata.labelz: unknown field"


def test_apply_names_the_bad_document_of_several(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n---\n"
                    "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n")
    line = one_error(run(tmp_path, "apply", "-f", str(path)))
    assert f"{path} (document 2)" in line and "metadata.name" in line


def test_apply_reads_stdin_and_a_directory(tmp_path: Path) -> None:
    assert "unknown field" in one_error(run(tmp_path, "apply", "-f", "-",
                                            input="apiVersion: v1\nkind: Pod\nmetadata: {nam: x}\n"))
    (tmp_path / "d").mkdir()
    assert "no objects found" in one_error(run(tmp_path, "apply", "-f", str(tmp_path / "d")))


def test_create_deployment_with_an_invalid_name_is_refused_locally(tmp_path: Path) -> None:
    assert "metadata.name" in one_error(run(tmp_path, "create", "deployment", "Bad_Name", "--image=x"))


def test_bad_arguments(tmp_path: Path) -> None:
    assert "a kind is required" in one_error(run(tmp_path, "get"))
    assert 'unknown kind "widgets"' in one_error(run(tmp_path, "get", "widgets"))
    assert "across all namespaces" in one_error(run(tmp_path, "get", "pods", "x", "-A"))
    assert "CONTAINER=IMAGE" in one_error(run(tmp_path, "set", "image", "deployment/web"))
    assert "not supported here" in one_error(run(tmp_path, "scale", "service/web", "--replicas=1"))


def test_unreachable_masters_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text("retry-for: 0.5\ntimeout: 0.5\n")
    result = CliRunner().invoke(cli, ["--endpoints", "127.0.0.1:1", "--config", str(config), "get", "pods"])
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no master answered"), result.output


# -- pure helpers ------------------------------------------------------------------------------


def test_kind_names_like_kubectl() -> None:
    assert resolve_kind("deployment.apps") == DEPLOYMENT
    assert resolve_kind("rs") == REPLICA_SET
    assert ref(DEPLOYMENT, "web") == "deployment.apps/web"
    assert ref(SERVICE, "web") == "service/web"
    assert targets(["deploy", "a", "b"]) == [(DEPLOYMENT, "a"), (DEPLOYMENT, "b")]
    assert targets(["deploy/a", "po/b"]) == [(DEPLOYMENT, "a"), (POD, "b")]
    assert one_target("deployment/web", (DEPLOYMENT,)) == (DEPLOYMENT, "web")
    assert one_target("deployment", (DEPLOYMENT,), "web") == (DEPLOYMENT, "web")
    with pytest.raises(Invalid):
        one_target("deployment", (DEPLOYMENT,))
    with pytest.raises(Invalid):
        targets(["deploy/a", "b"])


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("1h", 3600), ("500ms", 0.5), ("7", 7)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_container_names_from_images() -> None:
    assert container_name("nginx:1.25") == "nginx"
    assert container_name("registry:5000/team/Web_App:1.2") == "web-app"
    assert container_name("busybox@sha256:abc") == "busybox"


def test_create_deployment_is_what_kubectl_makes() -> None:
    d = deployment_manifest("web", "default", ("nginx:1.25",), 3, 80, ("sleep", "3600"))
    assert dict(d.metadata.labels) == dict(d.spec.selector.match_labels) == {"app": "web"}
    c = d.spec.template.spec.containers[0]
    assert (c.name, c.image, list(c.command), c.ports[0].container_port) == ("nginx", "nginx:1.25", ["sleep", "3600"],
                                                                             80)
    apply_defaults(d)
    validate(d)


def deployment(generation: int, observed: int, replicas: int, updated: int, total: int,
               available: int) -> objects_pb2.Deployment:
    d = objects_pb2.Deployment()
    d.metadata.name = "web"
    d.metadata.generation = generation
    d.spec.replicas = replicas
    st = d.status
    st.observed_generation, st.updated_replicas = observed, updated
    st.replicas, st.available_replicas = total, available
    return d


@pytest.mark.parametrize(("d", "line", "done"), [
    (deployment(2, 1, 3, 3, 3, 3), "Waiting for deployment spec update to be observed...", False),
    (deployment(2, 2, 3, 1, 4, 3),
     'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
    (deployment(2, 2, 3, 3, 4, 3),
     'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
    (deployment(2, 2, 3, 3, 3, 1),
     'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...', False),
    (deployment(2, 2, 3, 3, 3, 3), 'deployment "web" successfully rolled out', True),
])
def test_rollout_status_lines_like_kubectl(d: objects_pb2.Deployment, line: str, done: bool) -> None:
    assert rollout_state(d) == (line, done)


def test_rollout_status_fails_when_progress_stopped() -> None:
    d = deployment(2, 2, 3, 1, 3, 1)
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        rollout_state(d)


def test_drain_plan() -> None:
    def pod(name: str, owned: bool = False, mirror: bool = False, phase: str = "Running") -> objects_pb2.Pod:
        p = objects_pb2.Pod()
        p.metadata.name = name
        p.status.phase = phase
        if owned:
            p.metadata.owner_references.add(kind="ReplicaSet", name="rs", uid="u", controller=True)
        if mirror:
            p.metadata.annotations["raftorch.io/mirror"] = "true"
        return p

    pods = [pod("owned", owned=True), pod("lonely"), pod("mirror", mirror=True), pod("done", phase="Succeeded")]
    delete, blocking = drain_plan(pods, force=False)
    assert [p.metadata.name for p in delete] == ["owned", "done"]
    assert [p.metadata.name for p in blocking] == ["lonely"]
    delete, blocking = drain_plan(pods, force=True)
    assert [p.metadata.name for p in delete] == ["owned", "lonely", "done"] and not blocking


def test_set_image_arguments() -> None:
    assert split_image_args(["deployment/web", "web=nginx:2"]) == ("deployment/web", None, {"web": "nginx:2"})
    assert split_image_args(["deployment", "web", "*=nginx:2"]) == ("deployment", "web", {"*": "nginx:2"})
    with pytest.raises(Invalid):
        split_image_args(["deployment/web", "=nginx"])


def test_apply_keeps_what_the_masters_manage() -> None:
    stored = objects_pb2.Service()
    stored.metadata.name, stored.metadata.uid, stored.metadata.resource_version = "web", "u1", 7
    stored.spec.type, stored.spec.cluster_ip = "NodePort", "10.96.0.9"
    stored.spec.selector["app"] = "web"
    stored.spec.ports.add(port=80, target_port="80", node_port=31000, protocol="TCP")
    apply_defaults(stored)
    wanted = objects_pb2.Service()
    wanted.metadata.name = "web"
    wanted.spec.type = "NodePort"
    wanted.spec.selector["app"] = "web"
    wanted.spec.ports.add(port=80)
    assert desired_from(stored, wanted) == stored  # unchanged: nothing to write
    wanted.metadata.labels["tier"] = "front"
    new = desired_from(stored, wanted)
    assert isinstance(new, objects_pb2.Service)
    assert new.metadata.labels["tier"] == "front" and new.metadata.uid == "u1" and new.metadata.resource_version == 7
    assert new.spec.cluster_ip == "10.96.0.9" and new.spec.ports[0].node_port == 31000


def test_apply_keeps_a_pods_node() -> None:
    stored = objects_pb2.Pod()
    stored.metadata.name = "p"
    stored.spec.node_name = "node-a"
    stored.spec.containers.add(name="c", image="i")
    stored.status.phase = "Running"
    apply_defaults(stored)
    wanted = objects_pb2.Pod()
    wanted.metadata.name = "p"
    wanted.spec.containers.add(name="c", image="i")
    assert desired_from(stored, wanted) == stored
