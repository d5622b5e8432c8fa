"""Orders: `order.state_changed` (a fact); `order.cancel_requested`, `order.create_requested` (requests)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from contracts.envelope import EventData
from contracts.values import (
    Actor,
    Channel,
    Currency,
    Email,
    Identifier,
    Locale,
    Name,
    Phone,
    PositiveMoney,
    PositivePoints,
    Text,
)


class OrderState(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class FulfilmentStatus(StrEnum):
    """Where a pending order stands; completed and cancelled orders have none."""

    AWAITING_VOUCHER = "awaiting_voucher"
    ON_HOLD = "on_hold"
    DELIVERING = "delivering"
    DELIVERY_FAILED = "delivery_failed"


class OrderSource(StrEnum):
    IPA = "ipa"
    STOREFRONT = "storefront"
    API = "api"


class OrderStateChanged(EventData):
    """Published for every change of `state` or `fulfilment_status`, creation included
    (`previous_state` absent)."""

    order_id: uuid.UUID
    booking_id: Identifier
    member_id: Identifier
    campaign_id: Identifier
    external_ref: Identifier | None = Field(
        default=None, description="the IPA record or request it came from"
    )
    source: OrderSource
    state: OrderState
    previous_state: OrderState | None = None
    fulfilment_status: FulfilmentStatus | None = None
    previous_fulfilment_status: FulfilmentStatus | None = None
    reason: Text | None = None
    amount: PositiveMoney | None = Field(
        default=None, description="the voucher's value, when not the face value"
    )
    currency: Currency | None = None
    redemption_id: uuid.UUID | None = Field(default=None, description="the storefront redemption, if any")
    actor: Actor | None = Field(default=None, description="who or what caused the change")
    test: bool = Field(
        default=False,
        description="a UAT test order: it gets a test code, never a real one; kept out of finance figures",
    )

    @model_validator(mode="after")
    def _fulfilment_only_while_pending(self) -> Self:
        if self.state is OrderState.PENDING and self.fulfilment_status is None:
            raise ValueError("a pending order has a fulfilment_status")
        if self.state is not OrderState.PENDING and self.fulfilment_status is not None:
            raise ValueError(f"a {self.state} order has no fulfilment_status")
        return self


class OrderCancelRequested(EventData):
    """A request from upstream (eligibility, policy, correction) to cancel an order it knows by
    either id. The order service decides: a completed order is not cancelled."""

    order_id: uuid.UUID | None = None
    external_ref: Identifier | None = None
    reason: Text = Field(min_length=1)
    requested_by: Actor | None = None

    @model_validator(mode="after")
    def _names_an_order(self) -> Self:
        if self.order_id is None and self.external_ref is None:
            raise ValueError("order_id or external_ref is required")
        return self


class OrderCreateRequested(EventData):
    """The storefront asks for a voucher order for points already debited (redemption saga).

    `idempotency_key` makes the request safe to repeat: one key, one order. Contact details may
    travel here, like on an IPA record, because the order service is the one that validates them
    and hands them to delivery.
    """

    redemption_id: uuid.UUID
    idempotency_key: Identifier
    member_id: Identifier
    campaign_id: Identifier
    reward_id: Identifier
    points: PositivePoints = Field(description="points the member spent")
    amount: PositiveMoney | None = Field(default=None, description="voucher value; absent: the face value")
    currency: Currency | None = None
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    channel: Channel | None = Field(default=None, description="absent: the campaign's default channel")
    locale: Locale | None = None
    requested_by: Actor | None = None
