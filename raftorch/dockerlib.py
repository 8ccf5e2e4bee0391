"""Docker SDK errors in raftorch's terms: one translation for every module that talks to Docker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors

from raftorch.errors import Internal, RaftorchError, Unavailable


def explain(exc: BaseException) -> str:
    """The daemon's own words for an error, without the SDK's wrapping."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc).strip()


@contextlib.contextmanager
def translated(what: str, *, not_found: type[RaftorchError] | None = None,
               failure: type[RaftorchError] = Internal, sdk_failure: type[RaftorchError] | None = None,
               unreachable: type[RaftorchError] = Unavailable) -> Iterator[None]:
    """Docker's errors as raftorch's: the daemon's refusals (`failure`), the SDK's own errors
    (`sdk_failure`, by default the same), an unreachable daemon (`unreachable`).
    Order matters: APIError is both a DockerException and an OSError."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise (not_found or failure)(f"{what}: {explain(exc)}") from exc
    except docker.errors.APIError as exc:
        raise failure(f"{what}: {explain(exc)}") from exc
    except docker.errors.DockerException as exc:
        raise (sdk_failure or failure)(f"{what}: {explain(exc)}") from exc
    except OSError as exc:
        raise unreachable(f"{what}: the Docker daemon cannot be reached: {exc}") from exc
