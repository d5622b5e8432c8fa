"""What the service's use cases share: settings, the clock and the database pool (set at startup)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from services.support.clock import Clock, SystemClock
from services.support.settings import SupportSettings

PRODUCER = "support"
SLA_MONITOR = "system:sla-monitor"
DELIVERY_MONITOR = "system:delivery-monitor"


@dataclass
class SupportContext:
    settings: SupportSettings
    clock: Clock = field(default_factory=SystemClock)
    pool: asyncpg.Pool | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the support service has not started: no database pool yet")
        return self.pool
