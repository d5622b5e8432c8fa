"""Posting to the ledger: the one path every credit, debit, reversal and expiry takes.

A posting locks the member's balance row, answers a replayed idempotency key with the entry it
already made, checks the rules, appends the entry, moves the lots, and writes the
`wallet.transaction_recorded` event and the member audit entry, all in the caller's transaction.
The row lock is what keeps the balance from going negative when debits of one member arrive at once
on several replicas; the database's own checks (trigger, UNIQUE keys) are the last line behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from chassis.clock import SYSTEM_CLOCK
from chassis.db import Connection
from chassis.logging import current_correlation_id
from chassis.models import model_from
from chassis.outbox import add_event
from contracts.envelope import Envelope
from contracts.topics import Topics
from contracts.wallet import Direction, EntryType, WalletDebitRejected, WalletTransactionRecorded

from . import repository as repo
from .domain import (
    ExpiryPolicy,
    IdempotencyKeyReused,
    Posting,
    UnknownMember,
    WalletError,
    balance_after,
    check_may_debit,
    check_reversal,
    take_points,
)
from .member_audit import append_member_audit

log = structlog.get_logger(__name__)

PRODUCER = "wallet"

_AUDIT_ACTIONS = {
    EntryType.REDEMPTION: "points_redeemed",
    EntryType.REVERSAL: "points_reversed",
    EntryType.EXPIRY: "points_expired",
    EntryType.REFUND: "points_refunded",
}


def audit_action(entry_type: EntryType) -> str:
    return _AUDIT_ACTIONS.get(entry_type, "points_credited")


@dataclass(frozen=True)
class Posted:
    entry: repo.Entry
    replayed: bool
    """True when the idempotency key had been posted before: nothing new was written."""


def _envelope(cause: Envelope[Any] | None, event_type: str, data: Any) -> Envelope[Any]:
    if cause is not None:
        return cause.caused(event_type=event_type, producer=PRODUCER, data=data)
    return Envelope.new(
        event_type=event_type, producer=PRODUCER, data=data, correlation_id=current_correlation_id()
    )


def recorded_event(entry: repo.Entry) -> WalletTransactionRecorded:
    """The entry as the contract tells it: the same fields, its actor as the requester."""
    return model_from(WalletTransactionRecorded, entry, requested_by=entry.actor)


@dataclass(frozen=True)
class Ledger:
    policy: ExpiryPolicy
    clock: Callable[[], datetime] = SYSTEM_CLOCK.now
    """The time of postings and expiries: the service clock's `now`."""

    async def post(
        self,
        conn: Connection,
        posting: Posting,
        *,
        cause: Envelope[Any] | None = None,
        enforce_frozen: bool = False,
        audit_details: dict[str, Any] | None = None,
        campaign_id: str | None = None,
    ) -> Posted:
        """Append `posting` (in the caller's transaction) or return the entry its key already made.
        A credit's lot remembers `campaign_id`, the campaign that awarded it, for the finance reports.

        Raises a `WalletError` when the rules refuse it; the caller's transaction then writes nothing.
        """
        now = self.clock()
        if posting.direction is Direction.CREDIT:
            wallet: repo.Wallet | None = await repo.open_and_lock_wallet(conn, posting.member_id, now)
        else:
            wallet = await repo.lock_wallet(conn, posting.member_id)
        if wallet is None:
            raise UnknownMember(f"member {posting.member_id} has no wallet")
        existing = await repo.entry_by_key(conn, posting.idempotency_key)
        if existing is not None:
            if not posting.same_request_as(existing.member_id, existing.entry_type.value, existing.amount):
                raise IdempotencyKeyReused(
                    f"idempotency key {posting.idempotency_key} was used for another request"
                )
            if cause is not None:
                # A retried request gets its answer again; consumers dedupe by entry_id.
                await add_event(
                    conn,
                    _envelope(cause, Topics.WALLET_TRANSACTION_RECORDED, recorded_event(existing)),
                    key=existing.member_id,
                )
            return Posted(existing, replayed=True)
        if posting.direction is Direction.DEBIT and enforce_frozen:
            check_may_debit(wallet.status, posting)
        if posting.entry_type is EntryType.REVERSAL:
            assert posting.reverses_entry_id is not None
            check_reversal(await repo.reversed_entry(conn, posting.reverses_entry_id), posting)
        new_balance = balance_after(wallet.balance, posting)
        taken = {}
        if posting.direction is Direction.DEBIT:
            lots = await repo.open_lots(conn, posting.member_id)
            taken = take_points(lots, posting.amount, first=posting.reverses_entry_id)
        entry = await self._append(conn, wallet, posting, new_balance, now, cause, audit_details)
        if taken:
            await repo.take_from_lots(conn, taken, by=entry)
        else:
            await repo.add_lot(conn, entry, self.policy.expires_at(now), campaign_id)
        return Posted(entry, replayed=False)

    async def _append(
        self,
        conn: Connection,
        wallet: repo.Wallet,
        posting: Posting,
        new_balance: int,
        now: datetime,
        cause: Envelope[Any] | None,
        audit_details: dict[str, Any] | None,
    ) -> repo.Entry:
        entry = await repo.insert_entry(conn, wallet, posting, balance_after=new_balance, now=now)
        await add_event(
            conn,
            _envelope(cause, Topics.WALLET_TRANSACTION_RECORDED, recorded_event(entry)),
            key=entry.member_id,
        )
        details: dict[str, Any] = {
            "entry_id": str(entry.entry_id),
            "entry_type": entry.entry_type.value,
            "amount": str(entry.amount),
            "balance_after": str(entry.balance_after),
            "reason_code": entry.reason_code,
            "idempotency_key": entry.idempotency_key,
            "reference": entry.reference.model_dump(mode="json", exclude_none=True),
        }
        if entry.reason:
            details["reason"] = entry.reason
        if entry.reverses_entry_id:
            details["reverses_entry_id"] = str(entry.reverses_entry_id)
        details.update(audit_details or {})
        await append_member_audit(
            conn,
            member_id=entry.member_id,
            actor=entry.actor,
            action=audit_action(entry.entry_type),
            occurred_at=now,
            details=details,
        )
        return entry

    async def reject_debit(
        self,
        conn: Connection,
        *,
        member_id: str,
        amount: int,
        idempotency_key: str,
        reference: Any,
        error: WalletError,
        actor: str,
        cause: Envelope[Any],
    ) -> None:
        """Answer a refused debit; the member's audit log keeps the refusal when the member is known."""
        data = WalletDebitRejected(
            member_id=member_id,
            amount=amount,
            idempotency_key=idempotency_key,
            reason=error.code,
            reference=reference,
        )
        await add_event(conn, _envelope(cause, Topics.WALLET_DEBIT_REJECTED, data), key=member_id)
        if not isinstance(error, UnknownMember):
            await append_member_audit(
                conn,
                member_id=member_id,
                actor=actor,
                action="debit_rejected",
                occurred_at=self.clock(),
                details={"amount": str(amount), "idempotency_key": idempotency_key, "reason": error.code},
            )
        log.info("debit_rejected", member_id=member_id, reason=error.code)

    async def expire_member(self, conn: Connection, member_id: str) -> int:
        """Write one expiry entry per lot of `member_id` that is due; returns the points expired."""
        now = self.clock()
        wallet = await repo.lock_wallet(conn, member_id)
        if wallet is None:
            return 0
        expired = 0
        for lot in await repo.due_lots(conn, member_id, now):
            posting = Posting(
                member_id=member_id,
                entry_type=EntryType.EXPIRY,
                amount=lot.remaining,
                reason_code="points_expired",
                actor="system:wallet-expiry",
                idempotency_key=f"expiry:{lot.entry_id}",
                reason=f"earned {lot.earned_at.date().isoformat()} by entry {lot.entry_id}",
            )
            new_balance = balance_after(wallet.balance, posting)
            entry = await self._append(
                conn, wallet, posting, new_balance, now, None, {"expired_entry_id": str(lot.entry_id)}
            )
            await repo.take_from_lots(conn, {lot.entry_id: lot.remaining}, by=entry)
            wallet = repo.Wallet(wallet.member_id, new_balance, wallet.entries + 1, wallet.status)
            expired += lot.remaining
        return expired

    async def expire_due(self, pool: asyncpg.Pool, *, batch_members: int = 200) -> int:
        """The expiry job's run: every due lot of every member, one member per transaction."""
        total = 0
        while True:
            async with pool.acquire() as conn:
                members = await repo.members_with_due_lots(conn, self.clock(), batch_members)
            if not members:
                return total
            for member_id in members:
                async with pool.acquire() as conn, conn.transaction():
                    total += await self.expire_member(conn, member_id)
