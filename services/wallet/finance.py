"""Finance figures from the ledger: the points liability as of a date and a month's movements.

The liability is what earned lots still held at a cutoff: each lot's points less what debits
(redemptions, reversals, expiries) took from it before the cutoff, by the campaign that awarded it
and the member who holds it. A member's total equals their ledger balance at the cutoff. The
month-end summary adds up the month's entries by type, with the liability before and after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from chassis.db import Connection
from contracts.wallet import EntryType

EARNED = (EntryType.MILESTONE_AWARD, EntryType.PROGRAMME_RULE)

LIABILITY_COLUMNS = ("member_id", "campaign_id", "points")

# $1 cutoff (exclusive), $2 campaign, $3 member.
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
ORDERED_OUTSTANDING = f"SELECT * FROM ({OUTSTANDING}) AS o ORDER BY member_id, campaign_id NULLS FIRST"


def end_of_day(day: date) -> datetime:
    """The first instant after `day` (UTC): the exclusive cutoff of a report as of that day."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` → its first instant and the next month's (UTC)."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def liability_totals(
    conn: Connection, cutoff: datetime, campaign_id: str | None, member_id: str | None
) -> tuple[int, int, list[dict[str, Any]]]:
    """Total points, members holding any, and the points and members per campaign."""
    rows = await conn.fetch(
        f"""
        SELECT campaign_id, sum(points) AS points, count(DISTINCT member_id) AS members,
               grouping(campaign_id) = 1 AS overall
          FROM ({OUTSTANDING}) AS o
         GROUP BY ROLLUP (campaign_id)
         ORDER BY overall, campaign_id NULLS FIRST
        """,
        cutoff,
        campaign_id,
        member_id,
    )
    overall = next((r for r in rows if r["overall"]), None)
    by_campaign = [
        {"campaign_id": r["campaign_id"], "points": str(r["points"]), "members": r["members"]}
        for r in rows
        if not r["overall"]
    ]
    if overall is None or overall["points"] is None:  # nothing outstanding: ROLLUP's total is NULL
        return 0, 0, by_campaign
    return int(overall["points"]), int(overall["members"]), by_campaign


async def liability_page(
    conn: Connection,
    cutoff: datetime,
    campaign_id: str | None,
    member_id: str | None,
    *,
    after_member: str | None,
    members: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """The lines of up to `members` members after `after_member`, and the cursor of the next page."""
    rows = await conn.fetch(
        f"""
        WITH o AS ({OUTSTANDING}),
             page AS (SELECT DISTINCT member_id FROM o
                       WHERE $4::text IS NULL OR member_id > $4 ORDER BY member_id LIMIT $5)
        SELECT o.* FROM o JOIN page USING (member_id) ORDER BY member_id, campaign_id NULLS FIRST
        """,
        cutoff,
        campaign_id,
        member_id,
        after_member,
        members + 1,
    )
    seen = list(dict.fromkeys(r["member_id"] for r in rows))
    more = len(seen) > members
    kept = set(seen[:members])
    items = [
        {"member_id": r["member_id"], "campaign_id": r["campaign_id"], "points": str(r["points"])}
        for r in rows
        if r["member_id"] in kept
    ]
    return items, seen[members - 1] if more else None


@dataclass(frozen=True)
class MonthEnd:
    opening: int
    closing: int
    by_entry_type: dict[str, tuple[str, int, int]]  # entry type → (direction, entries, points)

    def points(self, *types: EntryType) -> int:
        return sum(self.by_entry_type[t.value][2] for t in types if t.value in self.by_entry_type)


async def _outstanding_total(conn: Connection, cutoff: datetime) -> int:
    # The ledger's own balances at the cutoff: each member's last balance_after before it.
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


async def month_end(conn: Connection, start: datetime, end: datetime) -> MonthEnd:
    rows = await conn.fetch(
        """
        SELECT entry_type, direction, count(*) AS entries, sum(amount) AS points FROM ledger_entries
         WHERE recorded_at >= $1 AND recorded_at < $2 GROUP BY entry_type, direction ORDER BY entry_type
        """,
        start,
        end,
    )
    return MonthEnd(
        opening=await _outstanding_total(conn, start),
        closing=await _outstanding_total(conn, end),
        by_entry_type={r["entry_type"]: (r["direction"], r["entries"], int(r["points"])) for r in rows},
    )


def month_end_view(month: str, start: datetime, end: datetime, figures: MonthEnd) -> dict[str, Any]:
    earned = figures.points(*EARNED)
    refunded = figures.points(EntryType.REFUND)
    burned = figures.points(EntryType.REDEMPTION)
    expired = figures.points(EntryType.EXPIRY)
    adjusted_credit = figures.points(EntryType.MANUAL_ADJUSTMENT)
    adjusted_debit = figures.points(EntryType.REVERSAL)
    adjusted_net = adjusted_credit - adjusted_debit
    expected_closing = figures.opening + earned + refunded + adjusted_net - burned - expired
    return {
        "month": month,
        "period_from": start,
        "period_to": end,
        "opening_points": str(figures.opening),
        "earned": str(earned),
        "refunded": str(refunded),
        "burned": str(burned),
        "expired": str(expired),
        "adjusted_credit": str(adjusted_credit),
        "adjusted_debit": str(adjusted_debit),
        "adjusted_net": str(adjusted_net),
        "closing_points": str(figures.closing),
        "reconciles": expected_closing == figures.closing,
        "by_entry_type": {
            entry_type: {"direction": direction, "entries": entries, "points": str(points)}
            for entry_type, (direction, entries, points) in figures.by_entry_type.items()
        },
    }
