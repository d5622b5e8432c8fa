"""The answers of the redemption service's HTTP API, as its OpenAPI document describes them.

Amounts and points are decimal strings, times RFC 3339 with an offset.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chassis.money import MoneyText


class RewardOut(BaseModel):
    reward_id: str
    name: str
    description: str | None
    campaign_id: str
    points_price: str
    amount: MoneyText | None
    currency: str | None
    active: bool
    stock_remaining: int | None
    available: bool
    status: str = Field(description="active, paused or ended")


class RewardPage(BaseModel):
    items: list[RewardOut]


class SagaTransition(BaseModel):
    from_state: str | None
    to_state: str
    cause: str | None
    reason: str | None
    at: datetime


class StorefrontRedemption(BaseModel):
    redemption_id: uuid.UUID
    member_id: str
    reward_id: str
    campaign_id: str
    points: str
    status: str
    reason: str | None
    order_id: uuid.UUID | None
    booking_id: str | None
    charged: bool
    refunded: bool
    created_at: datetime
    updated_at: datetime
    history: list[SagaTransition]


class StorefrontRedemptionPage(BaseModel):
    items: list[StorefrontRedemption]


class OfferOut(BaseModel):
    offer_id: str
    partner_id: str
    title: str
    description: str | None
    valid_from: datetime
    valid_until: datetime
    eligible_tiers: list[str]
    eligible_segments: list[str]
    limit_per_member: int | None
    total_cap: int | None
    redeemed: int
    validation_method: str
    status: str = Field(description="active, paused or ended")


class OfferPage(BaseModel):
    items: list[OfferOut]


class RecordOut(BaseModel):
    """A redemption record (a partner offer's, a code's or a storefront reward's)."""

    # Routes add what their step needs (`code_expires_at` and `attempts_left` while a one-time code
    # is awaited, `code_accepted` once it is checked).
    model_config = ConfigDict(extra="allow")

    record_id: uuid.UUID
    kind: str
    status: str
    redeemed_at: datetime
    member_id: str | None
    segment_token: str | None
    offer_id: str | None
    partner_id: str | None
    code_id: uuid.UUID | None
    order_id: uuid.UUID | None
    redemption_id: uuid.UUID | None
    channel: str | None
    location: str | None
    validation_method: str | None
    amount: MoneyText | None
    currency: str | None
    points: str | None
    partial: bool
    reason: str | None


class CurrencyAmount(BaseModel):
    currency: str | None = Field(description="ISO 4217; null for amounts recorded without one")
    amount: MoneyText


class AggregateRow(BaseModel):
    value: str | None
    records: int
    amount: str | None = Field(
        description="the money of the row when it is all in one currency ('0' when there is none); null "
        "when it spans currencies: read `amounts`"
    )
    amounts: list[CurrencyAmount] = Field(description="money per currency, in its minor units")
    points: str


class AggregateTotal(BaseModel):
    records: int
    by_status: dict[str, int]
    amounts: list[CurrencyAmount] = Field(description="money per currency, in its minor units")


class Aggregates(BaseModel):
    total: AggregateTotal
    per_day: list[AggregateRow]
    per_partner: list[AggregateRow]
    per_channel: list[AggregateRow]
    per_offer: list[AggregateRow]
    per_segment: list[AggregateRow]
    per_status: list[AggregateRow]


class RecordPage(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[RecordOut]
    next_cursor: str | None
    aggregates: Aggregates | None = None


class ExportProgress(BaseModel):
    rows_done: int
    rows_total: int | None
    percent: int


class ExportOut(BaseModel):
    export_id: uuid.UUID
    purpose: str
    format: str
    fields: list[str]
    filters: dict[str, Any]
    reason: str | None
    requested_by: str
    status: str
    progress: ExportProgress
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    download: str | None


class RetentionRule(BaseModel):
    record_type: str
    days: int
    action: str


class RetentionPolicy(BaseModel):
    rules: list[RetentionRule]


class RetentionOutcome(BaseModel):
    record_type: str
    action: str
    days: int
    cutoff: datetime
    affected: int


class RetentionRun(BaseModel):
    dry_run: bool
    results: list[RetentionOutcome]
