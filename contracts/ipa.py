"""Incentive programme allocation intake: `ipa.record_submitted`, `ipa.record_accepted`,
`ipa.record_rejected`.

A submitted record comes from an HR system, outside our control, so its contract checks formats
only. Whether the campaign exists, the amount fits its limits or the reference was seen before
is the order service's decision, answered per field on `ipa.record_rejected`.
"""

from __future__ import annotations

import uuid
from typing import Self

from pydantic import Field, model_validator

from contracts.envelope import ContractModel, EventData
from contracts.values import (
    POINTS_CURRENCY,
    Channel,
    Currency,
    Email,
    Identifier,
    Money,
    Name,
    Phone,
    PositiveMoney,
    RewardType,
    Text,
)


class IpaRecordSubmitted(EventData):
    """One allocation from an HR system. A repeated `external_ref` is a duplicate, never a second reward."""

    external_ref: Identifier
    batch_id: Identifier | None = None
    member_id: Identifier
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    channel: Channel | None = Field(default=None, description="absent: the campaign's default channel")
    campaign_id: Identifier
    reward_type: RewardType
    amount: Money = Field(description="money for vouchers, whole points for points")
    currency: Currency | None = Field(
        default=None, description="ISO 4217 for vouchers; absent or PTS for points"
    )
    reason: Text | None = None
    test: bool = Field(
        default=False,
        description="a UAT test order: issued one of the campaign's test codes, delivered marked as a test, "
        "kept out of finance figures; voucher rewards only",
    )


class IpaRecordAccepted(EventData):
    """The record passed validation. Voucher rewards became the order `order_id`; points rewards
    are credited by the wallet from this event."""

    external_ref: Identifier
    batch_id: Identifier | None = None
    member_id: Identifier
    campaign_id: Identifier
    reward_type: RewardType
    amount: PositiveMoney
    currency: Currency | None = None
    reason: Text | None = None
    order_id: uuid.UUID | None = Field(default=None, description="present for voucher rewards")
    test: bool = Field(default=False, description="the order is a UAT test order")

    @model_validator(mode="after")
    def _reward_is_consistent(self) -> Self:
        if self.reward_type is RewardType.VOUCHER:
            if self.order_id is None:
                raise ValueError("an accepted voucher reward carries its order_id")
            if self.currency is None or self.currency == POINTS_CURRENCY:
                raise ValueError("an accepted voucher reward carries its ISO 4217 currency")
        else:
            if self.order_id is not None:
                raise ValueError("a points reward creates no order")
            if self.amount != self.amount.to_integral_value():
                raise ValueError("a points reward is a whole number of points")
            if self.currency not in (None, POINTS_CURRENCY):
                raise ValueError("a points reward has no currency other than PTS")
        return self


class FieldError(ContractModel):
    """Why one field of a record was refused."""

    field: Identifier = Field(description="the record's field name, or `record` for the record as a whole")
    code: Identifier = Field(description="machine-readable, e.g. `required`, `invalid_phone`, `duplicate`")
    message: Text


class IpaRecordRejected(EventData):
    """The record failed validation; nothing was dispatched for it."""

    external_ref: Identifier
    batch_id: Identifier | None = None
    member_id: Identifier | None = None
    campaign_id: Identifier | None = None
    errors: tuple[FieldError, ...] = Field(min_length=1)
