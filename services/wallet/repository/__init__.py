"""SQL of the ledger: wallets (the per-member lock), entries, lots. No rules here, only storage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.rows import from_row
from contracts.wallet import Direction, EntryType, WalletReference

from ..domain import Lot, Posting, ReversedEntry, WalletStatus


@dataclass(frozen=True)
class Wallet:
    member_id: str
    balance: int
    entries: int
    status: WalletStatus


@dataclass(frozen=True)
class Entry:
    entry_id: uuid.UUID
    seq: int
    member_id: str
    member_seq: int
    entry_type: EntryType
    direction: Direction
    amount: int
    balance_after: int
    reason_code: str
    reason: str | None
    reference: WalletReference
    actor: str
    idempotency_key: str
    reverses_entry_id: uuid.UUID | None
    recorded_at: datetime


ENTRY_COLUMNS = """entry_id, seq, member_id, member_seq, entry_type, direction, amount, balance_after,
    reason_code, reason, order_id, booking_id, external_ref, ticket_id, redemption_id, actor,
    idempotency_key, reverses_entry_id, recorded_at"""


def entry_from_row(row: Any) -> Entry:
    return from_row(
        Entry,
        row,
        entry_type=EntryType(row["entry_type"]),
        direction=Direction(row["direction"]),
        # The reference's ids are columns of the entry under the same names.
        reference=WalletReference(**{name: row[name] for name in WalletReference.model_fields}),
    )


_WALLET = "SELECT member_id, balance, entries, status FROM wallets WHERE member_id = $1"


def _wallet(row: asyncpg.Record) -> Wallet:
    return Wallet(row["member_id"], row["balance"], row["entries"], WalletStatus(row["status"]))


async def open_and_lock_wallet(conn: Connection, member_id: str, now: datetime) -> Wallet:
    """The member's balance row, made on the first credit, locked until the transaction ends."""
    row = await conn.fetchrow(
        """
        INSERT INTO wallets AS w (member_id, created_at, updated_at) VALUES ($1, $2, $2)
        ON CONFLICT (member_id) DO UPDATE SET entries = w.entries
        RETURNING member_id, balance, entries, status
        """,
        member_id,
        now,
    )
    assert row is not None
    return _wallet(row)


async def lock_wallet(conn: Connection, member_id: str) -> Wallet | None:
    """The member's balance row, locked until the transaction ends: postings of one member queue here."""
    row = await conn.fetchrow(f"{_WALLET} FOR UPDATE", member_id)
    return None if row is None else _wallet(row)


async def get_wallet(conn: Connection, member_id: str) -> Wallet | None:
    row = await conn.fetchrow(_WALLET, member_id)
    return None if row is None else _wallet(row)


async def set_wallet_status(conn: Connection, member_id: str, status: WalletStatus, now: datetime) -> None:
    await conn.execute(
        "UPDATE wallets SET status = $2, updated_at = $3 WHERE member_id = $1", member_id, status.value, now
    )


async def member_entries(conn: Connection, member_id: str, before_seq: int | None, limit: int) -> list[Entry]:
    """A member's entries, newest first, older than `before_seq` when given."""
    rows = await conn.fetch(
        f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE member_id = $1"  # noqa: S608 -- columns are a module constant; values are bind parameters
        " AND ($2::bigint IS NULL OR member_seq < $2) ORDER BY member_seq DESC LIMIT $3",
        member_id,
        before_seq,
        limit,
    )
    return [entry_from_row(r) for r in rows]


async def entry_by_key(conn: Connection, idempotency_key: str) -> Entry | None:
    row = await conn.fetchrow(
        f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE idempotency_key = $1",  # noqa: S608 -- columns are a module constant; values are bind parameters
        idempotency_key,
    )
    return entry_from_row(row) if row else None


