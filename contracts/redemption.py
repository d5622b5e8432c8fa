"""Redemption records: `redemption.recorded`, one per offer, voucher or storefront redemption
(and voucher expiry), for dashboards and the member's audit log. Members appear only by id and
tier/segment token."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import Field

from contracts.envelope import EventData
from contracts.values import Currency, Identifier, PositiveMoney, PositivePoints, Text, UtcDatetime


class RedemptionKind(StrEnum):
    OFFER = "offer"
    VOUCHER = "voucher"
    STOREFRONT = "storefront"


class RedemptionStatus(StrEnum):
    SUCCESSFUL = "successful"
    PENDING = "pending"
    FAILED = "failed"
    EXPIRED = "expired"


class ValidationMethod(StrEnum):
    ONE_TIME_CODE = "one_time_code"
    PIN = "pin"
    VOUCHER_CODE = "voucher_code"


class RedemptionRecorded(EventData):
    """A redemption record was written or its status changed (same `record_id`)."""

    record_id: uuid.UUID
    kind: RedemptionKind
    status: RedemptionStatus
    redeemed_at: UtcDatetime
    member_id: Identifier | None = Field(default=None, description="absent when the partner did not say")
    segment_token: Identifier | None = Field(default=None, description="member tier/segment token")
    offer_id: Identifier | None = None
    partner_id: Identifier | None = None
    code_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    redemption_id: uuid.UUID | None = Field(default=None, description="the storefront or voucher redemption")
    channel: Identifier | None = None
    location: Text | None = None
    validation_method: ValidationMethod | None = None
    amount: PositiveMoney | None = None
    currency: Currency | None = None
    points: PositivePoints | None = None
    partial: bool = False
    reason: Text | None = Field(default=None, description="why it failed, for failed records")
