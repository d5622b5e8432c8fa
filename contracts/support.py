"""Support: `support.resend_requested` (an agent's request) and `support.sla_breached` (a fact).

SLA warnings and breaches share one topic, told apart by `kind`: one subscription sees a ticket's
whole SLA story in order (warning, then breach), keyed by `ticket_id`.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from contracts.envelope import EventData
from contracts.values import Actor, Identifier, Text, UtcDatetime


class SupportResendRequested(EventData):
    """An agent asks delivery to send an order's voucher again (to the details delivery holds)."""

    order_id: uuid.UUID
    delivery_id: uuid.UUID | None = Field(default=None, description="absent: the order's latest delivery")
    ticket_id: Identifier | None = None
    member_id: Identifier | None = Field(default=None, description="for the member's audit log")
    reason: Text = Field(min_length=1)
    requested_by: Actor


class TicketPriority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class TicketCategory(StrEnum):
    REDEMPTION_FAILURE = "redemption_failure"
    MALFUNCTIONING_CODE = "malfunctioning_code"
    MISSING_DELIVERY = "missing_delivery"
    OTHER = "other"


class SlaTarget(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class SlaAlertKind(StrEnum):
    """`warning`: the target is close and not met yet; `breach`: the target passed unmet."""

    WARNING = "warning"
    BREACH = "breach"


class SupportSlaBreached(EventData):
    """A ticket's SLA target is about to be missed (`warning`) or was missed (`breach`)."""

    ticket_id: Identifier
    kind: SlaAlertKind
    priority: TicketPriority
    category: TicketCategory
    target: SlaTarget
    due_at: UtcDatetime
    breached_at: UtcDatetime | None = Field(default=None, description="for kind `breach`")
    order_id: uuid.UUID | None = None
    assignee: Actor | None = None

    @model_validator(mode="after")
    def _breach_has_its_time(self) -> Self:
        if (self.kind is SlaAlertKind.BREACH) != (self.breached_at is not None):
            raise ValueError("breached_at is set exactly for kind `breach`")
        return self
