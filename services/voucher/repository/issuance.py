"""The statements of issuing one code to one order, holding the orders that cannot get one, and giving a
code back to its pool (see `services.voucher.issuance`, which decides and publishes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from chassis.db import Connection


async def insert_hold(
    conn: Connection,
    *,
    order_id: uuid.UUID,
    campaign_id: str,
    member_id: str,
    value: Decimal | None,
    reason: str,
    correlation_id: str,
    test: bool,
) -> bool:
    """Hold the order (or say it is held for `reason` now); True when it was not held before."""
    inserted: bool = await conn.fetchval(
        """
        INSERT INTO holds (order_id, campaign_id, member_id, value, reason, correlation_id, test)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (order_id) DO UPDATE SET reason = EXCLUDED.reason
        RETURNING xmax = 0
        """,
        order_id,
        campaign_id,
        member_id,
        value,
        reason,
        correlation_id,
        test,
    )
    return inserted


async def delete_holds(conn: Connection, order_ids: list[uuid.UUID]) -> None:
    await conn.execute("DELETE FROM holds WHERE order_id = ANY($1::uuid[])", order_ids)


async def order_and_campaign(conn: Connection, order_id: uuid.UUID, campaign_id: str) -> asyncpg.Record:
    """`done`: the order was ever issued a code or is closed; `budgeted`: the campaign has a budget
    (None when there is no such campaign)."""
    known = await conn.fetchrow(
        """
        SELECT EXISTS (SELECT 1 FROM issuances WHERE order_id = $1)
               OR EXISTS (SELECT 1 FROM closed_orders WHERE order_id = $1) AS done,
               (SELECT budget IS NOT NULL FROM campaigns WHERE campaign_id = $2) AS budgeted
        """,
        order_id,
        campaign_id,
    )
    assert known is not None
    return known


async def lock_campaign(
    conn: Connection, campaign_id: str, order_id: uuid.UUID, *, test: bool, budgeted: bool
) -> asyncpg.Record | None:
    """The campaign row with `queue_head`, the reason the oldest other order of the same queue is held.

    Without a budget, issuers share the campaign row and never wait for each other (a status or budget
    change waits for them); with one, they take turns, since each moves budget_used."""
    lock = "FOR NO KEY UPDATE" if budgeted else "FOR SHARE"
    return await conn.fetchrow(
        f"""
        SELECT c.*, (SELECT reason FROM holds h WHERE h.campaign_id = c.campaign_id AND h.order_id <> $2
                        AND h.test = $3
                      ORDER BY seq LIMIT 1) AS queue_head
          FROM campaigns c WHERE c.campaign_id = $1 {lock} OF c
        """,  # noqa: S608 -- lock clause is one of two literals; values are bind parameters
        campaign_id,
        order_id,
        test,
    )


async def pick_code(
    conn: Connection, campaign_id: str, value: Decimal, *, test: bool, xid: str, after: int
) -> asyncpg.Record | None:
    """The first issuable code of the pool, locked; in transaction `xid` only past `seq` `after`."""
    # Literal predicates, so each kind of order reads its own partial index (codes_pool, codes_test_pool).
    kind = "test" if test else "NOT test"
    return await conn.fetchrow(
        f"""
        SELECT code_id, seq, status, lookup_hash, secret, key_id, own_expires_at,
               pg_current_xact_id()::text AS xid
          FROM codes
         WHERE campaign_id = $1 AND value = $2 AND status IN ('available', 'recovered') AND {kind}
           AND (expires_at IS NULL OR expires_at > now())
           AND seq > CASE WHEN pg_current_xact_id()::text = $3 THEN $4::bigint ELSE 0 END
         ORDER BY seq LIMIT 1
           FOR UPDATE SKIP LOCKED
        """,  # noqa: S608 -- predicate is 'test' or 'NOT test'; values are bind parameters
        campaign_id,
        value,
        xid,
        after,
    )


async def take_budget(conn: Connection, campaign_id: str, value: Decimal) -> bool:
    """Count `value` against the campaign's budget; False (and nothing changed) when it would overrun."""
    taken = await conn.fetchval(
        "UPDATE campaigns SET budget_used = budget_used + $2"
        " WHERE campaign_id = $1 AND budget_used + $2 <= budget RETURNING true",
        campaign_id,
        value,
    )
    return bool(taken)