async def entry_by_id(conn: Connection, entry_id: uuid.UUID) -> Entry | None:
    row = await conn.fetchrow(f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE entry_id = $1", entry_id)  # noqa: S608 -- columns are a module constant; values are bind parameters
    return entry_from_row(row) if row else None


async def reversed_entry(conn: Connection, entry_id: uuid.UUID) -> ReversedEntry | None:
    row = await conn.fetchrow(
        """
        SELECT e.entry_id, e.member_id, e.direction, e.amount,
               EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses_entry_id = e.entry_id) AS reversed
          FROM ledger_entries e WHERE e.entry_id = $1
        """,
        entry_id,
    )
    if row is None:
        return None
    return ReversedEntry(
        row["entry_id"], row["member_id"], Direction(row["direction"]), row["amount"], row["reversed"]
    )


async def open_lots(conn: Connection, member_id: str) -> list[Lot]:
    rows = await conn.fetch(
        "SELECT entry_id, earned_at, expires_at, remaining FROM lots WHERE member_id = $1 AND remaining > 0",
        member_id,
    )
    return [Lot(r["entry_id"], r["earned_at"], r["expires_at"], r["remaining"]) for r in rows]


async def insert_entry(
    conn: Connection, wallet: Wallet, posting: Posting, *, balance_after: int, now: datetime
) -> Entry:
    ref = posting.reference
    # The entry and the balance row move in one statement (one round trip while the lock is held).
    row = await conn.fetchrow(
        f"""
        WITH entry AS (
            INSERT INTO ledger_entries (entry_id, member_id, member_seq, entry_type, direction, amount,
                balance_after, reason_code, reason, order_id, booking_id, external_ref, ticket_id,
                redemption_id, actor, idempotency_key, reverses_entry_id, recorded_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
            RETURNING {ENTRY_COLUMNS}
        ), moved AS (
            UPDATE wallets SET balance = $7, entries = $3, updated_at = $18 WHERE member_id = $2
        )
        SELECT * FROM entry
        """,  # noqa: S608 -- columns are a module constant; values are bind parameters
        uuid.uuid4(),
        wallet.member_id,
        wallet.entries + 1,
        posting.entry_type.value,
        posting.direction.value,
        posting.amount,
        balance_after,
        posting.reason_code,
        posting.reason,
        ref.order_id,
        ref.booking_id,
        ref.external_ref,
        ref.ticket_id,
        ref.redemption_id,
        posting.actor,
        posting.idempotency_key,
        posting.reverses_entry_id,
        now,
    )
    return entry_from_row(row)


async def add_lot(
    conn: Connection, entry: Entry, expires_at: datetime | None, campaign_id: str | None = None
) -> None:
    await conn.execute(
        "INSERT INTO lots (entry_id, member_id, earned_at, expires_at, amount, remaining, campaign_id)"
        " VALUES ($1, $2, $3, $4, $5, $5, $6)",
        entry.entry_id,
        entry.member_id,
        entry.recorded_at,
        expires_at,
        entry.amount,
        campaign_id,
    )


async def take_from_lots(conn: Connection, taken: dict[uuid.UUID, int], *, by: Entry) -> None:
    """Draw `taken` points from each lot for the debit `by`, and keep which lots it drew on."""
    await conn.executemany(
        "UPDATE lots SET remaining = remaining - $2 WHERE entry_id = $1", list(taken.items())
    )
    await conn.executemany(
        "INSERT INTO lot_takes (debit_entry_id, lot_entry_id, points, taken_at) VALUES ($1, $2, $3, $4)",
        [(by.entry_id, lot, points, by.recorded_at) for lot, points in taken.items() if points > 0],
    )


async def members_with_due_lots(conn: Connection, now: datetime, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT member_id FROM lots WHERE remaining > 0 AND expires_at <= $1 LIMIT $2", now, limit
    )
    return [r["member_id"] for r in rows]


async def due_lots(conn: Connection, member_id: str, now: datetime) -> list[Lot]:
    rows = await conn.fetch(
        """
        SELECT entry_id, earned_at, expires_at, remaining FROM lots
         WHERE member_id = $1 AND remaining > 0 AND expires_at <= $2
         ORDER BY expires_at, earned_at, entry_id
        """,
        member_id,
        now,
    )
    return [Lot(r["entry_id"], r["earned_at"], r["expires_at"], r["remaining"]) for r in rows]


@dataclass(frozen=True)
class ExpiryWarning:
    member_id: str
    expires_on: date
    points: int


async def claim_expiry_warnings(
    conn: Connection, now: datetime, within_days: int, limit: int
) -> list[ExpiryWarning]:
    """Up to `limit` (member, expiry day) pairs with points expiring within `within_days` of `now` that no
    warning was recorded for, recorded now (the caller publishes the warnings in the same transaction)."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT member_id, (expires_at AT TIME ZONE 'UTC')::date AS expires_on, sum(remaining) AS points
              FROM lots
             WHERE remaining > 0 AND expires_at > $1 AND expires_at <= $1 + make_interval(days => $2)
             GROUP BY 1, 2
        ), unwarned AS (
            SELECT d.* FROM due d
             WHERE NOT EXISTS (SELECT 1 FROM expiry_warnings w
                                WHERE w.member_id = d.member_id AND w.expires_on = d.expires_on)
             ORDER BY d.expires_on, d.member_id
             LIMIT $3
        )
        INSERT INTO expiry_warnings (member_id, expires_on, points)
        SELECT member_id, expires_on, points FROM unwarned
        ON CONFLICT DO NOTHING
        RETURNING member_id, expires_on, points
        """,
        now,
        within_days,
        limit,
    )
    return [ExpiryWarning(r["member_id"], r["expires_on"], r["points"]) for r in rows]
