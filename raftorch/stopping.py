"""Stopping a threaded process on SIGTERM and SIGINT without deadlocking it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def stop_on_signals(stop: threading.Event, then: Callable[[], None] | None = None) -> None:
    """Set `stop` on SIGTERM and SIGINT, then call `then` (if given) in the same new thread.

    A Python signal handler runs in the main thread between two bytecodes, possibly while that
    thread holds the event's own lock (inside `Event.wait`). Setting the event there waits on
    that lock for ever, and the process then ignores every later signal (seen: controller
    managers left running after their master was killed). So the handler only starts a thread,
    which sets the event once the main thread lets go of the lock."""

    def act() -> None:
        stop.set()
        if then is not None:
            then()

    def handler(_signum: int, _frame: object) -> None:
        threading.Thread(target=act, name="stop-signal", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
