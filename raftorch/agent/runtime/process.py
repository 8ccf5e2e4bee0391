"""The `process` runtime: each container is a plain host process, for hosts without Docker.

Like Nomad's raw_exec: the container's command and args run in a session (and process group) of
their own, with PATH and the container's env only (not the agent's environment, which may hold
secrets), in its working dir or a scratch dir. Output goes to a log file. Images are ignored;
ports are not mapped (the process binds host ports itself); the pod IP is the host IP; cpu and
memory limits are not enforced.

What a pod's containers share here: the host's network namespace, so they reach each other (and
every other process on the host) on localhost, and two containers binding one port collide, as
do two pods; the pod IP is the host's. No pod sandbox: there is no namespace to hold, and
`hostname` is the host's. Nothing else is shared or isolated (file system, pids, users).
Volumes cannot be mounted (a process sees the host's files as they are): a container with
volume mounts waits with CreateContainerConfigError; env from ConfigMaps and Secrets works.

Stopping is Docker's: SIGTERM to the command, and after the grace
SIGKILL to everything in its process group (a child that made a session of its own escapes).

State lives in `<data_dir>/containers/<id>/`: `state.json` (pids, start time, labels, ...),
`output.log`, and `exit_code`, written by a small `sh` wrapper around the command, so exit codes
survive an agent restart. A new runtime object on the same data dir adopts the processes still
running: one is ours only if its /proc start time and the boot id match what was recorded, so a
recycled pid is never taken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import BinaryIO

from raftorch.agent.runtime.base import (
    CREATE_CONTAINER_ERROR,
    EXITED,
    LABEL_MANAGED,
    LABEL_NODE,
    RUNNING,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    ExecTimeout,
    RuntimeFailure,
    exit_reason,
)
from raftorch.agent.usage import Reading, process_group_reading
from raftorch.objects import CREATE_CONTAINER_CONFIG_ERROR

__all__ = ["ProcessRuntime"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Runs the command as a job of its own, records its pid ($0.pid) and its exit code ($0): the
# command's, or 128+signal. Stop signals go to the command only, never to this wrapper, which so
# needs no trap (a trap's handler would linger in a just-forked child and swallow a signal).
_WRAPPER = '"$@" & echo $! > "$0.pid"; wait $!; echo $? > "$0"'
# A background job starts with SIGINT and SIGQUIT ignored; this gives the command the defaults.
_DEFAULT_SIGNALS = ("--default-signal=INT,QUIT",)
_ID = re.compile(r"[0-9a-f]{32}")
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class _Record:
    id: str
    name: str
    labels: dict[str, str]
    image: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    pid: int
    start_ticks: int
    boot_id: str
    started_at: float
    state: str = RUNNING
    exit_code: int = 0
    finished_at: float | None = None
    reason: str = ""
    killed: bool = False  # we sent SIGKILL: no exit file means 137
    main_pid: int = 0  # the command's process (pid is the wrapper's, whose group holds both)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # pragma: no cover - every Linux has it
        return ""


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (field 3), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else fields


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _is_child_of(pid: int, parent: int) -> bool:
    fields = _stat(pid)
    return fields is not None and int(fields[1]) == parent


def _env_resetting_signals() -> list[str]:
    """`env` with the options that reset SIGINT and SIGQUIT (coreutils 8.31+), or nothing."""
    env = shutil.which("env")
    if env is None:
        return []
    try:
        done = subprocess.run([env, *_DEFAULT_SIGNALS, "true"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [env, *_DEFAULT_SIGNALS] if done.returncode == 0 else []


def _tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last `lines` lines of the file start, reading backwards from its end."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0 or end == 0:
        return end
    f.seek(end - 1)
    wanted = lines + (f.read(1) == b"\n")  # a final newline ends the last line, it starts none
    pos = end
    while pos > 0:
        size = min(65536, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        count = block.count(b"\n")
        if count >= wanted:
            index = len(block)
            for _ in range(wanted):
                index = block.rindex(b"\n", 0, index)
            return pos + index + 1
        wanted -= count
    return 0


class ProcessRuntime(ContainerRuntime):
    name = "process"

    def __init__(self, data_dir: str | os.PathLike[str], host_ip: str = "127.0.0.1", kill_wait: float = 5.0) -> None:
        self.root = Path(data_dir) / "containers"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.host_ip = host_ip
        self.kill_wait = kill_wait
        self._boot_id = _boot_id()
        self._lock = threading.Lock()
        self._env = _env_resetting_signals()

    # -- records ----------------------------------------------------------------------------

    def _dir(self, container_id: str) -> Path:
        if not _ID.fullmatch(container_id):
            raise ContainerNotFound(f"no such container: {container_id!r}")
        return self.root / container_id

    def _load(self, container_id: str) -> _Record:
        path = self._dir(container_id) / "state.json"
        try:
            data = json.loads(path.read_text())
            return _Record(**data)
        except FileNotFoundError:
            raise ContainerNotFound(f"no such container: {container_id}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise RuntimeFailure(f"container {container_id}: unreadable state {path}: {exc}") from exc

    def _save(self, record: _Record) -> None:
        path = self._dir(record.id) / "state.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(record), f)
        os.replace(tmp, path)

    def _poll(self, container_id: str) -> _Record:
        """The record, brought up to date: a process that ended is recorded as exited."""
        with self._lock:
            record = self._load(container_id)
            if record.state != RUNNING:
                return record
            status = self._reap(record)
            if status is None and self._alive(record):
                return record
            exit_file = self._dir(container_id) / "exit_code"
            finished = time.time()
            try:
                code = int(exit_file.read_text().strip())
                finished = exit_file.stat().st_mtime
                reason = exit_reason(code)
            except (OSError, ValueError):
                if status is not None:  # the wrapper itself was killed, by us or by the OOM killer
                    code, reason = 128 + max(-os.waitstatus_to_exitcode(status), 0), "Error"
                elif record.killed:
                    code, reason = 128 + signal.SIGKILL, "Error"
                else:  # gone while no agent watched (a reboot, a kill -9 of the wrapper)
                    code, reason = 128 + signal.SIGKILL, "ContainerStatusUnknown"
            record = replace(record, state=EXITED, exit_code=code, finished_at=finished, reason=reason)
            self._save(record)
            return record

    @staticmethod
    def _reap(record: _Record) -> int | None:
        """The wait status if the process is our child and has ended (and is now reaped)."""
        try:
            pid, status = os.waitpid(record.pid, os.WNOHANG)
        except ChildProcessError:  # not our child: started by an earlier agent
            return None
        return status if pid == record.pid else None

    def _alive(self, record: _Record) -> bool:
        return record.boot_id == self._boot_id and _start_ticks(record.pid) == record.start_ticks

    def _info(self, record: _Record) -> ContainerInfo:
        return ContainerInfo(
            id=record.id, state=record.state, labels=dict(record.labels), name=record.name, image=record.image,
            exit_code=record.exit_code, started_at=record.started_at, finished_at=record.finished_at,
            ip=self.host_ip, reason=record.reason)

    # -- the runtime ------------------------------------------------------------------------

    def list_containers(self, node: str) -> list[ContainerInfo]:
        infos = []
        for path in sorted(self.root.iterdir()):
            try:
                record = self._load(path.name)
            except (ContainerNotFound, RuntimeFailure):
                continue  # removed meanwhile, or half-made by an agent that died creating it
            if record.labels.get(LABEL_MANAGED) == "true" and record.labels.get(LABEL_NODE) == node:
                with contextlib.suppress(ContainerNotFound):
                    infos.append(self._info(self._poll(record.id)))
        return infos

    def ensure_image(self, image: str, policy: str) -> None:
        """Nothing to pull: a process container's "image" is only a name it reports."""

    def usage(self, container_id: str) -> Reading | None:
        """CPU and memory of the container's process group, from /proc."""
        try:
            record = self._load(container_id)
        except (ContainerNotFound, RuntimeFailure):
            return None
        return process_group_reading(record.pid)

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        argv = [*spec.command, *spec.args]
        if spec.mounts:
            raise RuntimeFailure(f"container {spec.container}: the process runtime cannot mount volumes "
                                 "(a host process sees the host's files)", CREATE_CONTAINER_CONFIG_ERROR)
        if not argv:
            raise RuntimeFailure(f"container {spec.container}: the process runtime needs a command "
                                 "(there is no image to take one from)", CREATE_CONTAINER_ERROR)
        # The command runs as the agent's own user: a securityContext cannot change that.
        if spec.run_as_non_root and os.geteuid() == 0:
            raise RuntimeFailure("container has runAsNonRoot and the process runtime runs it as root",
                                 CREATE_CONTAINER_CONFIG_ERROR)
        if spec.run_as_user is not None and spec.run_as_user != os.geteuid():
            raise RuntimeFailure(f"runAsUser {spec.run_as_user}: the process runtime runs commands as the "
                                 f"agent's user ({os.geteuid()})", CREATE_CONTAINER_CONFIG_ERROR)
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), **dict(spec.env)}
        container_id = uuid.uuid4().hex
        directory = self._dir(container_id)
        cwd = Path(spec.working_dir) if spec.working_dir else directory / "work"
        if spec.working_dir and not cwd.is_dir():
            raise RuntimeFailure(f"working dir {spec.working_dir}: no such directory", CREATE_CONTAINER_ERROR)
        executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
        if executable is None or not os.access(cwd / executable, os.X_OK):
            raise RuntimeFailure(f'exec: "{argv[0]}": executable file not found in $PATH')
        directory.mkdir(mode=0o700)
        cwd.mkdir(exist_ok=True)
        try:
            with open(directory / "output.log", "ab") as log:
                child = subprocess.Popen(["/bin/sh", "-c", _WRAPPER, str(directory / "exit_code"), *self._env, *argv],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=cwd, start_new_session=True)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeFailure(f"starting {argv[0]}: {exc}") from exc
        # This runtime reaps it with waitpid, also after a restart of the runtime object; a
        # Popen left with no returncode would warn, and reap it behind our back.
        child.returncode = 0
        record = _Record(id=container_id, name=spec.runtime_name, labels=spec.labels(), image=spec.image, argv=argv,
                         env=env, cwd=str(cwd), pid=child.pid, start_ticks=_start_ticks(child.pid) or -1,
                         boot_id=self._boot_id, started_at=time.time(), main_pid=self._main_pid(directory))
        self._save(record)
        return self._info(record)

    @staticmethod
    def _main_pid(directory: Path) -> int:
        """The command's pid, which the wrapper writes as soon as it has forked it."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int((directory / "exit_code.pid").read_text())
            time.sleep(0.002)
        return 0  # pragma: no cover - only a wrapper that cannot run gets here

    def stop(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM to the command (as Docker signals PID 1), then SIGKILL to its whole process group."""
        try:
            record = self._poll(container_id)
        except ContainerNotFound:
            return
        if record.state != RUNNING:
            return
        self._terminate(record)
        if not self._wait(container_id, grace_seconds):
            with self._lock:
                record = replace(self._load(container_id), killed=True)
                self._save(record)
            if self._alive(record):
                self._kill_main(record, signal.SIGKILL, fallback_to_group=False)  # if it left the group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, signal.SIGKILL)
            if not self._wait(container_id, self.kill_wait):
                raise RuntimeFailure(f"container {container_id}: pid {record.pid} survived SIGKILL")
        # Whatever else the command left in its process group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)

    def _terminate(self, record: _Record) -> None:
        if self._alive(record):
            self._kill_main(record, signal.SIGTERM, fallback_to_group=True)

    @staticmethod
    def _kill_main(record: _Record, sig: int, fallback_to_group: bool) -> None:
        """Signal the command; its pid is trusted only while the wrapper is its parent (never a recycled pid)."""
        with contextlib.suppress(ProcessLookupError):
            if record.main_pid and _is_child_of(record.main_pid, record.pid):
                os.kill(record.main_pid, sig)
            elif fallback_to_group and not record.main_pid:
                os.killpg(record.pid, sig)

    def _wait(self, container_id: str, timeout: float) -> bool:
        """Whether the container exited within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._poll(container_id).state == RUNNING:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    def remove(self, container_id: str) -> None:
        try:
            directory = self._dir(container_id)
        except ContainerNotFound:
            return
        if not directory.exists():
            return
        self.stop(container_id, 0)
        shutil.rmtree(directory, ignore_errors=True)

    def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        record = self._poll(container_id)
        if record.state != RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        try:
            done = subprocess.run(list(command), env=record.env, cwd=record.cwd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ExecTimeout(f"exec in {container_id}: no exit within {timeout:g}s") from None
        except OSError as exc:
            raise RuntimeFailure(f"exec in {container_id}: {exc}") from exc
        return done.returncode

    def logs(self, container_id: str, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        self._load(container_id)
        try:
            f = open(self._dir(container_id) / "output.log", "rb")  # noqa: SIM115 - the generator closes it
        except FileNotFoundError:
            raise ContainerNotFound(f"no such container: {container_id}") from None
        return self._read(f, container_id, tail, follow)

    def _read(self, f: BinaryIO, container_id: str, tail: int | None, follow: bool) -> Iterator[bytes]:
        with f:
            if tail is not None:
                f.seek(_tail_offset(f, tail))
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                if not follow or not self._running(container_id):
                    rest = f.read()  # written between the last read and the exit
                    if rest:
                        yield rest
                    return
                time.sleep(0.1)

    def _running(self, container_id: str) -> bool:
        try:
            return self._poll(container_id).state == RUNNING
        except ContainerNotFound:
            return False
