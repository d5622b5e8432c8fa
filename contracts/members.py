"""Members: `member.upserted`, the member directory fed by HR systems (key `member_id`).

The delivery service owns the directory: it reaches members by it (one-time codes, notifications) and
keeps each member's preferred channel and the notifications they opted out of."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.envelope import EventData
from contracts.values import Channel, Email, Identifier, Locale, Name, Phone, UtcDatetime


class NotificationKind(StrEnum):
    """What a member notification is about; a member may opt out of each kind."""

    POINTS_CREDITED = "points_credited"
    POINTS_EXPIRING = "points_expiring"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_ON_HOLD = "order_on_hold"
    EXPIRY_EXTENDED = "expiry_extended"
    TICKET_UPDATED = "ticket_updated"


class EmploymentStatus(StrEnum):
    ACTIVE = "active"
    ON_LEAVE = "on_leave"
    LEFT = "left"


class MemberUpserted(EventData):
    """A member's directory entry, created or changed by the HR system. A field left out (or null)
    keeps the value the directory holds; `opted_out`, when given, replaces the whole list."""

    member_id: Identifier
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    locale: Locale | None = None
    preferred_channel: Channel | None = Field(default=None, description="the channel notifications use")
    opted_out: list[NotificationKind] | None = Field(
        default=None, description="notification kinds the member does not want", max_length=20
    )
    employment_status: EmploymentStatus | None = None
    changed_at: UtcDatetime | None = Field(
        default=None,
        description="when the HR system changed the entry: an upsert older than the one applied is ignored",
    )
