"""Who injects the faults: something that can kill, restart and cut off a cluster's hosts.

A drill talks to the cluster only through its client endpoints, and asks an operator for the
faults. `NetnsCluster` is one (it can also cut network traffic); the others here drive masters
started by `LocalMasters`, by `raftctl up`, or by shell command templates for remote hosts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from raftorch.agent.hollow import HollowFleet
from raftorch.client import Client, load_credentials, set_default_credentials
from raftorch.errors import Invalid
from raftorch.local.agents import LocalAgents
from raftorch.local.cluster import LocalCluster, ProcessEntry, _alive
from raftorch.local.masters import LocalMasters


class Unsupported(Invalid):
    """This operator cannot inject that fault."""


class Operator(Protocol):
    def kill_master(self, name: str) -> None: ...

    def start_master(self, name: str) -> None: ...

    def isolate(self, name: str) -> None: ...

    def heal(self, name: str) -> None: ...

    def lose_worker(self, name: str) -> None: ...

    def restore_worker(self, name: str) -> None: ...


def named_endpoints(endpoints: list[str], timeout: float = 5.0) -> dict[str, str]:
    """Master name -> client address, as the cluster lists its members."""
    with Client(endpoints, timeout=timeout, retry_for=timeout) as c:
        _, members = c.member_list()
    return {m.name: m.client_addr for m in members if m.client_addr}


class LocalMastersOperator:
    """Masters of a `LocalMasters`, with hollow nodes or local agents as the workers."""

    def __init__(self, masters: LocalMasters, fleet: HollowFleet | None = None,
                 agents: LocalAgents | None = None) -> None:
        self.masters = masters
        self.fleet = fleet
        self.agents = agents

    @property
    def endpoints(self) -> dict[str, str]:
        return {m.name: m.client_addr for m in self.masters.masters.values()}

    def kill_master(self, name: str) -> None:
        self.masters.kill(name)

    def start_master(self, name: str) -> None:
        self.masters.start(name)

    def isolate(self, name: str) -> None:
        raise Unsupported("masters sharing one address cannot be cut off from each other; "
                          "use the network-namespace cluster (raftorch.local.netns) for this drill")

    heal = isolate

    def lose_worker(self, name: str) -> None:
        if self.fleet is not None and name in self.fleet.names:
            self.fleet.silence(name)
        elif self.agents is not None and name in self.agents.agents:
            self.agents.kill(name)
        else:
            raise Unsupported(f"no hollow node or local agent named {name!r}")

    def restore_worker(self, name: str) -> None:
        if self.fleet is not None and name in self.fleet.names:
            self.fleet.revive(name)
        elif self.agents is not None and name in self.agents.agents:
            self.agents.start(name)


class LocalClusterOperator:
    """The processes of a `raftctl up` cluster, found through its state directory."""

    def __init__(self, data_dir: Path) -> None:
        self.cluster = LocalCluster(data_dir)
        if self.cluster.load() is None:
            raise Invalid(f"no local cluster state in {data_dir} (start one with `raftctl up`)")
        self.secret = data_dir / "cluster-secret"
        admin = self.cluster.admin_files()
        set_default_credentials(load_credentials(admin.ca_file, admin.cert_file, admin.key_file))

    @property
    def endpoints(self) -> dict[str, str]:
        state = self.cluster.load()
        assert state is not None
        return {m.name: m.client_addr for m in state.masters}

    def _entry(self, name: str) -> ProcessEntry:
        state = self.cluster.load()
        assert state is not None
        for entry in state.masters + state.agents:
            if entry.name == name:
                return entry
        raise Invalid(f"the local cluster has no master or node named {name!r}")

    def _kill(self, name: str) -> None:
        pid = self._entry(name).pid
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _start(self, name: str) -> None:
        state = self.cluster.load()
        assert state is not None
        for entry in state.masters + state.agents:
            if entry.name == name and not _alive(entry.pid):
                if entry.kind == "master":
                    cmd = self.cluster._master_cmd(state, entry, self.secret)
                else:
                    cmd = self.cluster._agent_cmd(state, entry, None)
                entry.pid = self.cluster._spawn(name, cmd)
        self.cluster.save(state)

    kill_master = _kill
    start_master = _start
    lose_worker = _kill
    restore_worker = _start

    def isolate(self, name: str) -> None:
        raise Unsupported("a `raftctl up` cluster runs every master on 127.0.0.1: it cannot be partitioned")

    heal = isolate


class CommandOperator:
    """Faults by shell commands, `{name}` replaced by the master's or node's name, e.g.
    `ssh {name} sudo systemctl kill -s KILL raftorch-master`."""

    def __init__(self, **templates: str | None) -> None:
        self.templates = {k: v for k, v in templates.items() if v}

    def _run(self, action: str, name: str) -> None:
        template = self.templates.get(action)
        if template is None:
            raise Unsupported(f"no command given to {action.replace('_', ' ')} (--{action.replace('_', '-')}-cmd)")
        done = subprocess.run(template.format(name=name), shell=True, check=False, timeout=120)
        if done.returncode != 0:
            raise Invalid(f"{action} command for {name} exited with {done.returncode}")

    def kill_master(self, name: str) -> None:
        self._run("kill_master", name)

    def start_master(self, name: str) -> None:
        self._run("start_master", name)

    def isolate(self, name: str) -> None:
        self._run("isolate", name)

    def heal(self, name: str) -> None:
        self._run("heal", name)

    def lose_worker(self, name: str) -> None:
        self._run("lose_worker", name)

    def restore_worker(self, name: str) -> None:
        self._run("restore_worker", name)
