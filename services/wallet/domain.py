"""The wallet's rules, with no I/O: postings, FIFO lots, expiry dates, dashboard statuses, safe exports.

A member's balance is the sum of an append-only ledger. Credits (earn types) open a lot that expires
by the policy; debits take points from the lots oldest first; a reversal takes back (part of) one
credit, from that credit's own lot first. Every refusal is a typed error with a stable `code`, which
is the `reason` of `wallet.debit_rejected` and the `code` of the HTTP problem.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from contracts.wallet import Direction, EntryType, WalletReference, direction_of


class WalletError(Exception):
    """A request the ledger refuses; nothing is recorded."""

    code = "wallet_error"


class UnknownMember(WalletError):
    code = "unknown_member"


class InsufficientPoints(WalletError):
    code = "insufficient_points"


class WalletFrozen(WalletError):
    code = "wallet_frozen"


class IdempotencyKeyReused(WalletError):
    """The key was used before for a different request."""

    code = "idempotency_key_reused"


class EntryNotFound(WalletError):
    code = "entry_not_found"


class NotReversible(WalletError):
    """Only a credit of the same member can be reversed."""

    code = "not_reversible"


class AlreadyReversed(WalletError):
    code = "already_reversed"


class ReversalExceedsEntry(WalletError):
    code = "reversal_exceeds_entry"


class UnsupportedEntryType(WalletError):
    """The entry type cannot be requested this way (expiry is the wallet's own job; a reversal names
    the entry it reverses, over HTTP)."""

    code = "unsupported_entry_type"


class WalletStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"


@dataclass(frozen=True)
class Posting:
    """One entry to append to a member's ledger."""

    member_id: str
    entry_type: EntryType
    amount: int
    reason_code: str
    actor: str
    idempotency_key: str
    reference: WalletReference = field(default_factory=WalletReference)
    reason: str | None = None
    reverses_entry_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a posting moves a positive number of points")
        if (self.entry_type is EntryType.REVERSAL) != (self.reverses_entry_id is not None):
            raise ValueError("a reversal, and only a reversal, names the entry it reverses")

    @property
    def direction(self) -> Direction:
        return direction_of(self.entry_type)

    def same_request_as(self, member_id: str, entry_type: str, amount: int) -> bool:
        """A replay of the same request (same key) must ask for the same thing."""
        return (member_id, entry_type, amount) == (self.member_id, self.entry_type.value, self.amount)


def balance_after(balance: int, posting: Posting) -> int:
    """The balance once `posting` is applied; a debit may never take it below zero."""
    if posting.direction is Direction.CREDIT:
        return balance + posting.amount
    if posting.amount > balance:
        raise InsufficientPoints(f"the balance is {balance} points, {posting.amount} were asked for")
    return balance - posting.amount


def check_may_debit(status: WalletStatus, posting: Posting) -> None:
    """A frozen wallet takes no debits a member or service asks for (the wallet's own expiry and a
    staff reversal still apply)."""
    if status is WalletStatus.FROZEN:
        raise WalletFrozen("the wallet is frozen")


@dataclass(frozen=True)
class Lot:
    """What is left of one credit."""

    entry_id: uuid.UUID
    earned_at: datetime
    expires_at: datetime | None
    remaining: int


def fifo_order(lots: Sequence[Lot]) -> list[Lot]:
    """Oldest first: what expires soonest goes first, never-expiring points last."""
    return sorted(
        lots,
        key=lambda lot: (
            lot.expires_at is None,
            lot.expires_at or lot.earned_at,
            lot.earned_at,
            lot.entry_id,
        ),
    )


def take_points(lots: Sequence[Lot], amount: int, *, first: uuid.UUID | None = None) -> dict[uuid.UUID, int]:
    """How many points to take from which lot: from `first` (the reversed credit) if named, then FIFO.

    Returns entry_id → points taken; raises InsufficientPoints when the lots do not hold `amount`.
    """
    if amount <= 0:
        raise ValueError("take a positive number of points")
    ordered = fifo_order(lots)
    if first is not None:
        ordered.sort(key=lambda lot: lot.entry_id != first)
    taken: dict[uuid.UUID, int] = {}
    left = amount
    for lot in ordered:
        if left == 0:
            break
        share = min(lot.remaining, left)
        if share > 0:
            taken[lot.entry_id] = share
            left -= share
    if left:
        raise InsufficientPoints(f"the open lots hold {amount - left} points, {amount} were asked for")
    return taken


@dataclass(frozen=True)
class ReversedEntry:
    """The credit a reversal names, as the ledger holds it."""

    entry_id: uuid.UUID
    member_id: str
    direction: Direction
    amount: int
    already_reversed: bool


def check_reversal(target: ReversedEntry | None, posting: Posting) -> None:
    if target is None:
        raise EntryNotFound(f"no ledger entry {posting.reverses_entry_id}")
    if target.member_id != posting.member_id or target.direction is not Direction.CREDIT:
        raise NotReversible("only a credit of the same member can be reversed")
    if target.already_reversed:
        raise AlreadyReversed(f"entry {target.entry_id} was already reversed")
    if posting.amount > target.amount:
        raise ReversalExceedsEntry(
            f"a reversal of {posting.amount} points exceeds the {target.amount} points of the entry"
        )


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, on the month's last day when it is shorter (Jan 31 + 1 →
    Feb 28/29)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class ExpiryPolicy:
    """Points expire `months` after they were earned; 0 means they never expire."""

    months: int = 12

    def __post_init__(self) -> None:
        if self.months < 0:
            raise ValueError("expiry months cannot be negative")

    def expires_at(self, earned_at: datetime) -> datetime | None:
        return add_months(earned_at, self.months) if self.months else None


@dataclass(frozen=True)
class Expiring:
    expires_at: datetime
    points: int


def expiring_between(lots: Sequence[Lot], start: datetime, end: datetime) -> list[Expiring]:
    """Points that expire in [start, end), summed per expiry instant, soonest first."""
    per_instant: dict[datetime, int] = {}
    for lot in lots:
        if lot.expires_at is not None and lot.remaining > 0 and start <= lot.expires_at < end:
            per_instant[lot.expires_at] = per_instant.get(lot.expires_at, 0) + lot.remaining
    return [Expiring(at, points) for at, points in sorted(per_instant.items())]


def upcoming_expiries(lots: Sequence[Lot], now: datetime) -> list[Expiring]:
    """Every expiry still ahead, soonest first: what the member will lose when."""
    return expiring_between(lots, now, datetime.max.replace(tzinfo=UTC))


def soon_window(now: datetime, days: int) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=days)


class DeliveryStatus(StrEnum):
    """What the member dashboard says about a reward order."""

    PENDING = "pending"
    PROCESSING = "processing"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


def delivery_status(
    *,
    state: str | None,
    fulfilment_status: str | None,
    delivery_outcome: str | None,
    delivery_final: bool | None,
    code_issued: bool,
) -> DeliveryStatus:
    """Combine what the order, voucher and delivery events said, whichever arrived first."""
    if state == "completed" or delivery_outcome == "succeeded":
        return DeliveryStatus.DELIVERED
    if state == "cancelled":
        return DeliveryStatus.CANCELLED
    if fulfilment_status == "delivery_failed" or (delivery_outcome == "failed" and delivery_final):
        return DeliveryStatus.FAILED
    if fulfilment_status == "delivering" or code_issued or delivery_outcome == "failed":
        return DeliveryStatus.PROCESSING
    return DeliveryStatus.PENDING
