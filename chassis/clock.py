"""Where a service reads the time: a `Clock` it is given, so that tests can move time (pauses, warnings,
breaches, expiries) with `chassis.testing.FakeClock` instead of waiting for it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK: Final = SystemClock()
