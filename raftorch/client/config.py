"""The client config (like a kubeconfig): endpoints, and the credentials to reach them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftorch import config as cfgload
from raftorch.errors import Invalid
from raftorch.rpc import INSECURE, Credentials

DEFAULT_ENDPOINTS = "127.0.0.1:2379"


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "raftorch" / "config.yaml"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    endpoints: list[str] = field(default_factory=lambda: [DEFAULT_ENDPOINTS])
    timeout: float = 5.0
    # How long a command keeps trying other masters before it gives up.
    retry_for: float = 10.0
    # The cluster CA that masters' certificates must chain to (PEM file).
    ca_file: Path | None = None
    # A client certificate and its key (PEM files), as `raftctl up` writes for its admin ...
    cert_file: Path | None = None
    key_file: Path | None = None
    # ... or a bearer token from `raftctl token create NAME --role ROLE`.
    token: str | None = None
    # Plaintext, for masters started with --insecure (benchmarks).
    insecure: bool = False

    @staticmethod
    def load(path: Path | None = None, layers: list[tuple[str, dict[str, Any]]] | None = None) -> ClientConfig:
        """From the file (relative paths in it are relative to the file), then `layers` on top."""
        path = path or default_config_path()
        base: list[tuple[str, dict[str, Any]]] = []
        if path.exists():
            values = cfgload.read_file(path)
            for key in ("ca-file", "cert-file", "key-file", "ca_file", "cert_file", "key_file"):
                if isinstance(values.get(key), str):
                    values[key] = str(path.parent / Path(values[key]).expanduser())
            base.append((f"config file {path}", values))
        return cfgload.build(ClientConfig, base + (layers or []))

    def credentials(self) -> Credentials | None:
        """TLS credentials; None when the config names no CA (the process's default
        credentials then, else plaintext, which only --insecure masters answer)."""
        if self.insecure:
            return INSECURE
        if self.ca_file is None:
            if self.token or self.cert_file:
                raise Invalid("client config: a token or certificate needs ca-file (the cluster CA) too")
            return None
        return load_credentials(self.ca_file, self.cert_file, self.key_file, self.token)


def load_credentials(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None,
                     token: str | None = None) -> Credentials:
    def read(path: Path, what: str) -> bytes:
        try:
            return path.expanduser().read_bytes()
        except OSError as exc:
            raise Invalid(f"{what}: cannot read {path}: {exc.strerror}") from None

    if (cert_file is None) != (key_file is None):
        raise Invalid("client config: cert-file and key-file go together")
    cert = read(cert_file, "cert-file") if cert_file is not None else None
    key = read(key_file, "key-file") if key_file is not None else None
    return Credentials(read(ca_file, "ca-file"), cert, key, token or None)
