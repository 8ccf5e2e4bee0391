"""The client config carries credentials, like a kubeconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftorch.auth import pki
from raftorch.client import ClientConfig
from raftorch.errors import Invalid


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    admin = pki.ensure_admin(tmp_path / "pki")
    config = tmp_path / "config.yaml"
    config.write_text("endpoints: [127.0.0.1:1]\nca-file: pki/ca.crt\n"
                      "cert-file: pki/admin.crt\nkey-file: pki/admin.key\n")
    creds = ClientConfig.load(config).credentials()
    assert creds is not None and creds.ca_pem == admin.ca_file.read_bytes()
    assert creds.cert_pem == admin.cert_file.read_bytes() and creds.token is None


def test_token_and_plaintext_configs(tmp_path: Path) -> None:
    pki.ensure_admin(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("ca-file: ca.crt\ntoken: abcdef12.0123456789abcdef0123\n")
    creds = ClientConfig.load(config).credentials()
    assert creds is not None and creds.token == "abcdef12.0123456789abcdef0123" and creds.cert_pem is None
    config.write_text("endpoints: [127.0.0.1:1]\n")
    assert ClientConfig.load(config).credentials() is None  # the process default, else plaintext
    config.write_text("token: abcdef12.0123456789abcdef0123\n")
    with pytest.raises(Invalid, match="needs ca-file"):
        ClientConfig.load(config).credentials()
    config.write_text("ca-file: missing.crt\n")
    with pytest.raises(Invalid, match="cannot read"):
        ClientConfig.load(config).credentials()
