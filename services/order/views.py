"""The answers of the order service's HTTP API, as its OpenAPI document describes them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from chassis.money import MoneyText, with_money_text
from contracts.orders import FulfilmentStatus, OrderSource, OrderState


def order_json(row: Mapping[str, Any] | asyncpg.Record | None) -> dict[str, Any]:
    """An order row as answered: its amount in its currency's minor units (points whole)."""
    assert row is not None
    return with_money_text(row, "amount")


def json_default(value: Any) -> str:
    """`json.dumps(default=...)` for database values: RFC 3339 times (`T` between date and time, as
    the documented `date-time` format says), the text of anything else (ids, decimal amounts)."""
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    applied: bool
    late: bool
    state: str
    fulfilment_status: str | None
    previous_state: str | None
    previous_fulfilment_status: str | None
    actor: str
    cause_event_id: uuid.UUID | None
    reason: str | None


class OrderRow(BaseModel):
    order_id: uuid.UUID
    booking_id: str
    source: OrderSource
    external_ref: str | None
    idempotency_key: str | None
    redemption_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    member_id: str
    campaign_id: str
    amount: MoneyText | None
    currency: str | None
    channel: str
    state: OrderState
    fulfilment_status: FulfilmentStatus | None
    status_reason: str | None
    needs_attention: bool
    late_events: int
    created_at: datetime
    updated_at: datetime
    test: bool = Field(description="a UAT test order (issued a test code, kept out of finance figures)")


class OrderView(OrderRow):
    """One order with everything that happened to it."""

    timeline: list[TimelineEntry]


class OrderPage(BaseModel):
    items: list[OrderRow]
    total: int
    next_cursor: str | None


class OrderCounts(BaseModel):
    total: int
    by_state: dict[str, int]
    by_fulfilment_status: dict[str, int]
    needs_attention: int


class CampaignCounts(OrderCounts):
    campaign_id: str


class OrderSummary(OrderCounts):
    """Real orders: UAT test orders are counted only under `test`."""

    campaigns: list[CampaignCounts]
    test: OrderCounts = Field(description="UAT test orders, apart from every figure above")


class BatchLinks(BaseModel):
    self: str
    errors: str
    approval: str | None = Field(default=None, description="where the batch's pending approval is decided")


class BatchAccepted(BaseModel):
    batch_id: uuid.UUID
    status: str = Field(description="`queued`, or `awaiting_approval` when it waits for a second person")
    mode: str
    received: int
    approval_id: uuid.UUID | None = Field(default=None, description="its pending approval, if it waits")
    links: BatchLinks


class Batch(BaseModel):
    batch_id: uuid.UUID
    source: str
    mode: str
    status: str
    file_name: str | None
    created_by: str
    received: int
    validated: int
    valid: int
    accepted: int
    rejected: int
    failure: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class BatchPage(BaseModel):
    items: list[Batch]


class OrdersOfBatch(BaseModel):
    pending: int
    completed: int
    cancelled: int


class BatchProgress(Batch):
    orders: OrdersOfBatch
    points_accepted: int
