"""Writing events without slowing the paths that make them.

Controllers hand events to an `EventWriter`: `record` only puts the event in a bounded table
(a repeat replaces the pending copy, so a burst costs one write) and returns. A thread writes
the table out in batches; when it is full, new events are dropped and counted
(`raftorch_events_total{outcome="dropped"}`), never waited for. Writes are rate-limited (a token
bucket, WRITE_RATE per second), so events never take the store's throughput from binding.
The same thread deletes events
older than the TTL, so they do not grow the store without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from typing import Protocol

import structlog
from google.protobuf.message import Message

from raftorch.api.v1 import objects_pb2
from raftorch.errors import AlreadyExists, NotFound, RaftorchError
from raftorch.master.metrics import MasterMetrics
from raftorch.objects import EVENT, Kind, parse_time
from raftorch.objects.events import EventCorrelator, Ref, merge_repeat

log = structlog.get_logger("raftorch.events")

DEFAULT_TTL = 3600.0
MAX_PENDING = 1000
# Events written per second at most, with a burst: a burst of pods (and its Scheduled and
# SuccessfulCreate events) must not halve the binding rate; the rest wait, coalesced, or drop.
WRITE_RATE = 50.0
WRITE_BURST = 100
# One flush a second: its events go out together, in one or two Raft entries (one entry is in
# flight at a time, and each is synced on a majority), not a few entries every quarter second
# ahead of the scheduler's bindings.
FLUSH_PERIOD = 1.0
SWEEP_PERIOD = 60.0
WRITE_WAIT = 5.0


class EventStore(Protocol):
    """What events need of the store: the registry in the master, the Resources API in the
    controller-manager process."""

    def get(self, kind: Kind, namespace: str, name: str) -> Message: ...

    def list_kind(self, kind: Kind, namespace: str = "") -> tuple[list[Message], int]: ...

    def create(self, msg: Message, request_id: str = "", fence_term: int = 0) -> Future[Message]: ...

    def update(self, msg: Message, status_only: bool = False, request_id: str = "",
               fence_term: int = 0) -> Future[Message]: ...

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: int = 0,
               request_id: str = "", fence_term: int = 0) -> Future[Message]: ...


def upsert_event(registry: EventStore, event: objects_pb2.Event, fence_term: int = 0) -> Future[Message]:
    """Store `event`, or fold it into the stored event of the same name."""
    try:
        current = registry.get(EVENT, event.metadata.namespace, event.metadata.name)
    except NotFound:
        return registry.create(event, fence_term=fence_term)
    assert isinstance(current, objects_pb2.Event)
    merged = merge_repeat(current, event)
    return registry.update(merged, fence_term=fence_term)


def expired(events: list[Message], now: float, ttl: float) -> list[objects_pb2.Event]:
    """Events last seen more than `ttl` seconds before `now`."""
    out = []
    for ev in events:
        if not isinstance(ev, objects_pb2.Event):
            continue
        when = ev.last_timestamp or ev.first_timestamp or ev.metadata.creation_timestamp
        try:
            if now - parse_time(when) > ttl:
                out.append(ev)
        except RaftorchError:
            out.append(ev)  # no readable time: nobody can tell how old it is
    return out


class EventWriter:
    def __init__(self, registry: EventStore, metrics: MasterMetrics, fence_term: int = 0,
                 ttl: float = DEFAULT_TTL, max_pending: int = MAX_PENDING,
                 wall: Callable[[], float] = time.time, rate: float = WRITE_RATE, burst: int = WRITE_BURST) -> None:
        self.registry = registry
        self.fence_term = fence_term
        self.ttl = ttl
        self.max_pending = max_pending
        self.wall = wall
        self._lock = threading.Lock()
        self._pending: dict[str, objects_pb2.Event] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._filled_at = time.monotonic()
        self._recorded = metrics.events.labels("recorded")
        self._dropped = metrics.events.labels("dropped")
        self._written = metrics.events.labels("written")
        self._failed = metrics.events.labels("failed")
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def record(self, event: objects_pb2.Event) -> None:
        """Queue an event for writing; never blocks on the store."""
        name = event.metadata.name
        with self._lock:
            if name not in self._pending and len(self._pending) >= self.max_pending:
                self._dropped.inc()
                return
            self._pending[name] = event
        self._recorded.inc()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self.flush()
            now = time.monotonic()
            if now - self._last_sweep >= SWEEP_PERIOD and not self._stop.is_set():
                self._last_sweep = now
                self.sweep()
            self._stop.wait(FLUSH_PERIOD)

    def _take_tokens(self) -> int:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        allowed = int(self._tokens)
        return allowed

    def flush(self) -> None:
        allowed = self._take_tokens()
        with self._lock:
            names = list(self._pending)[:allowed]
            batch = {name: self._pending.pop(name) for name in names}
        self._tokens -= len(batch)
        if self._pending:
            self._wake.set()
        # A first occurrence is created without reading first (a read is a round trip, and in the
        # controller-manager process a linearizable one); the creates go out together. One that
        # exists after all, and every repeat, is read and folded into the stored event.
        first = [e for e in batch.values() if e.count <= 1]
        repeats = [e for e in batch.values() if e.count > 1]
        created = self._write(first, lambda e: self.registry.create(e, fence_term=self.fence_term))
        repeats += [e for e, f in zip(first, created, strict=True)
                    if f is not None and f.done() and isinstance(f.exception(), AlreadyExists)]
        created = [f for f in created if not (f is not None and f.done() and isinstance(f.exception(), AlreadyExists))]
        futures = created + self._write(repeats, lambda e: upsert_event(self.registry, e, self.fence_term))
        for f in futures:
            if f is not None and f.done() and f.exception() is None:
                self._written.inc()
            else:
                self._failed.inc()

    def _write(self, events: list[objects_pb2.Event], write: Callable[[objects_pb2.Event], Future[Message]]
               ) -> list[Future[Message] | None]:
        """Start every write, then wait for them together; None where one could not start."""
        futures: list[Future[Message] | None] = []
        for event in events:
            try:
                futures.append(write(event))
            except RaftorchError as err:
                futures.append(None)
                log.debug("event_not_written", event=event.metadata.name, error=str(err))
        started = [f for f in futures if f is not None]
        if started:
            wait_all(started, timeout=WRITE_WAIT)
        return futures

    def sweep(self) -> None:
        """Delete events older than the TTL."""
        try:
            events, _ = self.registry.list_kind(EVENT)
        except RaftorchError:
            return
        futures = []
        for ev in expired(events, self.wall(), self.ttl):
            try:
                futures.append(self.registry.delete(EVENT, ev.metadata.namespace, ev.metadata.name,
                                                    ev.metadata.resource_version, fence_term=self.fence_term))
            except RaftorchError:
                continue
        if futures:
            wait_all(futures, timeout=WRITE_WAIT)
            log.info("events_expired", count=len(futures))


class EventRecorder:
    """What controllers call: correlates repeats, then hands the event to the writer."""

    def __init__(self, writer: EventWriter, wall: Callable[[], float] = time.time, enabled: bool = True) -> None:
        self.writer = writer
        self.enabled = enabled
        self.wall = wall
        self._correlators: dict[str, EventCorrelator] = {}
        self._lock = threading.Lock()

    def emit(self, source: str, ref: Ref, reason: str, message: str, type_: str = "Normal") -> None:
        if not self.enabled:
            return
        with self._lock:
            correlator = self._correlators.get(source)
            if correlator is None:
                correlator = self._correlators[source] = EventCorrelator(source)
            event = correlator.observe(ref, reason, message, type_, self.wall())
        self.writer.record(event)
