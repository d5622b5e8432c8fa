"""Wallet reports for finance, admins and auditors: ledger transactions filtered by date range,
member, entry type and reference, with totals per type, as JSON pages or streamed CSV / JSON lines;
the points liability as of a day by campaign and member; a month's movements (`finance`).

Every row carries its order and booking id: an entry that names only a storefront redemption or an
order gets the other ids from the order read model. CSV cells that a spreadsheet would run as a
formula are prefixed with a quote.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.downloads import DOWNLOAD_RESPONSES, cursor_rows, download_lines, download_response
from chassis.inputs import INT64_MAX, Identifier
from contracts.wallet import EntryType

from . import finance
from .repository import finance as finance_repo
from .views import CampaignLiability, LiabilityReport, MemberLiability, MonthEndSummary, TransactionPage

REPORT_ROLES = (Role.FINANCE, Role.ADMIN, Role.AUDITOR)
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)
MONTH_PATTERN = r"^2[0-9]{3}-(0[1-9]|1[0-2])$"

COLUMNS = (
    "seq",
    "recorded_at",
    "entry_id",
    "member_id",
    "entry_type",
    "direction",
    "amount",
    "balance_after",
    "reason_code",
    "reason",
    "order_id",
    "booking_id",
    "external_ref",
    "ticket_id",
    "redemption_id",
    "actor",
    "idempotency_key",
    "reverses_entry_id",
)

_FROM = """
    FROM ledger_entries e
    LEFT JOIN reward_orders by_order ON by_order.order_id = e.order_id
    LEFT JOIN reward_orders by_redemption
           ON e.order_id IS NULL AND by_redemption.redemption_id = e.redemption_id
    WHERE ($1::timestamptz IS NULL OR e.recorded_at >= $1)
      AND ($2::timestamptz IS NULL OR e.recorded_at < $2)
      AND ($3::text IS NULL OR e.member_id = $3)
      AND ($4::text[] IS NULL OR e.entry_type = ANY($4))
      AND ($5::text IS NULL OR $5 IN (e.order_id::text, e.booking_id, e.external_ref, e.ticket_id,
                                      e.redemption_id::text, by_order.booking_id, by_redemption.booking_id))
"""

_SELECT = f"""
    SELECT e.seq, e.recorded_at, e.entry_id, e.member_id, e.entry_type, e.direction, e.amount,
           e.balance_after, e.reason_code, e.reason,
           COALESCE(e.order_id, by_redemption.order_id) AS order_id,
           COALESCE(e.booking_id, by_order.booking_id, by_redemption.booking_id) AS booking_id,
           e.external_ref, e.ticket_id, e.redemption_id, e.actor, e.idempotency_key, e.reverses_entry_id
    {_FROM}
