"""What the service's use cases share: settings and the clock. Routes take the pool as
`chassis.deps.DbPool`."""

from __future__ import annotations

from dataclasses import dataclass, field

from chassis.clock import Clock, SystemClock
from services.support.settings import SupportSettings

PRODUCER = "support"
SLA_MONITOR = "system:sla-monitor"
DELIVERY_MONITOR = "system:delivery-monitor"


@dataclass
class SupportContext:
    settings: SupportSettings
    clock: Clock = field(default_factory=SystemClock)
