"""What every raftctl command shares: the endpoints, a client, and how errors are shown."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from raftorch.client import Client
from raftorch.client.config import DEFAULT_ENDPOINTS, ClientConfig, default_config_path
from raftorch.errors import Invalid, RaftorchError, Unavailable, UnknownOutcome

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["DEFAULT_ENDPOINTS", "CliContext", "ClientConfig", "default_config_path", "get_ctx", "handle_errors"]


@dataclass
class CliContext:
    endpoints_flag: str | None
    config_path: Path
    token_flag: str | None = None
    _client: Client | None = None

    def config(self) -> ClientConfig:
        layers: list[tuple[str, dict[str, Any]]] = []
        env = os.environ.get("RAFTORCH_ENDPOINTS")
        if env:
            layers.append(("RAFTORCH_ENDPOINTS", {"endpoints": env}))
        if self.endpoints_flag:
            layers.append(("--endpoints", {"endpoints": self.endpoints_flag}))
        token = self.token_flag or os.environ.get("RAFTORCH_TOKEN")
        if token:
            # A token given on the command line speaks instead of the config's certificate.
            layers.append(("--token", {"token": token, "cert-file": None, "key-file": None}))
        cfg = ClientConfig.load(self.config_path, layers)
        if token and cfg.cert_file is not None:
            cfg = ClientConfig(cfg.endpoints, cfg.timeout, cfg.retry_for, cfg.ca_file, None, None, token,
                               cfg.insecure)
        return cfg

    def client(self) -> Client:
        if self._client is None:
            cfg = self.config()
            self._client = Client(cfg.endpoints, timeout=cfg.timeout, retry_for=cfg.retry_for,
                                  credentials=cfg.credentials())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# "127.0.0.1:2379: deployment 'x' not found": which master answered is noise once one has.
_ANSWERED_BY = re.compile(r"^\S+:\d+: ")


def one_line(err: RaftorchError) -> str:
    text = str(err)
    if not isinstance(err, Unavailable | UnknownOutcome):
        text = _ANSWERED_BY.sub("", text, count=1)
    return " ".join(text.split())


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def handle_errors(fn: F) -> F:
    """One clear line and a non-zero exit code for every error a user can cause or meet."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RaftorchError as err:
            fail(one_line(err), err.exit_code)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BrokenPipeError:
            raise SystemExit(0) from None
        except (SystemExit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:
            # A bug, not a user's mistake; RAFTORCH_DEBUG=1 shows the traceback.
            if os.environ.get("RAFTORCH_DEBUG"):
                raise
            fail(f"internal error: {type(err).__name__}: {' '.join(str(err).split())}", 1)

    return wrapper  # type: ignore[return-value]


def get_ctx() -> CliContext:
    obj = click.get_current_context().find_root().obj
    if not isinstance(obj, CliContext):
        raise Invalid("raftctl context missing")
    return obj
