"""The process runtime with real processes: output, exit codes, stop with grace and kill, exec, adoption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from raftorch.agent.runtime.base import (
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    RuntimeFailure,
)
from raftorch.agent.runtime.process import ProcessRuntime

NODE = "node-1"


def spec(script: str, *, pod: str = "p", container: str = "c", env: tuple[tuple[str, str], ...] = (),
         node: str = NODE, working_dir: str = "") -> ContainerSpec:
    return ContainerSpec(f"uid-{pod}", "default", pod, node, container, "ignored:1", command=("sh", "-c"),
                         args=(script,), env=env, working_dir=working_dir)


def wait_for(what: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def find(runtime: ProcessRuntime, container_id: str) -> ContainerInfo:
    return next(c for c in runtime.list_containers(NODE) if c.id == container_id)


def output(runtime: ProcessRuntime, container_id: str) -> bytes:
    return b"".join(runtime.logs(container_id))


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "agent"
    yield path
    cleanup = ProcessRuntime(path)
    for entry in cleanup.root.iterdir():
        cleanup.remove(entry.name)


@pytest.fixture
def runtime(data_dir: Path) -> ProcessRuntime:
    return ProcessRuntime(data_dir, host_ip="127.0.0.1")


def test_is_a_container_runtime(runtime: ProcessRuntime) -> None:
    checked: ContainerRuntime = runtime
    assert checked.name == "process"
    runtime.ensure_image("anything:1", "Always")  # no images: nothing to do


def test_runs_a_command_with_output_and_stops_it(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec("echo hi; sleep 30"))
    assert (info.state, info.ip, info.pod_uid, info.container, info.image) == ("running", "127.0.0.1", "uid-p", "c",
                                                                               "ignored:1")
    assert [c.id for c in runtime.list_containers(NODE)] == [info.id]
    assert runtime.list_containers("other-node") == []
    wait_for(lambda: output(runtime, info.id) == b"hi\n")
    started = time.monotonic()
    runtime.stop(info.id, 10)
    assert time.monotonic() - started < 2  # sh and sleep die of SIGTERM at once
    stopped = find(runtime, info.id)
    assert (stopped.state, stopped.exit_code, stopped.reason) == ("exited", 128 + signal.SIGTERM, "Error")
    assert stopped.finished_at is not None and stopped.started_at is not None
    runtime.stop(info.id, 10)  # idempotent


def test_a_process_that_ignores_term_is_killed_after_the_grace(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec('trap "" TERM; echo ready; sleep 30'))
    wait_for(lambda: output(runtime, info.id) == b"ready\n")
    started = time.monotonic()
    runtime.stop(info.id, 1)
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 3
    assert find(runtime, info.id).exit_code == 128 + signal.SIGKILL


def test_a_process_that_handles_term_exits_with_its_own_code(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec('trap "echo bye; exit 0" TERM; echo ready; sleep 30 & wait'))
    wait_for(lambda: output(runtime, info.id) == b"ready\n")
    runtime.stop(info.id, 10)
    stopped = find(runtime, info.id)
    assert (stopped.exit_code, stopped.reason) == (0, "Completed")
    assert output(runtime, info.id) == b"ready\nbye\n"


def test_stop_right_after_start_is_not_lost(runtime: ProcessRuntime) -> None:
    """A SIGTERM that comes while the wrapper is still starting must not let the command start unsignalled."""
    for attempt in range(10):
        info = runtime.create_and_start(spec("sleep 30", pod=f"p{attempt}"))
        started = time.monotonic()
        runtime.stop(info.id, 5)
        assert time.monotonic() - started < 2
        assert find(runtime, info.id).exit_code == 128 + signal.SIGTERM


def test_exit_code_and_env(runtime: ProcessRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SECRET", "s3cret")
    info = runtime.create_and_start(spec('echo "mode=$MODE secret=$AGENT_SECRET"; exit 3', env=(("MODE", "prod"),)))
    wait_for(lambda: find(runtime, info.id).state == "exited")
    done = find(runtime, info.id)
    assert (done.exit_code, done.reason) == (3, "Error")
    assert output(runtime, info.id) == b"mode=prod secret=\n"  # the agent's environment stays out


def test_exec_in_the_container(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec("sleep 30", env=(("MODE", "prod"),)))
    assert runtime.exec(info.id, ["sh", "-c", "exit 4"], 5) == 4
    assert runtime.exec(info.id, ["sh", "-c", 'test "$MODE" = prod'], 5) == 0
    started = time.monotonic()
    with pytest.raises(ExecTimeout):
        runtime.exec(info.id, ["sleep", "5"], 0.2)
    assert time.monotonic() - started < 2
    with pytest.raises(RuntimeFailure):
        runtime.exec(info.id, ["/no/such/binary"], 1)
    runtime.stop(info.id, 0)
    with pytest.raises(RuntimeFailure, match="not running"):
        runtime.exec(info.id, ["true"], 1)


def test_logs_tail_and_follow(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec("for i in 1 2 3 4 5; do echo line$i; done; sleep 0.5; echo late"))
    wait_for(lambda: b"line5" in output(runtime, info.id))
    followed = b"".join(runtime.logs(info.id, follow=True))  # ends when the process does
    assert followed == b"line1\nline2\nline3\nline4\nline5\nlate\n"
    assert b"".join(runtime.logs(info.id, tail=2)) == b"line5\nlate\n"
    assert b"".join(runtime.logs(info.id, tail=100)) == followed
    assert b"".join(runtime.logs(info.id, tail=0)) == b""
    with pytest.raises(ContainerNotFound):
        runtime.logs("0" * 32)


def test_start_errors(runtime: ProcessRuntime, tmp_path: Path) -> None:
    no_binary = ContainerSpec("u", "default", "p", NODE, "c", "img", command=("no-such-program-x",))
    with pytest.raises(RuntimeFailure, match="executable file not found") as missing:
        runtime.create_and_start(no_binary)
    assert missing.value.reason == "RunContainerError"
    with pytest.raises(RuntimeFailure, match="needs a command") as empty:
        runtime.create_and_start(ContainerSpec("u", "default", "p", NODE, "c", "img"))
    assert empty.value.reason == "CreateContainerError"
    with pytest.raises(RuntimeFailure, match="no such directory"):
        runtime.create_and_start(spec("true", working_dir=str(tmp_path / "nope")))
    assert list(runtime.root.iterdir()) == []


def test_working_dir_and_remove(runtime: ProcessRuntime, tmp_path: Path) -> None:
    info = runtime.create_and_start(spec("pwd; sleep 30", working_dir=str(tmp_path)))
    wait_for(lambda: output(runtime, info.id) == f"{tmp_path}\n".encode())
    pid = json.loads((runtime.root / info.id / "state.json").read_text())["pid"]
    runtime.remove(info.id)  # kills it too
    assert not (runtime.root / info.id).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    runtime.remove(info.id)


def test_a_new_runtime_object_adopts_running_processes(runtime: ProcessRuntime, data_dir: Path) -> None:
    info = runtime.create_and_start(spec("sleep 30"))
    again = ProcessRuntime(data_dir)
    adopted = find(again, info.id)
    assert (adopted.state, adopted.started_at) == ("running", info.started_at)
    again.stop(info.id, 5)
    assert find(runtime, info.id).exit_code == 128 + signal.SIGTERM


_PREVIOUS_AGENT = """
import sys
from raftorch.agent.runtime.base import ContainerSpec
from raftorch.agent.runtime.process import ProcessRuntime
runtime = ProcessRuntime(sys.argv[1])
for pod, script in (("long", "echo hi; sleep 30"), ("short", "sleep 0.5; exit 5")):
    spec = ContainerSpec("uid-" + pod, "default", pod, "node-1", "c", "img", command=("sh", "-c", script))
    print(runtime.create_and_start(spec).id)
