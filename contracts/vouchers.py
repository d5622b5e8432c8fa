"""Campaigns and voucher codes: `campaign.changed`, `voucher.issued`, `voucher.issue_failed`,
`voucher.stock_low`, `voucher.redeemed`, `voucher.redemption_refused`, `voucher.status_changed`.

No topic carries a clear code: `voucher.issued` (schema_version 2) carries it sealed for the delivery
service; every other topic names codes by `code_id`. Version 1 of `voucher.issued` (the clear code) is
still read, so messages already on the topic are handled.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar, Self

from pydantic import Field, model_validator

from contracts.envelope import ContractModel, EventData
from contracts.values import (
    POINTS_CURRENCY,
    Channel,
    ClearCode,
    Currency,
    Identifier,
    Name,
    NonNegativeMoney,
    PositiveMoney,
    RewardType,
    SealedCode,
    Text,
    UtcDatetime,
)


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class ExpiryKind(StrEnum):
    NONE = "none"
    FIXED_DATE = "fixed_date"
    DAYS_AFTER_ISSUE = "days_after_issue"


class ExpiryPolicy(ContractModel):
    """When a campaign's codes expire: never, on a fixed instant, or a number of days after issue."""

    kind: ExpiryKind
    expires_at: UtcDatetime | None = Field(default=None, description="for fixed_date")
    days: int | None = Field(default=None, gt=0, description="for days_after_issue")

    @model_validator(mode="after")
    def _parameters_match_kind(self) -> Self:
        wanted = {
            ExpiryKind.NONE: (False, False),
            ExpiryKind.FIXED_DATE: (True, False),
            ExpiryKind.DAYS_AFTER_ISSUE: (False, True),
        }[self.kind]
        if (self.expires_at is not None, self.days is not None) != wanted:
            raise ValueError("fixed_date takes expires_at only, days_after_issue days only, none neither")
        return self


class CampaignChanged(EventData):
    """The whole campaign as it is now, published on every change. Consumers keep the highest
    `version` per campaign; the topic is compacted, so it also serves as the campaign catalogue."""

    campaign_id: Identifier
    version: int = Field(ge=1, description="increases with every change of this campaign")
    name: Name
    reward_type: RewardType
    brand: Name | None = None
    face_value: PositiveMoney | None = Field(default=None, description="voucher campaigns only")
    currency: Currency | None = Field(default=None, description="ISO 4217 for voucher campaigns")
    status: CampaignStatus
    per_record_limit: PositiveMoney | None = Field(
        default=None, description="largest amount one IPA record may allocate; absent: no limit"
    )
    default_channel: Channel
    partner_ids: tuple[Identifier, ...] = Field(
        default=(), description="partners allowed to redeem its codes"
    )
    expiry_policy: ExpiryPolicy = Field(default_factory=lambda: ExpiryPolicy(kind=ExpiryKind.NONE))
    budget: PositiveMoney | None = Field(default=None, description="absent: no budget limit")
    denominations: tuple[PositiveMoney, ...] = Field(
        default=(),
        description="values its codes hold besides face_value (imported with their own value): an IPA "
        "amount is face_value or one of these, since a code is issued only for its exact value",
    )

    @model_validator(mode="after")
    def _reward_is_consistent(self) -> Self:
        if self.reward_type is RewardType.VOUCHER:
            if self.face_value is None or self.currency is None or self.currency == POINTS_CURRENCY:
                raise ValueError("a voucher campaign has a face_value and an ISO 4217 currency")
        elif self.face_value is not None or self.currency not in (None, POINTS_CURRENCY):
            raise ValueError("a points campaign has no face_value and no currency other than PTS")
        return self


class VoucherIssuedV1(EventData):
    """`voucher.issued` as version 1 sent it, with the clear code; read only (nothing sends it now).
    Its fields repeat version 2's on purpose: a record of what was sent, it must not move with it."""

    order_id: uuid.UUID
    campaign_id: Identifier
    code_id: uuid.UUID
    code: ClearCode
    masked_code: Identifier = Field(description="safe to show and log, e.g. `****-****-9Q2M`")
    face_value: PositiveMoney
    currency: Currency
    expires_at: UtcDatetime | None = Field(default=None, description="absent: never expires")


