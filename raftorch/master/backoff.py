"""How long a failed control loop waits before it runs again."""

from __future__ import annotations

import math
from collections.abc import Callable

START = 0.1
CAP = 5.0
HEALTHY = 30.0


class Backoff:
    """A delay that doubles from `start` up to `cap` with each failure, and starts over at
    `start` once the work has gone `healthy` seconds without failing.

    A loop that fails once in a long while is retried at once; one that fails on every pass
    costs at most one try every `cap` seconds instead of spinning.
    """

    def __init__(self, clock: Callable[[], float], start: float = START, cap: float = CAP,
                 healthy: float = HEALTHY) -> None:
        self._clock = clock
        self._start = start
        self._cap = cap
        self._healthy = healthy
        self.delay = 0.0
        self.failures = 0
        self._last_failure = -math.inf
        self._not_before = -math.inf

    def failed(self) -> float:
        """Record a failure; returns the delay before the next try."""
        now = self._clock()
        healthy_since = now - self._last_failure >= self._healthy
        self.delay = self._start if healthy_since else min(self.delay * 2, self._cap)
        self.failures += 1
        self._last_failure = now
        self._not_before = now + self.delay
        return self.delay

    def ready(self) -> bool:
        return self._clock() >= self._not_before
