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

from .repository import finance as repo

EARNED = (EntryType.MILESTONE_AWARD, EntryType.PROGRAMME_RULE)

LIABILITY_COLUMNS = ("member_id", "campaign_id", "points")


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
    conn: Connection, scope: repo.Outstanding
) -> tuple[int, int, list[dict[str, Any]]]:
    """Total points, members holding any, and the points and members per campaign."""
    rows = await repo.liability_by_campaign(conn, scope)
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
    conn: Connection, scope: repo.Outstanding, *, after_member: str | None, members: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The lines of up to `members` members after `after_member`, and the cursor of the next page."""
    rows = await repo.liability_of_members(conn, scope, after_member, members + 1)
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


async def month_end(conn: Connection, start: datetime, end: datetime) -> MonthEnd:
    rows = await repo.entries_by_type(conn, start, end)
    return MonthEnd(
        opening=await repo.balances_total(conn, start),
        closing=await repo.balances_total(conn, end),
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
