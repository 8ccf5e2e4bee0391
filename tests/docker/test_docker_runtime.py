"""The Docker runtime against a real engine: create with labels, env, ports and limits; list, exec, logs,
stop with grace and kill, image policies without a registry, and the reconciler driving it."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from conftest import TEST_LABEL

from raftorch.agent.probes import run_probe
from raftorch.agent.reconciler import (
    AgentPodState,
    ReconcileConfig,
    ReconcilePlan,
    RemoveContainer,
    StartContainer,
    StopContainer,
    plan_pod_actions,
)
from raftorch.agent.runtime.base import (
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    ImagePullError,
    PortMapping,
    RuntimeFailure,
)
from raftorch.agent.runtime.docker import DockerRuntime
from raftorch.api.v1 import objects_pb2

pytestmark = pytest.mark.docker

SERVE = 'echo "served by $(hostname) mode=$MODE" > /www/index.html && exec httpd -f -p 8080 -h /www'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def make_spec(node: str, image: str, script: str, *, pod: str = "web-1", **kwargs: Any) -> ContainerSpec:
    return ContainerSpec(f"uid-{pod}-{node}", "default", pod, node, "main", image, command=("sh", "-c"),
                         args=(script,), extra_labels=((TEST_LABEL, node),), **kwargs)


def logs(runtime: DockerRuntime, container_id: str, tail: int | None = None) -> bytes:
    return b"".join(runtime.logs(container_id, tail=tail))


def find(runtime: DockerRuntime, node: str, container_id: str) -> ContainerInfo:
    return next(c for c in runtime.list_containers(node) if c.id == container_id)


def test_httpd_container_with_labels_env_ports_and_limits(runtime: DockerRuntime, docker_client: Any, node: str,
                                                          image: str) -> None:
    checked: ContainerRuntime = runtime
    assert checked.name == "docker"
    port = free_port()
    spec = make_spec(node, image, SERVE, env=(("MODE", "test"),), ports=(PortMapping(8080, port),),
                     cpu_millis=250, memory_bytes=64 * 2**20, attempt=2)
    runtime.ensure_image(image, "IfNotPresent")
    info = runtime.create_and_start(spec)
    assert info.running and info.ip and info.started_at is not None
    assert (info.pod_uid, info.container, info.attempt, info.name) == (spec.pod_uid, "main", 2, spec.runtime_name)

    [listed] = runtime.list_containers(node)
    assert listed.id == info.id and spec.labels().items() <= listed.labels.items()  # plus the image's labels
    assert runtime.list_containers(f"{node}-other") == []

    attrs = docker_client.api.inspect_container(info.id)
    assert attrs["HostConfig"]["NanoCpus"] == 250_000_000
    assert attrs["HostConfig"]["Memory"] == 64 * 2**20
    assert "MODE=test" in attrs["Config"]["Env"]
    assert attrs["Config"]["Entrypoint"] == ["sh", "-c"] and attrs["Config"]["Cmd"] == [SERVE]

    def page() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    wait_for(lambda: page() != "")
    assert page() == "served by web-1 mode=test\n"  # the hostname is the pod name

    assert runtime.exec(info.id, ["wget", "-qO-", "http://127.0.0.1:8080/"], 5) == 0
    assert runtime.exec(info.id, ["sh", "-c", "exit 3"], 5) == 3
    started = time.monotonic()
    with pytest.raises(ExecTimeout):
        runtime.exec(info.id, ["sleep", "5"], 0.3)
    assert time.monotonic() - started < 2

    http = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(host="127.0.0.1", port=str(port), path="/"))
    tcp = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(host="127.0.0.1", port=str(port)))
    exec_ok = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["test", "-f", "/www/index.html"]))
    exec_bad = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["test", "-f", "/nope"]))
    assert [run_probe(p, info.ip, info.id, runtime) for p in (http, tcp, exec_ok, exec_bad)] == [
        True, True, True, False]


def test_logs_of_stdout_and_stderr(runtime: DockerRuntime, node: str, image: str) -> None:
    info = runtime.create_and_start(make_spec(node, image, "echo one; echo two >&2; sleep 0.2; echo three; sleep 30"))
    wait_for(lambda: logs(runtime, info.id).count(b"\n") == 3)
    assert sorted(logs(runtime, info.id).splitlines()) == [b"one", b"three", b"two"]
    assert logs(runtime, info.id, tail=1) == b"three\n"
    short = runtime.create_and_start(make_spec(node, image, "echo a; sleep 0.3; echo b", pod="short"))
    assert b"".join(runtime.logs(short.id, follow=True)) == b"a\nb\n"  # ends with the container


def test_stop_honours_a_term_handler(runtime: DockerRuntime, node: str, image: str) -> None:
    info = runtime.create_and_start(make_spec(node, image, 'trap "exit 0" TERM; echo ready; sleep 100 & wait'))
    wait_for(lambda: logs(runtime, info.id) == b"ready\n")
    started = time.monotonic()
    runtime.stop(info.id, 10)
    assert time.monotonic() - started < 3
    stopped = find(runtime, node, info.id)
    assert (stopped.state, stopped.exit_code, stopped.reason) == ("exited", 0, "Completed")
    assert stopped.finished_at is not None


def test_stop_kills_after_the_grace_when_term_is_ignored(runtime: DockerRuntime, node: str, image: str) -> None:
    info = runtime.create_and_start(make_spec(node, image, 'trap "" TERM; echo ready; sleep 100'))
    wait_for(lambda: logs(runtime, info.id) == b"ready\n")
    started = time.monotonic()
    runtime.stop(info.id, 2)
    assert 2 <= time.monotonic() - started < 8
    assert find(runtime, node, info.id).exit_code == 137
    runtime.stop(info.id, 2)  # idempotent
    runtime.remove(info.id)
    runtime.remove(info.id)
    runtime.stop(info.id, 2)
    assert runtime.list_containers(node) == []


def test_missing_image_fails_fast_naming_the_image(runtime: DockerRuntime, node: str) -> None:
    missing = f"raftorch-test/absent:{node}"
    started = time.monotonic()
    with pytest.raises(ImagePullError) as pull:
        runtime.ensure_image(missing, "IfNotPresent")
    assert time.monotonic() - started < 30
    assert (pull.value.reason, pull.value.image) == ("ErrImagePull", missing)
    assert f'failed to pull image "{missing}"' in pull.value.message
    with pytest.raises(ImagePullError) as never:
        runtime.ensure_image(missing, "Never")
    assert never.value.reason == "ErrImageNeverPull" and missing in never.value.message


def test_image_policies_for_a_local_image(runtime: DockerRuntime, image: str) -> None:
    runtime.ensure_image(image, "IfNotPresent")  # present: no pull
    runtime.ensure_image(image, "Never")
    with pytest.raises(ImagePullError) as always:  # Always means pull, and there is no registry here
        runtime.ensure_image(image, "Always")
    assert always.value.reason == "ErrImagePull"


def test_a_container_that_cannot_start_leaves_nothing(runtime: DockerRuntime, node: str, image: str) -> None:
    spec = ContainerSpec("uid-x", "default", "x", node, "main", image, command=("/no/such/binary",))
    with pytest.raises(RuntimeFailure) as failed:
        runtime.create_and_start(spec)
    assert failed.value.reason == "RunContainerError" and "no/such/binary" in failed.value.message
    assert runtime.list_containers(node) == []


def _execute(runtime: DockerRuntime, plan: ReconcilePlan) -> None:
    for action in plan.actions:
        if isinstance(action, StopContainer):
            runtime.stop(action.container_id, action.grace_seconds)
            if action.remove:
                runtime.remove(action.container_id)
        elif isinstance(action, RemoveContainer):
            runtime.remove(action.container_id)
        elif isinstance(action, StartContainer):
            runtime.ensure_image(action.spec.image, action.spec.pull_policy)
            runtime.create_and_start(action.spec)


def test_reconciler_runs_adopts_and_deletes_a_pod(runtime: DockerRuntime, node: str, image: str) -> None:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid=f"uid-web-{node}"),
        spec=objects_pb2.PodSpec(restart_policy="Always", termination_grace_period_seconds=3, containers=[
            objects_pb2.Container(name="main", image=image, image_pull_policy="IfNotPresent")]))
    config = ReconcileConfig(node=node, host_ip="127.0.0.1")
    plan = plan_pod_actions([pod], runtime.list_containers(node), AgentPodState(), time.time(), config)
    _execute(runtime, plan)  # the image's own command: httpd
    plan = plan_pod_actions([pod], runtime.list_containers(node), plan.state, time.time(), config)
    status = plan.statuses[pod.metadata.uid]
    [info] = runtime.list_containers(node)
    assert (status.phase, status.pod_ip, status.container_statuses[0].container_id) == ("Running", info.ip, info.id)

    restarted_agent = DockerRuntime()
    plan = plan_pod_actions([pod], restarted_agent.list_containers(node), AgentPodState(), time.time(), config)
    assert plan.actions == ()  # adopted
    restarted_agent.close()

    plan = plan_pod_actions([], runtime.list_containers(node), plan.state, time.time(), config)
    [stop] = plan.actions
    assert isinstance(stop, StopContainer) and (stop.grace_seconds, stop.remove) == (3, True)
    started = time.monotonic()
    _execute(runtime, plan)
    assert time.monotonic() - started < 5  # httpd as PID 1 has no TERM handler: killed after the 3 s grace
    assert runtime.list_containers(node) == []


def test_security_context_reaches_the_container(runtime: DockerRuntime, docker_client: Any, node: str,
                                                image: str) -> None:
    runtime.ensure_image(image, "IfNotPresent")
    # The capability bounding set: what any process of the container could ever hold.
    spec = make_spec(node, image, "grep CapBnd /proc/self/status; id -u; exec sleep 1000", run_as_user=1000,
                     run_as_non_root=True, no_new_privileges=True, cap_drop=("ALL",), cap_add=("NET_BIND_SERVICE",))
    info = runtime.create_and_start(spec)
    host = docker_client.api.inspect_container(info.id)["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and not host["Privileged"]
    wait_for(lambda: b"1000" in logs(runtime, info.id))
    # Only CAP_NET_BIND_SERVICE (bit 10) is left.
    assert b"CapBnd:\t0000000000000400" in logs(runtime, info.id)


def test_run_as_non_root_refuses_an_image_that_runs_as_root(runtime: DockerRuntime, node: str, image: str) -> None:
    runtime.ensure_image(image, "IfNotPresent")
    with pytest.raises(RuntimeFailure) as info:
        runtime.create_and_start(make_spec(node, image, "exec sleep 1000", run_as_non_root=True))
    assert info.value.reason == "CreateContainerConfigError"
    assert info.value.message == "container has runAsNonRoot and image will run as root"
    assert not runtime.list_containers(node)


def test_event_stream_tells_kills_from_outside_from_own_stops_and_exits(runtime: DockerRuntime, docker_client: Any,
                                                                        node: str, image: str) -> None:
    changes: list[float] = []
    watch = runtime.watch_changes(node, lambda: changes.append(time.monotonic()))
    assert watch.wait_live(10)
    runtime.ensure_image(image, "IfNotPresent")
    killed = runtime.create_and_start(make_spec(node, image, "sleep 100", pod="killed"))
    stopped = runtime.create_and_start(make_spec(node, image, "sleep 100", pod="stopped"))
    exited = runtime.create_and_start(make_spec(node, image, "sleep 0.5; exit 3", pod="exited"))
    before = len(changes)
    docker_client.api.kill(killed.id)  # as `docker kill` does
    runtime.stop(stopped.id, 0)

    def ended() -> dict[str, ContainerInfo]:
        return {c.id: c for c in runtime.list_containers(node) if not c.running}

    wait_for(lambda: len(ended()) == 3)
    infos = ended()
    assert (infos[killed.id].killed, infos[killed.id].exit_code) == (True, 137)
    assert infos[stopped.id].killed is False
    assert (infos[exited.id].killed, infos[exited.id].exit_code, infos[exited.id].reason) == (False, 3, "Error")
    assert infos[exited.id].finished_at is not None
    assert len(changes) > before  # the agent is told, it need not poll
    watch.close()


def test_an_image_removed_after_it_was_seen_is_an_image_error(runtime: DockerRuntime, docker_client: Any,
                                                             node: str, image: str) -> None:
    doomed = f"raftorch-test/doomed:{node}"
    docker_client.images.get(image).tag(doomed)
    runtime.ensure_image(doomed, "IfNotPresent")
    docker_client.images.remove(doomed)
    spec = ContainerSpec("uid-d", "default", "d", node, "main", doomed, pull_policy="Never")
    with pytest.raises(ImagePullError) as missing:
        runtime.create_and_start(spec)
    assert missing.value.reason == "ErrImageNeverPull"
    assert runtime.list_containers(node) == []


def test_start_pod_joins_containers_to_a_new_sandbox_and_reports_each_failure(
        runtime: DockerRuntime, docker_client: Any, node: str, image: str) -> None:
    sandbox = ContainerSpec("uid-pair", "default", "pair", node, "POD", image, command=("sh", "-c"),
                            args=("trap 'exit 0' TERM; sleep 1000 & wait",),
                            extra_labels=((TEST_LABEL, node), ("raftorch.io/role", "sandbox")))
    ok = ContainerSpec("uid-pair", "default", "pair", node, "a", image, command=("sh", "-c"),
                       args=("exec httpd -f -p 127.0.0.1:8080 -h /www",), extra_labels=((TEST_LABEL, node),))
    broken = ContainerSpec("uid-pair", "default", "pair", node, "b", image, command=("/no/such/binary",),
                           extra_labels=((TEST_LABEL, node),))
    started = runtime.start_pod(sandbox, [ok, broken])
    assert started.sandbox.running and started.sandbox.ip
    a, b = started.containers
    assert isinstance(a, ContainerInfo) and a.running and a.sandbox == started.sandbox.id
    assert isinstance(b, RuntimeFailure) and "no/such/binary" in b.message
    assert docker_client.api.inspect_container(a.id)["HostConfig"]["NetworkMode"] == f"container:{started.sandbox.id}"
    # The pod's one address: a's server answers on localhost of the sandbox's namespace.
    code, out = docker_client.containers.get(started.sandbox.id).exec_run(
        ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    assert code == 0 and b"raftorch busybox" in out
    assert {c.container for c in runtime.list_containers(node)} == {"POD", "a"}  # nothing left of b


def test_start_pod_whose_sandbox_fails_leaves_nothing(runtime: DockerRuntime, node: str, image: str) -> None:
    sandbox = ContainerSpec("uid-bad", "default", "bad", node, "POD", image, command=("/no/such/binary",),
                            extra_labels=((TEST_LABEL, node),))
    app = make_spec(node, image, "sleep 1000", pod="bad")
    with pytest.raises(RuntimeFailure) as failed:
        runtime.start_pod(sandbox, [app])
    assert "no/such/binary" in failed.value.message
    assert runtime.list_containers(node) == []
