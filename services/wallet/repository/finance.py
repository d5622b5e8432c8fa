"""The finance reports' queries over the ledger: the points still held from each earned lot at a cutoff
(the liability) and a period's entries by type (see `services.wallet.finance`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chassis.db import Connection


@dataclass(frozen=True)
class Outstanding:
    """Which of the points still held a liability query reads: those at `cutoff` (exclusive), of one
    campaign or one member when given."""

    cutoff: datetime
    campaign_id: str | None = None
    member_id: str | None = None

    def args(self) -> tuple[datetime, str | None, str | None]:
        """The statement's $1, $2 and $3."""
        return self.cutoff, self.campaign_id, self.member_id


# $1 cutoff (exclusive), $2 campaign, $3 member: `Outstanding.args()`.
OUTSTANDING = """
    SELECT l.member_id, l.campaign_id,
           sum(l.amount - COALESCE(taken.points, 0)) AS points
      FROM lots l
      LEFT JOIN LATERAL (
            SELECT sum(t.points) AS points FROM lot_takes t
             WHERE t.lot_entry_id = l.entry_id AND t.taken_at < $1
           ) AS taken ON true
     WHERE l.earned_at < $1
       AND ($2::text IS NULL OR l.campaign_id = $2)
       AND ($3::text IS NULL OR l.member_id = $3)
     GROUP BY l.member_id, l.campaign_id
    HAVING sum(l.amount - COALESCE(taken.points, 0)) > 0
"""
ORDERED_OUTSTANDING = f"SELECT * FROM ({OUTSTANDING}) AS o ORDER BY member_id, campaign_id NULLS FIRST"  # noqa: S608 -- the OUTSTANDING subquery is a module constant


async def liability_by_campaign(conn: Connection, scope: Outstanding) -> list[Any]:
    """Points and members per campaign, and a last row (`overall`) for all of them together."""
    return await conn.fetch(
        f"""
        SELECT campaign_id, sum(points) AS points, count(DISTINCT member_id) AS members,
               grouping(campaign_id) = 1 AS overall
          FROM ({OUTSTANDING}) AS o
         GROUP BY ROLLUP (campaign_id)
         ORDER BY overall, campaign_id NULLS FIRST
        """,  # noqa: S608 -- the OUTSTANDING subquery is a module constant; values are bind parameters
        *scope.args(),
    )


async def liability_of_members(
    conn: Connection, scope: Outstanding, after_member: str | None, members: int
) -> list[Any]:
    """The liability lines of up to `members` members after `after_member`, by member and campaign."""
    return await conn.fetch(
        f"""
        WITH o AS ({OUTSTANDING}),
             page AS (SELECT DISTINCT member_id FROM o
                       WHERE $4::text IS NULL OR member_id > $4 ORDER BY member_id LIMIT $5)
        SELECT o.* FROM o JOIN page USING (member_id) ORDER BY member_id, campaign_id NULLS FIRST
        """,  # noqa: S608 -- the OUTSTANDING subquery is a module constant; values are bind parameters
        *scope.args(),
        after_member,
        members,
    )


async def balances_total(conn: Connection, cutoff: datetime) -> int:
    """The ledger's own balances at the cutoff: each member's last balance_after before it, summed."""
    total = await conn.fetchval(
        """
        SELECT COALESCE(sum(balance_after), 0) FROM (
            SELECT DISTINCT ON (member_id) balance_after FROM ledger_entries
             WHERE recorded_at < $1 ORDER BY member_id, member_seq DESC
        ) AS last
        """,
        cutoff,
    )
    return int(total)


async def entries_by_type(conn: Connection, start: datetime, end: datetime) -> list[Any]:
    """Entries and points per entry type and direction recorded in [start, end)."""
    return await conn.fetch(
        """
        SELECT entry_type, direction, count(*) AS entries, sum(amount) AS points FROM ledger_entries
         WHERE recorded_at >= $1 AND recorded_at < $2 GROUP BY entry_type, direction ORDER BY entry_type
        """,
        start,
        end,
    )


async def claim_reconciliation(conn: Connection, month: str, sent_at: datetime, recipients: int) -> bool:
    """Mark the month's reconciliation as sent; False when another run already did."""
    claimed = await conn.fetchval(
        "INSERT INTO reconciliation_reports (month, sent_at, recipients) VALUES ($1, $2, $3)"
        " ON CONFLICT (month) DO NOTHING RETURNING month",
        month,
        sent_at,
        recipients,
    )
    return claimed is not None
