"""Delivery: `delivery.requested`, `delivery.message_requested` (requests, the only topics with
contact details), and `delivery.succeeded` / `delivery.failed` (facts, ids only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from contracts.envelope import EventData
from contracts.members import NotificationKind
from contracts.values import Channel, Email, Identifier, Locale, Name, Phone, Text

TemplateParam = Annotated[str, StringConstraints(max_length=2000)]


def _missing_contact(channel: Channel, email: str | None, phone: str | None) -> str | None:
    if channel is Channel.EMAIL and email is None:
        return "the email channel needs an email address"
    if channel is not Channel.EMAIL and phone is None:
        return f"the {channel} channel needs a phone number"
    return None


class DeliveryRequested(EventData):
    """Send an order's voucher to its recipient. Delivery joins this with `voucher.issued` by
    `order_id`, whichever arrives first, and sends once it has both and the order is not cancelled."""

    order_id: uuid.UUID
    booking_id: Identifier
    member_id: Identifier
    campaign_id: Identifier
    channel: Channel
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    locale: Locale = "en"
    template: Identifier | None = Field(default=None, description="absent: the channel's voucher template")
    test: bool = Field(default=False, description="a UAT test order: the message is marked as a test")

    @model_validator(mode="after")
    def _reachable_on_channel(self) -> Self:
        problem = _missing_contact(self.channel, self.email, self.phone)
        if problem:
            raise ValueError(problem)
        return self


class DeliverySucceeded(EventData):
    """The provider accepted the message for the order (one attempt of one delivery)."""

    order_id: uuid.UUID
    delivery_id: uuid.UUID
    channel: Channel
    attempt: int = Field(ge=1)
    provider_message_id: Identifier | None = None


class DeliveryFailed(EventData):
    """An attempt failed. `final` means no automatic retry follows: the delivery waits for an
    admin (corrected details, resend) and the order is flagged."""

    order_id: uuid.UUID
    delivery_id: uuid.UUID
    channel: Channel
    attempt: int = Field(ge=1)
    reason_code: Identifier = Field(description="e.g. `invalid_number`, `bounced`, `provider_timeout`")
    retryable: bool
    final: bool
    reason: Text | None = None


class DeliveryMessageRequested(EventData):
    """Send a templated message to a member (not a voucher). Contact details are optional: without
    them delivery uses the latest details it holds for the member."""

    message_id: uuid.UUID = Field(description="sending the same message_id twice sends once")
    member_id: Identifier
    channel: Channel
    template: Identifier
    locale: Locale = "en"
    params: dict[Identifier, TemplateParam] = Field(default_factory=dict)
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    order_id: uuid.UUID | None = None
    ticket_id: Identifier | None = None
    notice: NotificationKind | None = Field(
        default=None,
        description="a member notification of this kind: not sent if the member opted out of it, and sent by "
        "their preferred channel (`channel` when they have none)",
    )
