"""A stop signal that arrives while the main thread holds the stop event's lock still stops."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from raftorch.stopping import stop_on_signals


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_handlers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_main_thread_holds_the_events_lock_sets_it(sig: signal.Signals) -> None:
    stop = threading.Event()
    called = threading.Event()
    stop_on_signals(stop, then=called.set)
    # Event.wait holds this lock between its waits; a handler that set the event right there
    # waited for the lock its own thread held, for ever.
    with stop._cond:  # type: ignore[attr-defined]
        os.kill(os.getpid(), sig)
        handled = sum(range(1000))  # the handler runs between these bytecodes
        assert not stop.is_set()
    assert handled and stop.wait(30) and called.wait(30)
