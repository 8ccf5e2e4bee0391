"""A CronJob's time zone is bounded before it reaches the file system."""

from __future__ import annotations

from raftorch.objects.workloads import time_zone_error


def test_an_overlong_time_zone_is_refused_with_a_message() -> None:
    error = time_zone_error("k" * 1024)
    assert error is not None and "at most 64 characters" in error


def test_known_and_unknown_zones() -> None:
    assert time_zone_error("Europe/Paris") is None
    assert time_zone_error("Mars/Olympus") is not None
