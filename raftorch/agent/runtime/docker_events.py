"""Docker's event stream for one node's containers, read in a thread of its own.

It tells the agent at once when a container exits or disappears (instead of the agent noticing
on its next poll), carries the exit into the runtime's cache (no inspect to see it), and tells
a kill sent from outside (`docker kill`, `docker stop`) from a container that ended on its own:
Docker emits a `kill` event for signals sent through its API, and none when the process exits
or crashes. Kills of the agent's own stops and removals are marked `ours` beforehand and do not
count. While the stream is down (`live` false) the agent falls back on listing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from raftorch.agent.runtime.base import LABEL_MANAGED, LABEL_NODE

__all__ = ["DockerEvents"]

log = structlog.get_logger("raftorch.agent.docker")

_RETRY_SECONDS = 1.0
# Kept this long after a container's destroy event, in case a late list still shows it.
_FORGET_SECONDS = 60.0
_LIST_LAG_SECONDS = 1.0


class DockerEvents:
    def __init__(self, client: Any, node: str, on_die: Callable[[str, int, float, bool, bool], None],
                 changed: Callable[[], None]) -> None:
        self._client = client
        self._filters = {"type": ["container"], "label": [f"{LABEL_MANAGED}=true", f"{LABEL_NODE}={node}"]}
        self._on_die = on_die
        self._changed = changed
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stream: Any = None
        self._live = threading.Event()
        self._ours: set[str] = set()  # the agent stops or removes these: their kill events are its own
        self._killed: set[str] = set()  # a kill event came from someone else
        self._oom: set[str] = set()
        self._died: dict[str, float] = {}  # when the die event came (monotonic)
        self._destroyed: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name=f"docker-events {node}", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return self._live.is_set()

    def wait_live(self, timeout: float) -> bool:
        return self._live.wait(timeout)

    def ours(self, container_id: str) -> None:
        with self._lock:
            self._ours.add(container_id)

    def was_killed(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._killed

    def died(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._died

    def died_lately(self, container_id: str) -> bool:
        """The die event came less than a second ago: a list may still show the container running
        (the daemon announces the exit before its list view has it)."""
        with self._lock:
            at = self._died.get(container_id)
        return at is not None and time.monotonic() - at < _LIST_LAG_SECONDS

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        since: str | None = None
        while not self._closed.is_set():
            try:
                self._stream = self._client.api.events(decode=True, since=since, filters=self._filters)
                if self._closed.is_set():
                    break
                self._live.set()
                self._changed()  # anything may have happened while the stream was down
                for event in self._stream:
                    nanos = int(event.get("timeNano") or 0)
                    if nanos:
                        since = f"{nanos // 10**9}.{nanos % 10**9:09d}"
                    self._record(event, nanos / 1e9 if nanos else time.time())
            except Exception as exc:  # the daemon went away, or close() cut the stream
                if not self._closed.is_set():
                    log.warning("docker_events_lost", error=str(exc))
            finally:
                self._live.clear()
                with contextlib.suppress(Exception):
                    if self._stream is not None:
                        self._stream.close()
            if not self._closed.is_set():
                self._changed()
            self._closed.wait(_RETRY_SECONDS)

    def _record(self, event: Mapping[str, Any], at: float) -> None:
        action = str(event.get("Action") or event.get("status") or "").split(":")[0]
        actor = event.get("Actor") or {}
        container_id = str(actor.get("ID") or event.get("id") or "")
        if not container_id:
            return
        if action == "kill":
            with self._lock:
                if container_id not in self._ours:
                    self._killed.add(container_id)
        elif action == "oom":
            with self._lock:
                self._oom.add(container_id)
        elif action == "die":
            attributes = actor.get("Attributes") or {}
            try:
                exit_code = int(attributes.get("exitCode", "0"))
            except ValueError:
                exit_code = 0
            with self._lock:
                killed, oom = container_id in self._killed, container_id in self._oom
            self._on_die(container_id, exit_code, at, killed, oom)
            with self._lock:
                self._died[container_id] = time.monotonic()
            self._changed()
        elif action == "destroy":
            with self._lock:
                self._destroyed[container_id] = at
                for gone in [i for i, t in self._destroyed.items() if t < at - _FORGET_SECONDS]:
                    del self._destroyed[gone]
                    for ids in (self._ours, self._killed, self._oom):
                        ids.discard(gone)
                    self._died.pop(gone, None)
            self._changed()