"""


def test_adoption_after_the_agent_process_exits(data_dir: Path) -> None:
    """The processes outlive the agent that started them; a new agent adopts them, exit codes included."""
    done = subprocess.run([sys.executable, "-c", _PREVIOUS_AGENT, str(data_dir)], capture_output=True, text=True,
                          check=True, timeout=30)
    long_id, short_id = done.stdout.split()
    runtime = ProcessRuntime(data_dir)
    assert find(runtime, long_id).state == "running"
    wait_for(lambda: find(runtime, short_id).state == "exited")
    short = find(runtime, short_id)
    assert (short.exit_code, short.reason) == (5, "Error")  # from the wrapper's exit file
    assert output(runtime, long_id) == b"hi\n"
    runtime.stop(long_id, 5)
    assert find(runtime, long_id).exit_code == 128 + signal.SIGTERM


def test_a_recycled_pid_is_not_taken_for_the_container(runtime: ProcessRuntime) -> None:
    info = runtime.create_and_start(spec("sleep 30"))
    state_file = runtime.root / info.id / "state.json"
    state = json.loads(state_file.read_text())
    state["start_ticks"] += 1  # as if the pid now belonged to a process started later
    state_file.write_text(json.dumps(state))
    try:
        gone = find(runtime, info.id)
        assert (gone.state, gone.exit_code, gone.reason) == ("exited", 137, "ContainerStatusUnknown")
    finally:
        os.killpg(state["pid"], signal.SIGKILL)
        os.waitpid(state["pid"], 0)


def test_a_security_context_the_agents_user_cannot_meet_is_refused(runtime: ProcessRuntime) -> None:
    """Commands run as the agent's own user: a runAsUser or runAsNonRoot it does not meet is refused."""
    other = os.geteuid() + 1
    with pytest.raises(RuntimeFailure) as info:
        runtime.create_and_start(replace(spec("true"), run_as_user=other))
    assert info.value.reason == "CreateContainerConfigError"
    assert f"runAsUser {other}: the process runtime runs commands as the agent's user" in info.value.message
    if os.geteuid() == 0:
        with pytest.raises(RuntimeFailure, match="runAsNonRoot and the process runtime runs it as root"):
            runtime.create_and_start(replace(spec("true"), run_as_non_root=True))
    assert runtime.list_containers(NODE) == []
