"""The answers of the wallet service's HTTP API, as its OpenAPI document describes them.

Points are decimal strings (`"125"`), times RFC 3339 with an offset.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel


class ExpiringLot(BaseModel):
    expires_at: datetime
    points: str


class ExpiringSoon(BaseModel):
    days: int
    points: str
    lots: list[ExpiringLot]


class WalletView(BaseModel):
    member_id: str
    balance: str
    status: str
    known: bool
    as_of: datetime
    expiring_soon: ExpiringSoon
    expiries: list[ExpiringLot]


class LedgerEntryView(BaseModel):
    entry_id: uuid.UUID
    seq: int
    member_id: str
    entry_type: str
    direction: str
    amount: str
    balance_after: str
    reason_code: str | None
    reason: str | None
    reference: dict[str, Any]
    actor: str
    idempotency_key: str | None
    reverses_entry_id: uuid.UUID | None
    recorded_at: datetime


class History(BaseModel):
    member_id: str
    entries: list[LedgerEntryView]
    next_before_seq: int | None
    orders: list[dict[str, Any]]


class WalletStatusView(BaseModel):
    member_id: str
    status: str


class MemberAuditEntryView(BaseModel):
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class MemberAuditPage(BaseModel):
    member_id: str
    entries: list[MemberAuditEntryView]
    next_after_seq: int | None


class RevealPointer(BaseModel):
    order_id: uuid.UUID
    masked_code: str | None
    reveal: Any


class MemberAuditVerification(BaseModel):
    member_id: str
    ok: bool
    entries_verified: int
    first_broken_seq: int | None
    reason: str | None
    head_hash: str | None


class EntryTypeTotal(BaseModel):
    direction: str
    entries: int
    points: str


class TransactionPage(BaseModel):
    """One page of matching transactions (each row's columns as text) and the totals of all of them."""

    items: list[dict[str, str | None]]
    next_after_seq: int | None
    totals: dict[str, EntryTypeTotal]
    credited: str
    debited: str
    net: str


class CampaignLiability(BaseModel):
    campaign_id: str | None  # null: points not awarded by a campaign (goodwill, refunds, adjustments)
    points: str
    members: int


class MemberLiability(BaseModel):
    member_id: str
    campaign_id: str | None
    points: str


class LiabilityReport(BaseModel):
    """Points earned and not yet spent, expired or reversed at the end of `as_of` (UTC)."""

    as_of: date
    cutoff: datetime
    total_points: str
    members: int
    by_campaign: list[CampaignLiability]
    items: list[MemberLiability]
    next_after_member: str | None


class MonthEndSummary(BaseModel):
    """A month's movements (UTC) and the outstanding points before and after it; `reconciles` says
    whether opening + earned + refunded + adjusted_net - burned - expired equals closing."""

    month: str
    period_from: datetime
    period_to: datetime
    opening_points: str
    earned: str
    refunded: str
    burned: str
    expired: str
    adjusted_credit: str
    adjusted_debit: str
    adjusted_net: str
    closing_points: str
    reconciles: bool
    by_entry_type: dict[str, EntryTypeTotal]
