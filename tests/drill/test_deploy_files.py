"""The deploy/ files on their own: scripts render configs the programs accept, units parse,
and the Vagrantfile validates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raftorch import config as cfgload
from raftorch.agent.config import AgentConfig
from raftorch.local.netns import deploy_dir
from raftorch.master.config import MasterConfig
from tests.drill._support import unusable

DEPLOY = deploy_dir()
SECRET = "a-cluster-secret-for-tests"
TOKEN = "abcdef12.0123456789abcdef0123456789"
CA_HASH = "sha256:" + "ab" * 32


def _script(tmp: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "RAFTORCH_PREFIX": sys.prefix, "RAFTORCH_ETC": str(tmp / "etc"),
            "RAFTORCH_DATA": str(tmp / "var"), "RAFTORCH_NO_SYSTEMD": "1", **env}
    return subprocess.run(["bash", str(DEPLOY / "provision" / script), *args], env=full, capture_output=True,
                          text=True, timeout=60, check=False)


def test_provisioned_configs_are_accepted_by_master_and_agent(tmp_path: Path) -> None:
    assert _script(tmp_path, "install.sh", "--no-packages", "--no-venv", "--secret", SECRET).returncode == 0
    assert (tmp_path / "etc" / "cluster-secret").read_text().strip() == SECRET
    master = _script(tmp_path, "master.sh", "m1", "10.0.0.11", "m2=10.0.0.12", "m3=10.0.0.13:2390",
                     RAFTORCH_NODE_GRACE="3", RAFTORCH_EVICTION_TIMEOUT="4")
    assert master.returncode == 0, master.stderr
    assert master.stdout.split() == [f"{sys.prefix}/bin/raftorch-master", "--config", str(tmp_path / "etc/master.yaml")]
    cfg = cfgload.build(MasterConfig, [("file", cfgload.read_file(tmp_path / "etc/master.yaml"))])
    cfg.validate()
    assert cfg.read_secret() == SECRET
    assert (cfg.name, cfg.client_addr, cfg.peer_addr) == ("m1", "10.0.0.11:2379", "10.0.0.11:2380")
    assert cfg.peers == {"m2": "10.0.0.12:2380", "m3": "10.0.0.13:2390"}
    assert (cfg.node_grace, cfg.eviction_timeout) == (3.0, 4.0)
    assert cfg.data_dir == tmp_path / "var/master"

    assert cfg.pki_dir == tmp_path / "etc/pki" and cfg.bootstrap_token_file == tmp_path / "etc/join-tokens"
    # The first master's script made the CA, and an admin's client config using it.
    admin = cfgload.read_file(tmp_path / "etc/admin.yaml")
    assert admin["endpoints"] == ["10.0.0.11:2379"] and Path(admin["ca-file"]).read_bytes() == \
        (tmp_path / "etc/pki/ca.crt").read_bytes()
    refused = _script(tmp_path, "agent.sh", "w1", "10.0.0.21", "10.0.0.11")
    assert refused.returncode == 2 and "RAFTORCH_JOIN_TOKEN" in refused.stderr
    agent = _script(tmp_path, "agent.sh", "w1", "10.0.0.21", "10.0.0.11,10.0.0.12", "10.0.0.13:2399",
                    RAFTORCH_RUNTIME="process", RAFTORCH_JOIN_TOKEN=TOKEN, RAFTORCH_CA_HASH=CA_HASH)
    assert agent.returncode == 0, agent.stderr
    assert agent.stdout.split() == [f"{sys.prefix}/bin/raftorch-agent", "--config", str(tmp_path / "etc/agent.yaml")]
    acfg = cfgload.build(AgentConfig, [("file", cfgload.read_file(tmp_path / "etc/agent.yaml"))])
    acfg.validate()
    assert acfg.masters == ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2399"]
    assert (acfg.name, acfg.node_ip, acfg.runtime, acfg.agent_port) == ("w1", "10.0.0.21", "process", 10250)
    assert (acfg.join_token, acfg.ca_hash, acfg.pki_dir) == (TOKEN, CA_HASH, tmp_path / "etc/pki")


@pytest.mark.parametrize(("script", "args", "message"), [
    ("master.sh", ["m1"], "Usage"),
    ("master.sh", ["m1", "10.0.0.11", "m1=10.0.0.12"], "this master itself"),
    ("master.sh", ["m1", "10.0.0.11", "10.0.0.12"], "expected NAME=HOST"),
    ("agent.sh", ["w1", "10.0.0.21"], "Usage"),
    ("install.sh", ["--no-packages", "--no-venv", "--secret", "short"], "16 characters"),
    ("install.sh", ["--no-packages", "--no-venv"], "no cluster secret"),
])
def test_scripts_refuse_bad_input(tmp_path: Path, script: str, args: list[str], message: str) -> None:
    if script != "install.sh":
        assert _script(tmp_path, "install.sh", "--no-packages", "--no-venv", "--secret", SECRET).returncode == 0
    done = _script(tmp_path, script, *args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize("unit", ["raftorch-master.service", "raftorch-agent.service"])
def test_unit_files(tmp_path: Path, unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    program = unit.removesuffix(".service")
    assert f"ExecStart=/opt/raftorch/bin/{program} --config /etc/raftorch/{program[9:]}.yaml" in text
    assert "Restart=always" in text and "LimitNOFILE=" in text and "WantedBy=multi-user.target" in text
    if shutil.which("systemd-analyze") is None:
        return
    # Rendered for this machine's virtualenv, so the binary exists for `verify`.
    rendered = tmp_path / unit
    rendered.write_text(text.replace("/opt/raftorch", sys.prefix))
    done = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True,
                          timeout=60, check=False)
    complaints = [line for line in done.stderr.splitlines() if unit in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_vagrantfile_validates(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        unusable("vagrant is not installed (Debian package: vagrant)")
    env = {**os.environ, "VAGRANT_CWD": str(DEPLOY.parent), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
           "VAGRANT_HOME": str(tmp_path / "home"), "RAFTORCH_SECRET": SECRET}
    done = subprocess.run(["vagrant", "validate", "-p"], env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout
