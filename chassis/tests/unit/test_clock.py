"""The service clock and the fake one tests move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chassis.clock import SYSTEM_CLOCK, Clock, SystemClock
from chassis.testing import FakeClock

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_the_system_clock_tells_the_current_time_in_utc() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert before <= now <= datetime.now(UTC)
    assert now.utcoffset() == timedelta(0)
    assert isinstance(SYSTEM_CLOCK, SystemClock)


def test_a_fake_clock_stands_still_until_the_test_moves_it() -> None:
    clock: Clock = FakeClock(START)
    assert clock.now() == clock.now() == START


def test_a_fake_clock_advances_by_a_delta_or_is_set_to_a_moment() -> None:
    clock = FakeClock(START)
    assert clock.advance(hours=1, minutes=30) == START + timedelta(hours=1, minutes=30)
    assert clock.now() == START + timedelta(hours=1, minutes=30)
    clock.set(START - timedelta(days=2))
    assert clock.now() == START - timedelta(days=2)
