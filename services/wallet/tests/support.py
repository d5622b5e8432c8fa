"""What the wallet's tests share: a clock the test moves, and envelopes as other services send them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.envelope import Envelope, EventData


@dataclass
class FakeClock:
    """The ledger's, dashboard's and expiry job's idea of now; tests move it."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 15, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def event(topic: str, data: EventData, producer: str = "test", **kw: Any) -> Envelope[Any]:
    return Envelope.new(event_type=topic, producer=producer, data=data, **kw)
