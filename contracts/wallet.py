"""Points wallet: `wallet.credit_requested`, `wallet.debit_requested` (requests) and their answers
`wallet.transaction_recorded`, `wallet.debit_rejected`. All keyed by `member_id`, so one member's
requests are applied in order; each is applied once per `idempotency_key`."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from contracts.envelope import ContractModel, EventData
from contracts.values import Actor, Identifier, NonNegativePoints, PositivePoints, Text


class EntryType(StrEnum):
    MILESTONE_AWARD = "milestone_award"
    PROGRAMME_RULE = "programme_rule"
    MANUAL_ADJUSTMENT = "manual_adjustment"
    REFUND = "refund"
    REDEMPTION = "redemption"
    REVERSAL = "reversal"
    EXPIRY = "expiry"


class Direction(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


EARN_TYPES = frozenset(
    {EntryType.MILESTONE_AWARD, EntryType.PROGRAMME_RULE, EntryType.MANUAL_ADJUSTMENT, EntryType.REFUND}
)
BURN_TYPES = frozenset({EntryType.REDEMPTION, EntryType.REVERSAL, EntryType.EXPIRY})


def direction_of(entry_type: EntryType) -> Direction:
    """Earn types credit the balance, burn types debit it (DESIGN.md §1, Wallet)."""
    return Direction.CREDIT if entry_type in EARN_TYPES else Direction.DEBIT


class WalletReference(ContractModel):
    """What a ledger entry is about; every id is optional and set as it applies."""

    order_id: uuid.UUID | None = None
    booking_id: Identifier | None = None
    external_ref: Identifier | None = None
    ticket_id: Identifier | None = None
    redemption_id: uuid.UUID | None = None


class _PointsRequest(EventData):
    member_id: Identifier
    amount: PositivePoints
    idempotency_key: Identifier
    entry_type: EntryType
    reason_code: Identifier
    reference: WalletReference = Field(default_factory=WalletReference)
    requested_by: Actor

    def _require_direction(self, wanted: Direction) -> None:
        if direction_of(self.entry_type) is not wanted:
            raise ValueError(f"entry_type {self.entry_type} is not a {wanted}")


class WalletCreditRequested(_PointsRequest):
    """Add points (earn entry types)."""

    @model_validator(mode="after")
    def _is_a_credit(self) -> Self:
        self._require_direction(Direction.CREDIT)
        return self


class WalletDebitRequested(_PointsRequest):
    """Take points (burn entry types); refused rather than letting the balance go negative."""

    @model_validator(mode="after")
    def _is_a_debit(self) -> Self:
        self._require_direction(Direction.DEBIT)
        return self


class WalletTransactionRecorded(EventData):
    """A ledger entry was appended. `amount` is the entry's size; `direction` says which way it moved
    the balance."""

    entry_id: uuid.UUID
    member_id: Identifier
    entry_type: EntryType
    direction: Direction
    amount: PositivePoints
    balance_after: NonNegativePoints
    idempotency_key: Identifier
    reference: WalletReference = Field(default_factory=WalletReference)
    reason_code: Identifier | None = None
    requested_by: Actor | None = None

    @model_validator(mode="after")
    def _direction_matches_entry_type(self) -> Self:
        if direction_of(self.entry_type) is not self.direction:
            raise ValueError(f"entry_type {self.entry_type} is not a {self.direction}")
        return self


class WalletDebitRejected(EventData):
    """A debit was refused and nothing was recorded."""

    member_id: Identifier
    amount: PositivePoints
    idempotency_key: Identifier
    reason: Text = Field(min_length=1, description="e.g. `insufficient_points`")
    reference: WalletReference = Field(default_factory=WalletReference)
