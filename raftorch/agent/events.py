"""The agent's events about its pods (Pulling, Pulled, Created, Started, Killing, BackOff,
Unhealthy, Failed): correlated here, sent to a master in batches by a thread of their own.

`emit` never waits on the network: when the masters are slow or away, pending events beyond
a bound are dropped and counted, and the pods go on being run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from prometheus_client import Counter

from raftorch.api.v1 import agents_pb2, objects_pb2
from raftorch.errors import RaftorchError
from raftorch.objects.events import EventCorrelator, Ref

log = structlog.get_logger("raftorch.agent")

MAX_PENDING = 500
SEND_PERIOD = 0.5
MAX_BATCH = 100


class AgentEvents:
    def __init__(self, node: str, send: Callable[[agents_pb2.ReportEventsRequest], object],
                 outcomes: Counter, wall: Callable[[], float] = time.time) -> None:
        self.node = node
        self._send = send
        self.wall = wall
        self._correlator = EventCorrelator(f"agent/{node}")
        self._lock = threading.Lock()
        self._pending: dict[str, objects_pb2.Event] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._dropped = outcomes.labels("dropped")
        self._sent = outcomes.labels("sent")
        self._failed = outcomes.labels("failed")
        self._thread = threading.Thread(target=self._run, name="agent-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def emit(self, pod: objects_pb2.Pod, reason: str, message: str, type_: str = "Normal") -> None:
        with self._lock:
            event = self._correlator.observe(Ref.of(pod), reason, message, type_, self.wall())
            name = event.metadata.name
            if name not in self._pending and len(self._pending) >= MAX_PENDING:
                self._dropped.inc()
                return
            self._pending[name] = event
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.flush()
            self._stop.wait(SEND_PERIOD)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            names = list(self._pending)[:MAX_BATCH]
            batch = [self._pending.pop(n) for n in names]
        if not batch:
            return
        try:
            self._send(agents_pb2.ReportEventsRequest(node=self.node, events=batch))
            self._sent.inc(len(batch))
        except RaftorchError as err:
            self._failed.inc(len(batch))
            log.debug("events_not_sent", events=len(batch), error=str(err))
        if self._pending:
            self._wake.set()
