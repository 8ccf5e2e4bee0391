"""raftctl create (deployments, namespaces, configmaps) and expose: objects from flags, as kubectl makes them."""

from __future__ import annotations

import os
import re

import click
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.cli.common import namespace_option, one_target, ref
from raftorch.cli.context import get_ctx, handle_errors
from raftorch.errors import Invalid
from raftorch.objects import DEPLOYMENT, MAX_OBJECT_BYTES, POD, REPLICA_SET, apply_defaults, validate

_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


def container_name(image: str) -> str:
    """kubectl's container name for an image: "registry:5000/team/web:1.2" is "web"."""
    base = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return _NOT_LABEL.sub("-", base.lower()).strip("-")[:63] or "app"


def deployment_manifest(name: str, namespace: str, images: tuple[str, ...], replicas: int, port: int,
                        command: tuple[str, ...]) -> objects_pb2.Deployment:
    labels = {"app": name}
    containers = []
    for image in images:
        c = objects_pb2.Container(name=container_name(image), image=image, command=list(command))
        if port:
            c.ports.add(container_port=port)
        containers.append(c)
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas,
            selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(metadata=objects_pb2.ObjectMeta(labels=labels),
                                                 spec=objects_pb2.PodSpec(containers=containers))))


@click.group()
def create() -> None:
    """Create a deployment or a namespace from flags (for manifests, use apply -f).

    \b
    Example:
      raftctl create deployment web --image=nginx:1.25 --replicas=3 --port=80
      raftctl create namespace staging
    """


@create.command(name="deployment")
@click.argument("name")
@click.argument("command", nargs=-1, metavar="[-- COMMAND [ARGS...]]")
@click.option("--image", "images", multiple=True, required=True,
              help="The container image; repeat for several containers.")
@click.option("--replicas", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="The port the container serves on.")
@namespace_option
@handle_errors
def create_deployment(name: str, command: tuple[str, ...], images: tuple[str, ...], replicas: int, port: int | None,
                      namespace: str) -> None:
    """Create a deployment NAME running IMAGE, labelled app=NAME.

    \b
    Example:
      raftctl create deployment web --image=nginx:1.25 --replicas=3 --port=80
      raftctl create deployment sleeper --image=busybox -- sleep 3600
    """
    if command and len(images) > 1:
        raise Invalid("a command can only be given with a single --image")
    deployment = deployment_manifest(name, namespace, images, replicas, port or 0, command)
    _check(deployment)
    get_ctx().client().objects.create(deployment)
    click.echo(f"{ref(DEPLOYMENT, name)} created")


@create.command(name="namespace")
@click.argument("name")
@handle_errors
def create_namespace(name: str) -> None:
    """Create a namespace.

    \b
    Example:
      raftctl create namespace staging
    """
    ns = objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name=name))
    _check(ns)
    get_ctx().client().objects.create(ns)
    click.echo(f"namespace/{name} created")


@create.command(name="configmap")
@click.argument("name")
@click.option("--from-literal", "literals", multiple=True, metavar="KEY=VALUE", help="A key and its value; repeatable.")
@click.option("--from-file", "files", multiple=True, metavar="[KEY=]PATH",
              help="A file's content, under its base name or KEY; repeatable.")
@namespace_option
@handle_errors
def create_configmap(name: str, literals: tuple[str, ...], files: tuple[str, ...], namespace: str) -> None:
    """Create a ConfigMap from literal values and files.

    \b
    Example:
      raftctl create configmap web-config --from-literal=mode=fast --from-file=default.conf
    """
    cm = objects_pb2.ConfigMap(metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace))
    for key, value in config_entries(literals, files).items():
        if isinstance(value, bytes):
            cm.binary_data[key] = value
        else:
            cm.data[key] = value
    _check(cm)
    get_ctx().client().objects.create(cm)
    click.echo(f"configmap/{name} created")


@create.group(name="secret")
def create_secret() -> None:
    """Create a Secret (kept encrypted by the masters).

    \b
    Example:
      raftctl create secret generic db-pass --from-literal=password=s3cr3t
    """


@create_secret.command(name="generic")
@click.argument("name")
@click.option("--from-literal", "literals", multiple=True, metavar="KEY=VALUE", help="A key and its value; repeatable.")
@click.option("--from-file", "files", multiple=True, metavar="[KEY=]PATH",
              help="A file's content, under its base name or KEY; repeatable.")
