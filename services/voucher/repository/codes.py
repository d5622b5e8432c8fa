"""The statements of code pools: sealed codes copied or staged into a pool, a code's status, history and
ciphertext, and the stock flag (see `services.voucher.codes`, which seals, decides and audits)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection

BULK_TIMEOUT_S = 1800.0
"""A million codes take seconds, far past the pool's default command timeout on a busy machine."""

StagedRow = tuple[int, bytes, bytes, str, str, Decimal, datetime | None]
"""A sealed code: row number, lookup hash, secret, key id, last four characters, value, own expiry."""

STAGING_COLUMNS = ("row_no", "lookup_hash", "secret", "key_id", "last4", "value", "own_expires_at")
POOL_COLUMNS = (
    "campaign_id",
    "lookup_hash",
    "secret",
    "key_id",
    "last4",
    "source",
    "test",
    "value",
    "remaining_value",
    "own_expires_at",
    "expires_at",
)

_INSERT_STAGED = """
    INSERT INTO codes (campaign_id, lookup_hash, secret, key_id, last4, source, test, value, remaining_value,
                       own_expires_at, expires_at)
    SELECT $1, lookup_hash, secret, key_id, last4, $2, $3, value, value, own_expires_at, own_expires_at
      FROM staged_codes ORDER BY row_no
    ON CONFLICT (lookup_hash) DO NOTHING
"""

_CODE_COLUMNS = """code_id, campaign_id, last4, source, test, status, value, remaining_value, expires_at,
    order_id, member_id, issued_at, delivered, delivery_failed, flag_reason, created_at, updated_at,
    (SELECT currency FROM campaigns c WHERE c.campaign_id = codes.campaign_id) AS currency"""


async def copy_into_pool(conn: Connection, pool_rows: list[tuple[Any, ...]]) -> bool:
    """The fast path: COPY rows of `POOL_COLUMNS` straight into the pool. False when a code already
    exists anywhere (the unique lookup hash refuses it); the savepoint then undoes this COPY and nothing
    is half-done."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "codes", records=pool_rows, columns=POOL_COLUMNS, timeout=BULK_TIMEOUT_S
            )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def stage(conn: Connection, rows: list[StagedRow]) -> None:
    """Sealed codes into this transaction's staging table, to be inserted by `insert_staged…`."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS staged_codes (row_no int, lookup_hash bytea, secret bytea,"
        " key_id text, last4 text, value numeric(18, 4), own_expires_at timestamptz) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table(
        "staged_codes", records=rows, columns=STAGING_COLUMNS, timeout=BULK_TIMEOUT_S
    )


async def insert_staged(conn: Connection, campaign_id: str, *, source: str, test: bool) -> int:
    """The staged codes into the campaign's pool, but those that exist already; how many went in.
    The staging table is emptied."""
    status = await conn.execute(_INSERT_STAGED, campaign_id, source, test, timeout=BULK_TIMEOUT_S)
    await conn.execute("TRUNCATE staged_codes")
    return int(status.split()[-1])


async def insert_staged_naming_clashes(
    conn: Connection, campaign_id: str, *, source: str
) -> tuple[int, list[int]]:
    """As `insert_staged` (real codes): how many went in, and the row numbers of those that exist already."""
    inserted = await conn.fetch(
        _INSERT_STAGED + " RETURNING lookup_hash", campaign_id, source, False, timeout=BULK_TIMEOUT_S
    )
    fresh = [r["lookup_hash"] for r in inserted]
    clashes = await conn.fetch(
        "SELECT row_no FROM staged_codes WHERE NOT (lookup_hash = ANY($1::bytea[]))", fresh
    )
    await conn.execute("TRUNCATE staged_codes")
    return len(fresh), [r["row_no"] for r in clashes]


async def code_id_by_hash(conn: Connection, lookup_hash: bytes) -> uuid.UUID | None:
    code_id = await conn.fetchval("SELECT code_id FROM codes WHERE lookup_hash = $1", lookup_hash)
    return None if code_id is None else uuid.UUID(str(code_id))


async def code_row(conn: Connection, code_id: uuid.UUID) -> asyncpg.Record | None:
    """The code's state (never its secret), with its campaign's `currency`."""
    return await conn.fetchrow(f"SELECT {_CODE_COLUMNS} FROM codes WHERE code_id = $1", code_id)  # noqa: S608 -- columns are a module constant; values are bind parameters


async def code_history(conn: Connection, code_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT at, action, status, previous_status, actor, reason, order_id, details"
        " FROM code_events WHERE code_id = $1 ORDER BY id",
        code_id,
    )


async def code_redemptions(conn: Connection, code_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT redemption_id, partner_id, amount, remaining_value, channel, location, redeemed_at"
        " FROM redemptions WHERE code_id = $1 ORDER BY redeemed_at",
        code_id,
    )


async def sealed_code(conn: Connection, code_id: uuid.UUID) -> asyncpg.Record | None:
    """What opens the code (`lookup_hash`, `secret`, `key_id`) and its `member_id`."""
    return await conn.fetchrow(
        "SELECT lookup_hash, secret, key_id, member_id FROM codes WHERE code_id = $1", code_id
    )


async def refresh_stock_flag(conn: Connection, campaign_id: str) -> None:
    """Stock went up: the next fall to the threshold deserves a new `voucher.stock_low`."""
    await conn.execute(
        """
        UPDATE campaigns c SET stock_low_notified = false
         WHERE campaign_id = $1 AND stock_low_notified
           AND (SELECT coalesce(sum(n), 0) FROM code_counts k WHERE k.campaign_id = c.campaign_id
                 AND k.status IN ('available', 'recovered') AND NOT k.test) > c.low_stock_threshold
        """,
        campaign_id,
    )
