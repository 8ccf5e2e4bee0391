"""The in-memory runtime that unit tests and hollow nodes use."""

from __future__ import annotations

import pytest

from raftorch.agent.runtime.base import (
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    ImagePullError,
    RuntimeFailure,
)
from raftorch.agent.runtime.fake import FakeRuntime


def spec(node: str = "n1", pod: str = "p", container: str = "c", image: str = "img:1") -> ContainerSpec:
    return ContainerSpec(f"uid-{pod}", "default", pod, node, container, image)


def test_is_a_container_runtime() -> None:
    runtime: ContainerRuntime = FakeRuntime()
    assert runtime.name == "fake"


def test_containers_run_until_stopped_and_are_listed_per_node() -> None:
    now = [100.0]
    runtime = FakeRuntime(clock=lambda: now[0])
    a = runtime.create_and_start(spec("n1"))
    b = runtime.create_and_start(spec("n2", pod="q"))
    assert a.running and a.started_at == 100.0 and a.ip != b.ip
    assert [c.id for c in runtime.list_containers("n1")] == [a.id]
    assert runtime.list_containers("n1")[0].pod_uid == "uid-p"
    now[0] = 105.0
    runtime.stop(a.id, 30)
    stopped = runtime.container(a.id)
    assert (stopped.state, stopped.exit_code, stopped.finished_at) == ("exited", 143, 105.0)
    runtime.stop(a.id, 30)  # idempotent
    runtime.remove(a.id)
    runtime.remove(a.id)
    assert runtime.list_containers("n1") == []


def test_exit_and_ignored_term() -> None:
    runtime = FakeRuntime()
    a = runtime.create_and_start(spec())
    runtime.exit(a.id, 0)
    assert (runtime.container(a.id).exit_code, runtime.container(a.id).reason) == (0, "Completed")
    b = runtime.create_and_start(spec(pod="q"))
    runtime.ignore_term(b.id)
    runtime.stop(b.id, 1)
    assert runtime.container(b.id).exit_code == 137


def test_image_policies() -> None:
    runtime = FakeRuntime()
    with pytest.raises(ImagePullError) as never:
        runtime.ensure_image("img:1", "Never")
    assert never.value.reason == "ErrImageNeverPull"
    runtime.ensure_image("img:1", "IfNotPresent")  # pulls
    runtime.ensure_image("img:1", "Never")
    runtime.fail_image("bad:1", "no such image")
    with pytest.raises(ImagePullError) as failed:
        runtime.ensure_image("bad:1", "Always")
    assert (failed.value.reason, failed.value.image, failed.value.message) == ("ErrImagePull", "bad:1",
                                                                               "no such image")


def test_start_failure_exec_and_logs() -> None:
    runtime = FakeRuntime()
    runtime.fail_start("broken:1")
    with pytest.raises(RuntimeFailure):
        runtime.create_and_start(spec(image="broken:1"))
    a = runtime.create_and_start(spec())
    assert runtime.exec(a.id, ["true"], 1) == 0
    runtime.set_exec_result(a.id, 2)
    assert runtime.exec(a.id, ["false"], 1) == 2
    runtime.set_exec_result(a.id, None)
    with pytest.raises(ExecTimeout):
        runtime.exec(a.id, ["sleep"], 1)
    runtime.write_log(a.id, b"one\ntwo\nthree\n")
    assert b"".join(runtime.logs(a.id)) == b"one\ntwo\nthree\n"
    assert list(runtime.logs(a.id, tail=2)) == [b"two\n", b"three\n"]
    with pytest.raises(ContainerNotFound):
        runtime.logs("nope")
