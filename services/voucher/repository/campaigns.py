"""The statements of campaigns: their rows, what orders hold of their value, the values their codes
hold and the counts of their overview (see `services.voucher.campaigns`, which decides and publishes)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from chassis.db import Connection


async def held_value(conn: Connection, campaign_id: str) -> Decimal:
    """What orders hold of the campaign's value now; UAT test codes use no budget."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(i.value), 0) FROM issuances i WHERE i.campaign_id = $1 AND i.released_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.code_id = i.code_id AND c.test)",
        campaign_id,
    )
    return Decimal(total)


async def campaign_row(conn: Connection, campaign_id: str, *, for_update: bool) -> asyncpg.Record | None:
    sql = "SELECT * FROM campaigns WHERE campaign_id = $1" + (" FOR UPDATE" if for_update else "")  # noqa: S608 -- FOR UPDATE or nothing; the id is a bind parameter
    return await conn.fetchrow(sql, campaign_id)


async def campaign_rows(
    conn: Connection, *, status: str | None, reward_type: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """Campaigns in id order, from after the given id on."""
    return await conn.fetch(
        """
        SELECT * FROM campaigns
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reward_type = $2)
           AND ($3::text IS NULL OR campaign_id > $3)
         ORDER BY campaign_id
         LIMIT $4
        """,
        status,
        reward_type,
        after,
        limit,
    )


async def insert_campaign(conn: Connection, values: Sequence[object]) -> asyncpg.Record | None:
    """The new campaign's row, from its values in the order of the columns below; None if the id is taken."""
    return await conn.fetchrow(
        """
        INSERT INTO campaigns (campaign_id, version, name, reward_type, brand, face_value, currency,
            status, per_record_limit, default_channel, partner_ids, expiry_kind, expiry_at, expiry_days,
            budget, low_stock_threshold, allow_partial, budget_used)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
        ON CONFLICT (campaign_id) DO NOTHING
        RETURNING *
        """,
        *values,
    )


async def update_campaign(conn: Connection, values: Sequence[object]) -> asyncpg.Record:
    """The campaign's row after the update, from the values `insert_campaign` takes."""
    row = await conn.fetchrow(
        """
        UPDATE campaigns SET version = $2, name = $3, reward_type = $4, brand = $5, face_value = $6,
            currency = $7, status = $8, per_record_limit = $9, default_channel = $10, partner_ids = $11,
            expiry_kind = $12, expiry_at = $13, expiry_days = $14, budget = $15,
            low_stock_threshold = $16, allow_partial = $17, budget_used = $18, updated_at = now()
        WHERE campaign_id = $1
        RETURNING *
        """,
        *values,
    )
    assert row is not None
    return row


async def has_codes(conn: Connection, campaign_id: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM codes WHERE campaign_id = $1)", campaign_id
    )
    return found


async def code_values(conn: Connection, campaign_id: str) -> list[Decimal]:
    """The distinct values the campaign's real codes hold, in order: a skip scan of the pool index,
    one probe per distinct value."""
    rows = await conn.fetch(
        """
        WITH RECURSIVE v (value) AS (
            (SELECT value FROM codes WHERE campaign_id = $1 AND NOT test ORDER BY value LIMIT 1)
            UNION ALL
            SELECT (SELECT c.value FROM codes c WHERE c.campaign_id = $1 AND NOT c.test AND c.value > v.value
                     ORDER BY c.value LIMIT 1)
              FROM v WHERE v.value IS NOT NULL
        )
        SELECT value FROM v WHERE value IS NOT NULL
        """,
        campaign_id,
    )
    return [r["value"] for r in rows]


async def code_counts(conn: Connection, campaign_id: str) -> list[asyncpg.Record]:
    """The campaign's code counts: `status`, `test` and `n`, for the statuses it has codes in."""
    return await conn.fetch(
        "SELECT status, test, n FROM code_counts WHERE campaign_id = $1 AND n > 0", campaign_id
    )


async def issuance_rate(conn: Connection, campaign_id: str) -> asyncpg.Record:
    """How many codes the campaign issued in the `last_hour`, the `last_day` and in `total`."""
    rate = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE issued_at > now() - interval '1 hour') AS last_hour,
               count(*) FILTER (WHERE issued_at > now() - interval '1 day') AS last_day,
               count(*) AS total
          FROM issuances WHERE campaign_id = $1
        """,
        campaign_id,
    )
    assert rate is not None
    return rate


async def held_orders(conn: Connection, campaign_id: str) -> asyncpg.Record:
    """How many of the campaign's orders wait for a code: `real` and `test` ones."""
    held = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE NOT test) AS real, count(*) FILTER (WHERE test) AS test"
        " FROM holds WHERE campaign_id = $1",
        campaign_id,
    )
    assert held is not None
    return held