async def issue_code(
    conn: Connection,
    *,
    code_id: uuid.UUID,
    order_id: uuid.UUID,
    member_id: str,
    campaign_id: str,
    value: Decimal,
    issued_at: datetime,
    expires_at: datetime | None,
    previous_status: str,
    actor: str,
) -> None:
    """In one round trip: the code, the issuance record, the code's history and the hold, together."""
    await conn.execute(
        """
        WITH taken AS (
            UPDATE codes SET status = 'issued', order_id = $2, member_id = $3, issued_at = $4,
                   expires_at = $5, delivered = false, delivery_failed = false, updated_at = now()
             WHERE code_id = $1
            RETURNING code_id
        ), issued AS (
            INSERT INTO issuances (order_id, code_id, campaign_id, member_id, value, issued_at)
            SELECT $2, code_id, $6, $3, $7, $4 FROM taken
            RETURNING code_id
        ), history AS (
            INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id)
            SELECT code_id, 'issued', 'issued', $8, $9, $2 FROM issued
        )
        DELETE FROM holds WHERE order_id = $2
        """,
        code_id,
        order_id,
        member_id,
        issued_at,
        expires_at,
        campaign_id,
        value,
        previous_status,
        actor,
    )


async def low_stock(conn: Connection, campaign_id: str) -> asyncpg.Record | None:
    """The campaign's low-stock `threshold` and its `available` real codes, unless it was told already."""
    return await conn.fetchrow(
        """
        SELECT c.low_stock_threshold AS threshold,
               (SELECT coalesce(sum(n), 0) FROM code_counts k WHERE k.campaign_id = c.campaign_id
                 AND k.status IN ('available', 'recovered') AND NOT k.test)::int AS available
          FROM campaigns c WHERE c.campaign_id = $1 AND NOT c.stock_low_notified AND c.low_stock_threshold > 0
        """,
        campaign_id,
    )


async def mark_stock_low_notified(conn: Connection, campaign_id: str) -> None:
    await conn.execute("UPDATE campaigns SET stock_low_notified = true WHERE campaign_id = $1", campaign_id)


async def lock_holds(conn: Connection, campaign_id: str | None, limit: int) -> list[asyncpg.Record]:
    """Held orders oldest first (of one campaign, or all), locked, skipping those another worker holds."""
    return await conn.fetch(
        "SELECT * FROM holds WHERE ($1::text IS NULL OR campaign_id = $1) ORDER BY seq LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        campaign_id,
        limit,
    )


async def close_orders(conn: Connection, order_ids: list[uuid.UUID], state: str) -> None:
    """Remember the orders as closed (`cancelled`, `completed`): they are never issued a code again."""
    await conn.execute(
        "INSERT INTO closed_orders (order_id, state) SELECT unnest($1::uuid[]), $2 ON CONFLICT DO NOTHING",
        order_ids,
        state,
    )


async def lock_code_of_order(conn: Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT code_id, campaign_id, status, value, remaining_value, delivered, own_expires_at, test"
        " FROM codes WHERE order_id = $1 AND status <> 'void' FOR UPDATE",
        order_id,
    )


async def return_code_to_pool(conn: Connection, code_id: uuid.UUID, status: str) -> None:
    """Detach the code from its order and make it issuable again (as `status`)."""
    await conn.execute(
        """
        UPDATE codes SET status = $2, order_id = NULL, member_id = NULL, issued_at = NULL,
               expires_at = own_expires_at, delivered = false, delivery_failed = false, updated_at = now()
         WHERE code_id = $1
        """,
        code_id,
        status,
    )


async def release_issuance(conn: Connection, order_id: uuid.UUID, release_reason: str) -> None:
    await conn.execute(
        "UPDATE issuances SET released_at = now(), release_reason = $2"
        " WHERE order_id = $1 AND released_at IS NULL",
        order_id,
        release_reason,
    )


async def free_budget(conn: Connection, campaign_id: str, value: Decimal) -> None:
    await conn.execute(
        "UPDATE campaigns SET budget_used = greatest(budget_used - $2, 0) WHERE campaign_id = $1",
        campaign_id,
        value,
    )


async def record_code_event(
    conn: Connection,
    code_id: uuid.UUID,
    *,
    action: str,
    status: str,
    previous_status: str,
    actor: str,
    reason: str | None,
    order_id: uuid.UUID | None,
) -> None:
    """One entry of the code's history."""
    await conn.execute(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, order_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        code_id,
        action,
        status,
        previous_status,
        actor,
        reason,
        order_id,
    )


async def mark_delivered(conn: Connection, order_ids: list[uuid.UUID]) -> None:
    """The orders' codes reached their members, and the orders are complete."""
    await conn.execute(
        """
        WITH marked AS (
            UPDATE codes SET delivered = true, delivery_failed = false, updated_at = now()
             WHERE order_id = ANY($1::uuid[]) AND status <> 'void'
        )
        INSERT INTO closed_orders (order_id, state)
        SELECT unnest($1::uuid[]), 'completed' ON CONFLICT DO NOTHING
        """,
        order_ids,
    )