class VoucherIssued(EventData):
    """A code was issued to an order, exactly one per order. The code travels sealed: only the
    delivery service can open `sealed_code`; everyone else keeps `masked_code`."""

    SCHEMA_VERSION: ClassVar[int] = 2
    EARLIER_VERSIONS: ClassVar[Mapping[int, type[EventData]]] = {1: VoucherIssuedV1}

    order_id: uuid.UUID
    campaign_id: Identifier
    code_id: uuid.UUID
    sealed_code: SealedCode
    masked_code: Identifier = Field(description="safe to show and log, e.g. `****-****-9Q2M`")
    face_value: PositiveMoney
    currency: Currency
    expires_at: UtcDatetime | None = Field(default=None, description="absent: never expires")


AnyVoucherIssued = VoucherIssued | VoucherIssuedV1
"""What a `voucher.issued` consumer may be handed: the current version or one still on the topic."""


class VoucherIssueFailed(EventData):
    """No code could be issued for the order (no stock, no budget, campaign not active); the order
    goes on hold until codes are added."""

    order_id: uuid.UUID
    campaign_id: Identifier
    reason: Text = Field(min_length=1, description="e.g. `out_of_stock`, `budget_exhausted`")


class VoucherStockLow(EventData):
    """A campaign's available codes fell to or below its threshold."""

    campaign_id: Identifier
    available: int = Field(ge=0)
    threshold: int = Field(ge=0)


class VoucherRedeemed(EventData):
    """A partner redeemed a code, fully or partly."""

    code_id: uuid.UUID
    campaign_id: Identifier
    order_id: uuid.UUID | None = Field(default=None, description="absent for test codes")
    member_id: Identifier | None = None
    partner_id: Identifier
    redemption_id: uuid.UUID
    amount: PositiveMoney
    remaining_value: NonNegativeMoney
    currency: Currency
    channel: Identifier = Field(description="where the partner took it, e.g. `online`, `in_store`")
    location: Text | None = None
    partial: bool = Field(description="value is left on the code after this redemption")
    test: bool = Field(default=False, description="a UAT test code redeemed in test mode")

    @model_validator(mode="after")
    def _partial_means_value_left(self) -> Self:
        if self.partial != (self.remaining_value > 0):
            raise ValueError("partial is true exactly when remaining_value is above zero")
        return self


class VoucherRedemptionRefused(EventData):
    """A partner's redemption was refused and nothing changed on any code; published so that every
    attempt is on record with its reason."""

    attempt_id: uuid.UUID = Field(description="this attempt; each refused request is a new one")
    partner_id: Identifier
    reason: Identifier = Field(
        description="e.g. `unknown_code`, `code_expired`, `code_flagged`, `code_fully_redeemed`, "
        "`partner_not_allowed`"
    )
    code_id: uuid.UUID | None = Field(default=None, description="absent when no code matches")
    campaign_id: Identifier | None = None
    order_id: uuid.UUID | None = Field(default=None, description="only to a partner of the campaign")
    member_id: Identifier | None = Field(default=None, description="only to a partner of the campaign")
    amount: PositiveMoney | None = Field(default=None, description="what the partner asked for; absent: all")
    currency: Currency | None = Field(default=None, description="the campaign's, when the code is known")
    channel: Identifier
    location: Text | None = None
    test: bool = Field(default=False, description="the partner asked in test mode")


class CodeStatus(StrEnum):
    AVAILABLE = "available"
    ISSUED = "issued"
    PARTIALLY_REDEEMED = "partially_redeemed"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    FLAGGED = "flagged"
    RECOVERED = "recovered"
    VOID = "void"
    """Retired for good: a delivered code that was recovered; it is never issued again."""


class VoucherStatusChanged(EventData):
    """A code's status changed (expiry, flagging, recovery, redemption…)."""

    code_id: uuid.UUID
    campaign_id: Identifier
    order_id: uuid.UUID | None = None
    status: CodeStatus
    previous_status: CodeStatus | None = None
    reason: Text | None = None
    expires_at: UtcDatetime | None = None
    remaining_value: NonNegativeMoney | None = None
    test: bool = False