@click.option("--type", "type_", default="Opaque", show_default=True, help="The secret's type.")
@namespace_option
@handle_errors
def create_secret_generic(name: str, literals: tuple[str, ...], files: tuple[str, ...], type_: str,
                          namespace: str) -> None:
    """Create a generic Secret from literal values and files.

    \b
    Example:
      raftctl create secret generic db-pass --from-literal=password=s3cr3t --from-file=tls.key
    """
    secret = objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name=name, namespace=namespace), type=type_)
    for key, value in config_entries(literals, files).items():
        secret.data[key] = value.encode() if isinstance(value, str) else value
    _check(secret)
    get_ctx().client().objects.create(secret)
    click.echo(f"secret/{name} created")


def config_entries(literals: tuple[str, ...], files: tuple[str, ...]) -> dict[str, str | bytes]:
    """Keys and values from `--from-literal` and `--from-file`; a file that is not UTF-8 stays bytes."""
    out: dict[str, str | bytes] = {}

    def put(key: str, value: str | bytes, flag: str) -> None:
        if key in out:
            raise Invalid(f"{flag}: the key {key!r} is given twice")
        out[key] = value

    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise Invalid(f"--from-literal: expected KEY=VALUE, got {literal!r}")
        put(key, value, "--from-literal")
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = os.path.basename(spec), spec
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_OBJECT_BYTES + 1)
        except OSError as exc:
            raise Invalid(f"--from-file: cannot read {path}: {exc.strerror}") from None
        if len(data) > MAX_OBJECT_BYTES:
            raise Invalid(f"--from-file: {path} is larger than the limit of {MAX_OBJECT_BYTES} bytes")
        try:
            put(key, data.decode(), "--from-file")
        except UnicodeDecodeError:
            put(key, data, "--from-file")
    return out


def _check(msg: Message) -> None:
    """Validate here first: the masters would say the same, only later."""
    candidate = type(msg)()
    candidate.CopyFrom(msg)
    apply_defaults(candidate)
    validate(candidate)


@click.command()
@click.argument("target", metavar="KIND NAME | KIND/NAME")
@click.argument("name", required=False)
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="The service's port (default: the first container port).")
@click.option("--target-port", default=None, help="The container's port, a number or a name (default: --port).")
@click.option("--type", "type_", type=click.Choice(["ClusterIP", "NodePort"]), default="ClusterIP", show_default=True)
@click.option("--node-port", type=click.IntRange(30000, 32767), default=None,
              help="With --type=NodePort: this port on every node (default: one is allocated).")
@click.option("--protocol", type=click.Choice(["TCP", "UDP"]), default="TCP", show_default=True)
@click.option("--name", "service_name", default=None, help="The service's name (default: the object's name).")
@namespace_option
@handle_errors
def expose(target: str, name: str | None, port: int | None, target_port: str | None, type_: str,
           node_port: int | None, protocol: str, service_name: str | None, namespace: str) -> None:
    """Make a service for a deployment (or replica set, or pod): it selects the same pods.

    \b
    Example:
      raftctl expose deployment web --port=80 --target-port=8080
      raftctl expose deployment/web --type=NodePort --port=80 --node-port=30080
    """
    kind, object_name = one_target(target, (DEPLOYMENT, REPLICA_SET, POD), name)
    if node_port and type_ != "NodePort":
        raise Invalid("--node-port needs --type=NodePort")
    client = get_ctx().client()
    obj = client.objects.get(kind.plural, object_name, namespace)
    if isinstance(obj, objects_pb2.Pod):
        selector, template = dict(obj.metadata.labels), obj.spec
    elif isinstance(obj, objects_pb2.Deployment | objects_pb2.ReplicaSet):
        selector, template = dict(obj.spec.selector.match_labels), obj.spec.template.spec
    else:  # pragma: no cover - one_target allows only the kinds above
        raise Invalid(f"cannot expose a {kind.name}")
    if not selector:
        raise Invalid(f"{ref(kind, object_name)} has no labels to select its pods by")
    if port is None:
        found = next((p for c in template.containers for p in c.ports), None)
        if found is None:
            raise Invalid(f"{ref(kind, object_name)} declares no container port: give --port")
        port = found.container_port
    svc = objects_pb2.Service(
        metadata=objects_pb2.ObjectMeta(name=service_name or object_name, namespace=namespace,
                                        labels=dict(obj.metadata.labels)),
        spec=objects_pb2.ServiceSpec(type=type_, selector=selector, ports=[objects_pb2.ServicePort(
            protocol=protocol, port=port, target_port=target_port or "", node_port=node_port or 0)]))
    _check(svc)
    client.objects.create(svc)
    click.echo(f"service/{svc.metadata.name} exposed")