async def mark_delivery_failed(conn: Connection, order_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE codes SET delivery_failed = true, updated_at = now()"
        " WHERE order_id = ANY($1::uuid[]) AND status <> 'void'",
        order_ids,
    )


async def orders_and_campaigns(
    conn: Connection, order_ids: list[uuid.UUID], campaign_ids: list[str]
) -> asyncpg.Record:
    """`done`: those of the orders ever issued a code or closed; `budgeted`: those of the campaigns with a
    budget."""
    known = await conn.fetchrow(
        """
        SELECT array(SELECT o FROM unnest($1::uuid[]) AS o
                      WHERE EXISTS (SELECT 1 FROM issuances i WHERE i.order_id = o)
                         OR EXISTS (SELECT 1 FROM closed_orders c WHERE c.order_id = o)) AS done,
               array(SELECT campaign_id FROM campaigns
                      WHERE campaign_id = ANY($2::text[]) AND budget IS NOT NULL) AS budgeted
        """,
        order_ids,
        campaign_ids,
    )
    assert known is not None
    return known


async def lock_campaign_for_batch(
    conn: Connection, campaign_id: str, *, budgeted: bool
) -> asyncpg.Record | None:
    """The campaign row, locked as `lock_campaign` locks it, with `queued`: real orders are held."""
    lock = "FOR NO KEY UPDATE" if budgeted else "FOR SHARE"
    return await conn.fetchrow(
        f"""
        SELECT c.*,
               EXISTS (SELECT 1 FROM holds h WHERE h.campaign_id = c.campaign_id AND NOT h.test) AS queued
          FROM campaigns c WHERE c.campaign_id = $1 {lock} OF c
        """,  # noqa: S608 -- lock clause is one of two literals; values are bind parameters
        campaign_id,
    )


async def claim_codes(conn: Connection, campaign_id: str, value: Decimal, count: int) -> list[asyncpg.Record]:
    """The oldest issuable real codes of this value no other transaction holds, locked for this one."""
    return list(
        await conn.fetch(
            """
            SELECT code_id, status, lookup_hash, secret, key_id, own_expires_at
              FROM codes
             WHERE campaign_id = $1 AND value = $2 AND status IN ('available', 'recovered') AND NOT test
               AND (expires_at IS NULL OR expires_at > now())
             ORDER BY seq LIMIT $3
               FOR UPDATE SKIP LOCKED
            """,
            campaign_id,
            value,
            count,
        )
    )


async def add_budget_used(conn: Connection, campaign_id: str, total: Decimal) -> None:
    await conn.execute(
        "UPDATE campaigns SET budget_used = budget_used + $2 WHERE campaign_id = $1", campaign_id, total
    )


@dataclass(frozen=True)
class CodeGrant:
    """One row of `issue_codes`: a code taken by an order."""

    code_id: uuid.UUID
    order_id: uuid.UUID
    member_id: str
    value: Decimal
    previous_status: str
    expires_at: datetime | None


async def issue_codes(
    conn: Connection, campaign_id: str, grants: list[CodeGrant], *, issued_at: datetime, actor: str
) -> None:
    """`issue_code` for many orders of one campaign, the issuance records in the grants' order."""
    code_ids = [g.code_id for g in grants]
    order_ids = [g.order_id for g in grants]
    member_ids = [g.member_id for g in grants]
    # The issuance records (in arrival order), the codes' history and the holds first, then the codes:
    # the foreign key checks then find rows this transaction has locked but not yet updated, which
    # costs them nothing (checking freshly updated rows would lock each of them once more).
    await conn.execute(
        """
        WITH granted AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::text[])
                          WITH ORDINALITY AS g(code_id, order_id, member_id, value, previous, n)
        ), issued AS (
            INSERT INTO issuances (order_id, code_id, campaign_id, member_id, value, issued_at)
            SELECT order_id, code_id, $6, member_id, value, $7 FROM granted ORDER BY n
        ), history AS (
            INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id)
            SELECT code_id, 'issued', 'issued', previous, $8, order_id FROM granted ORDER BY n
        )
        DELETE FROM holds WHERE order_id = ANY($2::uuid[])
        """,
        code_ids,
        order_ids,
        member_ids,
        [g.value for g in grants],
        [g.previous_status for g in grants],
        campaign_id,
        issued_at,
        actor,
    )
    await conn.execute(
        """
        UPDATE codes c SET status = 'issued', order_id = g.order_id, member_id = g.member_id,
               issued_at = $4, expires_at = g.expires_at, delivered = false, delivery_failed = false,
               updated_at = now()
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $5::timestamptz[])
               AS g(code_id, order_id, member_id, expires_at)
         WHERE c.code_id = g.code_id
        """,
        code_ids,
        order_ids,
        member_ids,
        issued_at,
        [g.expires_at for g in grants],
    )
