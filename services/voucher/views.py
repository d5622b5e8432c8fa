"""The answers of the voucher service's HTTP API, as its OpenAPI document describes them.

Money is a decimal string; no answer but an audited reveal ever holds a clear code.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chassis.money import MoneyText
from contracts.vouchers import ExpiryPolicy


class CampaignOut(BaseModel):
    campaign_id: str
    version: int
    name: str
    reward_type: str
    brand: str | None
    face_value: MoneyText | None
    currency: str | None
    status: str
    per_record_limit: MoneyText | None
    default_channel: str
    partner_ids: list[str]
    expiry_policy: ExpiryPolicy
    budget: MoneyText | None
    low_stock_threshold: int
    allow_partial_redemption: bool
    budget_used: MoneyText
    budget_left: MoneyText | None
    created_at: datetime | None
    updated_at: datetime | None


class IssuanceRate(BaseModel):
    last_hour: int
    last_day: int
    total: int


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last one")


class CampaignOverview(CampaignOut):
    """A campaign with its code counts per status (real and UAT test codes apart) and issuance rate."""

    code_counts: dict[str, int]
    test_code_counts: dict[str, int]
    held_orders: int
    held_test_orders: int = Field(default=0, description="UAT test orders waiting for a test code")
    issuance: IssuanceRate


class GenerateResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    campaign_id: str
    generated: int
    test: bool
    held_orders_served: int | None = None


class ImportProblem(BaseModel):
    row: int
    code: str
    message: str


class ImportReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    campaign_id: str
    rows: int
    imported: int
    rejected: int
    duplicates_in_file: int
    duplicates_in_pool: int
    invalid: int
    bad_encoding: int
    problems: list[ImportProblem]
    held_orders_served: int


class CodeEvent(BaseModel):
    at: datetime
    action: str
    status: str
    previous_status: str | None
    actor: str
    reason: str | None
    order_id: uuid.UUID | None
    details: Any


class CodeRedemption(BaseModel):
    redemption_id: uuid.UUID
    partner_id: str
    amount: MoneyText
    remaining_value: MoneyText
    channel: str
    location: str | None
    redeemed_at: datetime


class CodeListItem(BaseModel):
    """One code of a campaign, masked; `test` marks UAT test codes (never issued to real orders)."""

    code_id: uuid.UUID
    campaign_id: str
    masked_code: str
    status: str
    test: bool
    source: str
    value: MoneyText
    remaining_value: MoneyText
    currency: str | None
    expires_at: datetime | None
    order_id: uuid.UUID | None
    member_id: str | None
    issued_at: datetime | None
    delivered: bool
    delivery_failed: bool
    flag_reason: str | None
    created_at: datetime


class CodeStatusOut(CodeListItem):
    """A code's state, order, member and history; the code itself only masked."""

    model_config = ConfigDict(extra="allow")

    updated_at: datetime
    history: list[CodeEvent]
    redemptions: list[CodeRedemption]


class RevealedCode(BaseModel):
    code_id: uuid.UUID
    code: str


class NotReplaced(BaseModel):
    code_id: uuid.UUID
    reason: str = Field(description="why no fresh code: `out_of_stock`, `budget_exhausted`…")


class RecoverResult(BaseModel):
    """What a recovery matched (and, unless a dry run, recovered); `skipped`: listed ids not eligible."""

    dry_run: bool
    matched: int
    code_ids: list[uuid.UUID]
    skipped: list[uuid.UUID] | None = None
    recovered: int | None = None
    replaced: list[uuid.UUID] | None = Field(
        default=None, description="delivered codes voided, each order given a fresh code to be delivered"
    )
    not_replaced: list[NotReplaced] | None = Field(
        default=None, description="delivered codes left as they were: no fresh code could be issued"
    )


class ExtendResult(BaseModel):
    """A dry run says how many codes `would_change`; a real one how many `changed`."""

    dry_run: bool
    would_change: int | None = None
    changed: int | None = None


class FlagResult(BaseModel):
    """`flagged` (or `unflagged`): how many codes changed; `skipped`: ids that did not."""

    flagged: int | None = None
    unflagged: int | None = None
    skipped: list[uuid.UUID]
    campaign_ids: list[str]


class RedemptionOut(BaseModel):
    redemption_id: uuid.UUID
    code_id: uuid.UUID
    campaign_id: str
    amount: MoneyText
    remaining_value: MoneyText
    currency: str
    partial: bool
    status: str
    test: bool
    redeemed_at: datetime
    replayed: bool


class CodeListPage(BaseModel):
    items: list[CodeListItem]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last one")