"""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def row_values(row: Any) -> dict[str, str | None]:
    return {column: (None if row[column] is None else _text(row[column])) for column in COLUMNS}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


router = APIRouter(tags=["wallet reports"])


@router.get(
    "/v1/wallet/transactions",
    response_model=None,
    responses={
        200: {
            "model": TransactionPage,
            "description": "A page of JSON (`format=json`), or every matching row as CSV or JSON lines",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def transactions(
    request: Request,
    pool: DbPool,
    _: Principal = Depends(require_roles(*REPORT_ROLES)),
    date_from: Annotated[datetime | None, Query(alias="from", description="inclusive, RFC 3339")] = None,
    date_to: Annotated[datetime | None, Query(alias="to", description="exclusive, RFC 3339")] = None,
    member_id: Annotated[str | None, Query(max_length=200)] = None,
    entry_type: Annotated[list[EntryType] | None, Query(description="repeat for several")] = None,
    reference: Annotated[
        str | None, Query(max_length=200, description="order id, booking id, external ref, ticket id")
    ] = None,
    format: Annotated[Literal["json", "csv", "jsonl"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=1000, description="page size of the JSON format")] = 100,
    after_seq: Annotated[int, Query(ge=0, le=INT64_MAX, description="JSON paging cursor")] = 0,
) -> Any:
    """Ledger transactions with totals per entry type (JSON), or every matching row streamed."""
    args = (
        _utc(date_from),
        _utc(date_to),
        member_id,
        [t.value for t in entry_type] if entry_type else None,
        reference,
    )
    if format == "json":
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                _SELECT + " AND e.seq > $6 ORDER BY e.seq LIMIT $7", *args, after_seq, limit
            )
            totals = await conn.fetch(
                "SELECT e.entry_type, e.direction, count(*) AS entries, sum(e.amount) AS points"
                + _FROM
                + " GROUP BY e.entry_type, e.direction ORDER BY e.entry_type",
                *args,
            )
        credited = sum(t["points"] for t in totals if t["direction"] == "credit")
        debited = sum(t["points"] for t in totals if t["direction"] == "debit")
        return {
            "items": [row_values(r) for r in rows],
            "next_after_seq": rows[-1]["seq"] if len(rows) == limit else None,
            "totals": {
                t["entry_type"]: {
                    "direction": t["direction"],
                    "entries": t["entries"],
                    "points": str(t["points"]),
                }
                for t in totals
            },
            "credited": str(credited),
            "debited": str(debited),
            "net": str(credited - debited),
        }
    timeout_s = request.app.state.settings.http_download_timeout_s
    stream = cursor_rows(pool, _SELECT + " ORDER BY e.seq", *args, statement_timeout_s=timeout_s)
    return download_response(
        download_lines(stream, COLUMNS, format, row_values),
        name="wallet-transactions",
        format=format,
        timeout_s=timeout_s,
    )


@router.get(
    "/v1/wallet/reports/liability",
    summary="Outstanding points at the end of a day, by campaign and member (JSON page, CSV, JSON lines)",
    response_model=None,
    responses={200: {"model": LiabilityReport, **DOWNLOAD_RESPONSES[200]}},
)
async def liability(
    request: Request,
    pool: DbPool,
    _: Principal = Depends(require_roles(*REPORT_ROLES)),
    as_of: Annotated[
        date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="a UTC day; default today")
    ] = None,
    campaign_id: Annotated[Identifier | None, Query()] = None,
    member_id: Annotated[Identifier | None, Query()] = None,
    format: Annotated[Literal["json", "csv", "jsonl"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=1000, description="members per JSON page")] = 100,
    after_member: Annotated[Identifier | None, Query(description="JSON paging cursor")] = None,
) -> Any:
    """Points earned and still held at the end of `as_of`: every lot's points less what debits took
    from it by then, per campaign (null: not awarded by a campaign) and member."""
    day = as_of or datetime.now(UTC).date()
    cutoff = finance.end_of_day(day)
    scope = finance_repo.Outstanding(cutoff, campaign_id, member_id)
    if format != "json":
        timeout_s = request.app.state.settings.http_download_timeout_s
        stream = cursor_rows(
            pool, finance_repo.ORDERED_OUTSTANDING, *scope.args(), statement_timeout_s=timeout_s
        )
        return download_response(
            download_lines(stream, finance.LIABILITY_COLUMNS, format),
            name=f"points-liability-{day.isoformat()}",
            format=format,
            timeout_s=timeout_s,
        )
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        total, members, by_campaign = await finance.liability_totals(conn, scope)
        items, next_after = await finance.liability_page(
            conn, scope, after_member=after_member, members=limit
        )
    return LiabilityReport(
        as_of=day,
        cutoff=cutoff,
        total_points=str(total),
        members=members,
        by_campaign=[CampaignLiability(**c) for c in by_campaign],
        items=[MemberLiability(**i) for i in items],
        next_after_member=next_after,
    )


@router.get(
    "/v1/wallet/reports/month-end",
    summary="A month's points earned, refunded, burned, expired and adjusted, with the opening and "
    "closing liability",
    response_model=MonthEndSummary,
)
async def month_end(
    pool: DbPool,
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM (UTC)")],
    _: Principal = Depends(require_roles(*REPORT_ROLES)),
) -> dict[str, Any]:
    start, end = finance.month_bounds(month)
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        figures = await finance.month_end(conn, start, end)
    return finance.month_end_view(month, start, end, figures)
