"""raftctl's kubectl verbs against three real masters and hollow (fake-runtime) nodes.

One cluster serves the whole module; each test makes its own objects, with names of its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from raftorch.agent.hollow import HollowFleet
from raftorch.api.v1 import objects_pb2
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.errors import NotFound
from raftorch.local.masters import LocalMasters
from tests.integration._wait import eventually

pytestmark = pytest.mark.processes

NODES = ["node-a", "node-b", "node-c"]

KUBERNETES_MANIFEST = """\
# Written for Kubernetes, applied unchanged.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 2
  selector:
    matchLabels:
      app: hello
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 2
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: hello
        image: hashicorp/http-echo:1.0
        args: ["-text=hello", "-listen=:5678"]
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 5678
          name: http
        env:
        - name: GREETING
          value: hello
        resources:
          requests:
            cpu: 100m
            memory: 32Mi
          limits:
            cpu: 1
            memory: 64Mi
        readinessProbe:
          httpGet:
            path: /
            port: 5678
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  type: NodePort
  selector:
    app: hello
  ports:
  - port: 80
    targetPort: 5678
    nodePort: 30080
"""

STUCK_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      containers:
      - name: stuck
        image: web:v1
        resources: {requests: {cpu: 100}}
"""


@dataclass
class Cluster:
    masters: LocalMasters
    root: Path

    def run(self, *args: str, input: str | None = None) -> Result:
        base = ["--endpoints", ",".join(self.masters.endpoints), "--config", str(self.root / "config.yaml")]
        return CliRunner().invoke(cli, [*base, *args], input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, f"raftctl {' '.join(args)}: {result.output}"
        assert "Traceback" not in result.output
        return result.output

    def error(self, *args: str, input: str | None = None) -> str:
        """The one line of a failed command."""
        result = self.run(*args, input=input)
        assert result.exit_code != 0, f"raftctl {' '.join(args)} succeeded: {result.output}"
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        return lines[0]

    def write(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)

    def client(self) -> Client:
        return self.masters.client()


def write_client_config(path: Path, masters: LocalMasters) -> None:
    """What `raftctl up` writes: the CA and the admin's certificate (endpoints come by flag)."""
    a = masters.admin
    path.write_text(f"ca-file: {a.ca_file}\ncert-file: {a.cert_file}\nkey-file: {a.key_file}\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("raftctl")
    # Generous timeouts: a busy test machine must not make hollow nodes look dead.
    masters = LocalMasters(root / "masters", extra_args=["--node-grace", "10", "--eviction-timeout", "120"])
    write_client_config(root / "config.yaml", masters)
    masters.start()
    try:
        masters.wait_ready()
        fleet = HollowFleet(masters.endpoints, NODES, heartbeat_period=0.5)
        fleet.start()
        try:
            yield Cluster(masters, root)
        finally:
            fleet.stop()
    finally:
        masters.kill()



def rows(output: str) -> list[list[str]]:
    """A table's rows (header first), split on runs of spaces (no cell here holds one)."""
    return [line.split() for line in output.strip().splitlines()]


def running_pods(cluster: Cluster, app: str, namespace: str = "default") -> list[list[str]]:
    result = cluster.run("get", "pods", "-l", f"app={app}", "-n", namespace, "-o", "wide")
    return [r for r in rows(result.output)[1:] if r[2] == "Running"] if result.exit_code == 0 else []


def rolled_out(cluster: Cluster, name: str, namespace: str = "default") -> None:
    out = cluster.ok("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout", "60s")
    assert out.strip().splitlines()[-1] == f'deployment "{name}" successfully rolled out'


def stored(cluster: Cluster, kind: str, name: str, namespace: str = "default") -> Any:
    with cluster.client() as c:
        return c.objects.get(kind, name, namespace)


def test_kubernetes_manifest_applies_and_its_pods_run_on_the_hollow_nodes(cluster: Cluster) -> None:
    path = cluster.write("hello.yaml", KUBERNETES_MANIFEST)
    assert cluster.ok("apply", "-f", path) == "deployment.apps/hello created\nservice/hello created\n"
    eventually(lambda: len(running_pods(cluster, "hello")) == 2, what="2 hello pods Running")
    for row in running_pods(cluster, "hello"):
        assert row[1] == "1/1" and row[-1] in NODES and row[-2].startswith("10.244.")
    svc = rows(cluster.ok("get", "svc", "hello"))
    assert svc[0] == ["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"]
    assert svc[1][:2] == ["hello", "NodePort"] and svc[1][3] == "80:30080/TCP"
    eventually(lambda: cluster.ok("get", "ep", "hello").count(":5678") == 2, what="endpoints")
    rolled_out(cluster, "hello")
    assert cluster.ok("apply", "-f", path) == "deployment.apps/hello unchanged\nservice/hello unchanged\n"


def test_get_yaml_applied_back_changes_nothing(cluster: Cluster) -> None:
    assert cluster.ok("create", "deployment", "echo", "--image=web:v1", "--replicas=2", "--port=8080") == (
        "deployment.apps/echo created\n")
    assert cluster.ok("expose", "deployment", "echo", "--type=NodePort", "--port=80", "--target-port=8080") == (
        "service/echo exposed\n")
    rolled_out(cluster, "echo")
    before = {kind: stored(cluster, kind, "echo") for kind in ("deployment", "service")}
    exported = cluster.ok("get", "deployment", "echo", "-o", "yaml")
    assert exported.startswith("apiVersion: apps/v1\nkind: Deployment\n")
    assert cluster.ok("apply", "-f", cluster.write("echo.yaml", exported)) == "deployment.apps/echo unchanged\n"
    both = cluster.ok("get", "deploy,svc", "echo", "-o", "yaml")
    assert yaml.safe_load(both)["kind"] == "List"
    assert cluster.ok("apply", "-f", "-", input=both) == "deployment.apps/echo unchanged\nservice/echo unchanged\n"
    for kind, old in before.items():
        new = stored(cluster, kind, "echo")
        assert new.metadata.resource_version == old.metadata.resource_version, kind
        assert new.metadata.generation == old.metadata.generation, kind
    # A change in the exported manifest is applied, and only that.
    changed = exported.replace("replicas: 2", "replicas: 3", 1)
    assert cluster.ok("apply", "-f", "-", input=changed) == "deployment.apps/echo configured\n"
    after = stored(cluster, "deployment", "echo")
    assert after.spec.replicas == 3 and after.metadata.generation == before["deployment"].metadata.generation + 1
    assert after.spec.template == before["deployment"].spec.template


def test_get_tables_outputs_and_selectors(cluster: Cluster) -> None:
    cluster.ok("create", "deployment", "cols", "--image=web:v1", "--port=8080")
    cluster.ok("expose", "deployment", "cols")
    rolled_out(cluster, "cols")
    assert rows(cluster.ok("get", "pods", "-l", "app=cols"))[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows(cluster.ok("get", "po", "-l", "app=cols", "-o", "wide"))[0][-2:] == ["IP", "NODE"]
    assert rows(cluster.ok("get", "deploy", "cols"))[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows(cluster.ok("get", "deploy", "cols"))[1][:4] == ["cols", "1/1", "1", "1"]
    assert rows(cluster.ok("get", "rs", "-l", "app=cols"))[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    eventually(lambda: [r[:2] for r in rows(cluster.ok("get", "nodes"))[1:]] == [[n, "Ready"] for n in NODES],
               what="nodes Ready")
    nodes = rows(cluster.ok("get", "nodes"))
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows(cluster.ok("get", "no", "-o", "wide"))[0][-2:] == ["INTERNAL-IP", "CONTAINER-RUNTIME"]
    namespaces = rows(cluster.ok("get", "ns"))
    assert namespaces[0] == ["NAME", "STATUS", "AGE"] and namespaces[1][:2] == ["default", "Active"]
    eventually(lambda: ":8080" in cluster.ok("get", "endpoints", "cols"), what="endpoints of cols")
    assert rows(cluster.ok("get", "ep", "cols"))[0] == ["NAME", "ENDPOINTS", "AGE"]
    everything = cluster.ok("get", "all", "-l", "app=cols")
    for prefix in ("pod/cols-", "deployment.apps/cols", "replicaset.apps/cols-"):
        assert prefix in everything
    names = cluster.ok("get", "deploy", "-o", "name").split()
    assert "deployment.apps/cols" in names
    doc = json.loads(cluster.ok("get", "deploy", "cols", "-o", "json"))
    assert doc["kind"] == "Deployment" and doc["spec"]["template"]["spec"]["containers"][0]["image"] == "web:v1"
    node = running_pods(cluster, "cols")[0][-1]
    on_node = cluster.ok("get", "pods", "--field-selector", f"spec.nodeName={node}", "-o", "name")
    assert any(line.startswith("pod/cols-") for line in on_node.split())
    assert cluster.ok("get", "pods", "-l", "app=nothing") == "No resources found in default namespace.\n"
    assert cluster.error("get", "deploy", "missing") == "error: deployment 'missing' not found in namespace 'default'"
    assert cluster.error("get", "widgets").startswith('error: unknown kind "widgets"')


def test_all_namespaces_lists_pods_of_every_namespace(cluster: Cluster) -> None:
    assert cluster.ok("create", "namespace", "second") == "namespace/second created\n"
    cluster.ok("create", "deployment", "other", "--image=web:v1", "-n", "second")
    cluster.ok("create", "deployment", "here", "--image=web:v1")
    eventually(lambda: len(running_pods(cluster, "other", "second")) == 1, what="pod in second")
    eventually(lambda: len(running_pods(cluster, "here")) == 1, what="pod in default")
    table = rows(cluster.ok("get", "po", "-A"))
    assert table[0][:2] == ["NAMESPACE", "NAME"]
    by_namespace = {(r[0], r[1].rsplit("-", 2)[0]) for r in table[1:]}
    assert {("second", "other"), ("default", "here")} <= by_namespace
    assert "other-" not in cluster.ok("get", "po")
    assert "other-" in cluster.ok("get", "po", "-n", "second")


def test_rollout_scale_set_image_history_and_undo(cluster: Cluster) -> None:
    cluster.ok("create", "deployment", "roll", "--image=web:v1")
    rolled_out(cluster, "roll")
    assert cluster.ok("scale", "deployment", "roll", "--replicas=2") == "deployment.apps/roll scaled\n"
    rolled_out(cluster, "roll")
    assert stored(cluster, "deployment", "roll").status.available_replicas == 2
    # Both new pods at once keeps each rollout to one step; the template, so the revision, stays.
    exported = cluster.ok("get", "deployment", "roll", "-o", "yaml")
    assert "maxSurge: 25%" in exported
    assert cluster.ok("apply", "-f", "-", input=exported.replace("maxSurge: 25%", "maxSurge: 100%")) == (
        "deployment.apps/roll configured\n")
    assert cluster.ok("set", "image", "deployment/roll", "web=web:v2") == "deployment.apps/roll image updated\n"
    progress = cluster.ok("rollout", "status", "deployment/roll", "--timeout", "60s").strip().splitlines()
    assert progress[-1] == 'deployment "roll" successfully rolled out'
    assert any(line.startswith('Waiting for deployment "roll" rollout to finish') or "spec update" in line
               for line in progress[:-1]), progress
    assert rows(cluster.ok("rollout", "history", "deployment/roll")) == [
        ["deployment.apps/roll"], ["REVISION", "CHANGE-CAUSE"], ["1", "<none>"], ["2", "<none>"]]
    assert "web:v1" in cluster.ok("rollout", "history", "deployment/roll", "--revision=1")
    assert cluster.ok("rollout", "undo", "deployment/roll") == "deployment.apps/roll rolled back\n"
    eventually(lambda: stored(cluster, "deployment", "roll").spec.template.spec.containers[0].image == "web:v1",
               what="template back to v1")
    rolled_out(cluster, "roll")
    pods = json.loads(cluster.ok("get", "pods", "-l", "app=roll", "-o", "json"))["items"]
    assert [p["spec"]["containers"][0]["image"] for p in pods] == ["web:v1", "web:v1"]
    assert [r[0] for r in rows(cluster.ok("rollout", "history", "deployment/roll"))[2:]] == ["2", "3"]
    assert "revision 42" in cluster.error("rollout", "undo", "deployment/roll", "--to-revision=42")
    assert 'unable to find container named "nope"' in cluster.error("set", "image", "deployment/roll", "nope=x")


def test_unschedulable_pods_describe_events_logs_and_rollout_timeout(cluster: Cluster) -> None:
    cluster.ok("apply", "-f", cluster.write("stuck.yaml", STUCK_MANIFEST))

    def stuck_pod() -> str:
        names = cluster.run("get", "pods", "-l", "app=stuck", "-o", "name").stdout.split()
        return names[0].split("/", 1)[1] if names else ""

    eventually(lambda: bool(stuck_pod()), what="stuck pod")
    pod = stuck_pod()
    eventually(lambda: "FailedScheduling" in cluster.ok("describe", "pod", pod), what="FailedScheduling event")
    described = cluster.ok("describe", "pod", pod)
    for needle in ("Name:", "Status:", "Pending", "Containers:", "Requests:", "cpu:", "Events:", "Insufficient cpu"):
        assert needle in described
    events = rows(cluster.ok("get", "events"))
    assert events[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(r[2] == "FailedScheduling" and r[3] == f"pod/{pod}" for r in events[1:])
    assert "not scheduled to a node yet" in cluster.error("logs", pod)
    result = cluster.run("rollout", "status", "deployment/stuck", "--timeout", "1s")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout.startswith('Waiting for deployment "stuck" rollout to finish')
    assert result.stderr == 'error: timed out waiting for the rollout of deployment "stuck" after 1s\n'
    deployment = cluster.ok("describe", "deployment", "stuck")
    assert "Replicas:" in deployment and "NewReplicaSet:" in deployment and "Pod Template:" in deployment
    assert "PodCIDR:" in cluster.ok("describe", "node", "node-a")
    assert "Status:" in cluster.ok("describe", "ns", "default")
    assert "error: pod 'nope' not found" in cluster.error("describe", "pod", "nope")


def test_logs_errors_are_clear(cluster: Cluster) -> None:
    assert cluster.error("logs", "nope") == "error: pod 'nope' not found in namespace 'default'"
    cluster.ok("create", "deployment", "talk", "--image=web:v1")
    eventually(lambda: len(running_pods(cluster, "talk")) == 1, what="talk running")
    pod = running_pods(cluster, "talk")[0][0]
    # Hollow nodes serve no logs: the error says so rather than hanging or retrying.
    assert "has no agent endpoint" in cluster.error("logs", pod)
    assert "has no agent endpoint" in cluster.error("logs", "deployment/talk")
    assert 'container "other" is not in pod' in cluster.error("logs", pod, "-c", "other")


def test_expose_and_delete(cluster: Cluster) -> None:
    cluster.ok("create", "deployment", "gone", "--image=web:v1", "--port=9000")
    assert cluster.ok("expose", "deployment/gone", "--name=gone-svc") == "service/gone-svc exposed\n"
    svc = json.loads(cluster.ok("get", "svc", "gone-svc", "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "gone"} and svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["port"] == 9000 and svc["spec"]["ports"][0]["targetPort"] == 9000
    described = cluster.ok("describe", "svc", "gone-svc")
    assert "Selector:" in described and "app=gone" in described and "TargetPort:" in described
    eventually(lambda: cluster.run("describe", "ep", "gone-svc").exit_code == 0, what="endpoints of gone-svc")
    assert cluster.ok("describe", "ep", "gone-svc").startswith("Name:")
    assert "Pods Status:" in cluster.ok("describe", "rs", "-l", "app=gone")
    assert cluster.ok("delete", "svc", "gone-svc") == 'service "gone-svc" deleted\n'
    assert cluster.ok("delete", "deployment", "gone") == 'deployment.apps "gone" deleted\n'
    assert "not found" in cluster.error("get", "deployment", "gone")
    result = cluster.run("delete", "deployment", "gone", "also-missing")
    assert result.exit_code == 1 and result.output.splitlines() == [
        'error: deployments.apps "gone" not found', 'error: deployments.apps "also-missing" not found']
    path = cluster.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: doomed}\n")
    assert cluster.ok("apply", "-f", path) == "namespace/doomed created\n"
    assert cluster.ok("delete", "-f", path) == 'namespace "doomed" deleted\n'
    cluster.ok("create", "deployment", "bylabel", "--image=web:v1")
    assert cluster.ok("delete", "deploy", "-l", "app=bylabel") == 'deployment.apps "bylabel" deleted\n'


def test_get_watch_prints_changes(cluster: Cluster) -> None:
    def create_later() -> None:
        time.sleep(1.0)
        with cluster.client() as c:
            c.objects.create(objects_pb2.Namespace(metadata=objects_pb2.ObjectMeta(name="watched")))

    thread = threading.Thread(target=create_later)
    thread.start()
    out = cluster.ok("get", "ns", "-w", "--request-timeout", "4s")
    thread.join()
    lines = rows(out)
    assert lines[0] == ["NAME", "STATUS", "AGE"]
    assert lines[1][:2] == ["default", "Active"] and any(r[:2] == ["watched", "Active"] for r in lines)


def test_bad_input_is_one_line_and_changes_nothing(cluster: Cluster) -> None:
    def snapshot() -> dict[str, int]:
        with cluster.client() as c:
            out = {}
            for kind in ("deployments", "namespaces", "services", "pods"):
                for item in c.objects.list(kind)[0]:
                    out[f"{kind}/{item.metadata.namespace}/{item.metadata.name}"] = 0  # type: ignore[attr-defined]
            return out

    before = snapshot()
    missing = str(cluster.root / "missing.yaml")
    assert cluster.error("apply", "-f", missing) == f'error: the path "{missing}" does not exist'
    bad = cluster.write("bad.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [x\n")
    assert "invalid YAML at line" in cluster.error("apply", "-f", bad)
    widget = cluster.write("widget.yaml", "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n")
    assert 'unknown kind "Widget"' in cluster.error("apply", "-f", widget)
    assert "metadata.name" in cluster.error("create", "deployment", "Bad_Name", "--image=x")
    assert "metadata.name" in cluster.error("create", "namespace", "Bad")
    # A good first document is not applied when a later one is bad.
    partial = cluster.write("partial.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: partial}\n---\n"
                            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: p}\nspec: {replicaz: 1}\n")
    assert "(document 2): spec.replicaz: unknown field" in cluster.error("apply", "-f", partial)
    typo = KUBERNETES_MANIFEST.replace("imagePullPolicy:", "imagePullPolicyy:")
    assert ("spec.template.spec.containers[0].imagePullPolicyy: unknown field"
            in cluster.error("apply", "-f", "-", input=typo))
    assert snapshot() == before
    with cluster.client() as c, pytest.raises(NotFound):
        c.objects.get("namespace", "partial")
    config = cluster.write("fast.yaml", "retry-for: 1\ntimeout: 1\n")
    result = CliRunner().invoke(cli, ["--endpoints", "127.0.0.1:1", "--config", config, "get", "pods"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no master answered"), result.output


def test_cordon_and_drain(cluster: Cluster) -> None:
    try:
        assert cluster.ok("cordon", "node-a") == "node/node-a cordoned\n"
        assert cluster.ok("cordon", "node-a") == "node/node-a already cordoned\n"
        assert rows(cluster.ok("get", "node", "node-a"))[1][:2] == ["node-a", "Ready,SchedulingDisabled"]
        assert cluster.ok("uncordon", "node-a") == "node/node-a uncordoned\n"
        lonely = cluster.write("lonely.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely}\nspec:\n"
                               "  nodeName: node-c\n  containers: [{name: c, image: busybox}]\n")
        cluster.ok("apply", "-f", lonely)
        cluster.ok("create", "deployment", "drainme", "--image=web:v1", "--replicas=3")
        eventually(lambda: len(running_pods(cluster, "drainme")) == 3, what="drainme running")
        line = cluster.error("drain", "node-c")
        assert 'cannot drain node "node-c"' in line and "default/lonely" in line and "--force" in line
        assert not stored(cluster, "node", "node-c", "").spec.unschedulable  # refused: nothing changed
        out = cluster.ok("drain", "node-c", "--force")
        assert out.startswith("node/node-c cordoned\n") and out.endswith("node/node-c drained\n")
        assert "evicting pod default/lonely\npod/lonely evicted\n" in out
        assert cluster.ok("get", "pods", "--field-selector", "spec.nodeName=node-c", "-A", "-o", "name") == (
            "No resources found\n")
        eventually(lambda: len(running_pods(cluster, "drainme")) == 3, what="drainme back to 3")
        assert all(r[-1] != "node-c" for r in running_pods(cluster, "drainme"))
        assert "not found" in cluster.error("get", "pod", "lonely")
    finally:
        cluster.run("uncordon", "node-a", "node-c")


def test_configmaps_create_get_apply_describe_delete(cluster: Cluster) -> None:
    conf = cluster.write("default.conf", "server { listen 80; }\n")
    out = cluster.ok("create", "configmap", "web-conf", "--from-literal=mode=fast", f"--from-file={conf}")
    assert out == "configmap/web-conf created\n"
    stored_cm = json.loads(cluster.ok("get", "cm", "web-conf", "-o", "json"))
    assert stored_cm["data"] == {"mode": "fast", "default.conf": "server { listen 80; }\n"}
    assert [r[:2] for r in rows(cluster.ok("get", "configmaps"))] == [["NAME", "DATA"], ["web-conf", "2"]]
    assert "default.conf" in cluster.ok("describe", "configmap", "web-conf")
    manifest = cluster.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nginx-conf}\n"
                                        "data:\n  default.conf: |\n    server { listen 8080; }\n")
    assert cluster.ok("apply", "-f", manifest) == "configmap/nginx-conf created\n"
    assert json.loads(cluster.ok("get", "cm", "nginx-conf", "-o", "json"))["data"] == {
        "default.conf": "server { listen 8080; }\n"}
    bad = cluster.error("create", "configmap", "bad", "--from-literal=a/b=1")
    assert 'data["a/b"]' in bad
    assert cluster.ok("delete", "cm", "web-conf") == 'configmap "web-conf" deleted\n'
    assert cluster.ok("delete", "-f", manifest) == 'configmap "nginx-conf" deleted\n'
    assert "not found" in cluster.error("get", "cm", "web-conf")
