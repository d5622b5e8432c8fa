"""HTTP in for dashboards: list redemption records with filters, and exact aggregates."""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.money import money_text
from chassis.problems import Problem, invalid_field
from contracts.redemption import RedemptionKind, RedemptionStatus
from services.redemption.records.domain import Record
from services.redemption.records.repository import RecordFilter, aggregate, list_records, per_currency
from services.redemption.views import RecordPage

router = APIRouter(tags=["dashboards"])

DASHBOARD_ROLES = (Role.ADMIN, Role.OPS, Role.FINANCE, Role.AUDITOR, Role.SUPPORT_AGENT, Role.PARTNER)
AGGREGATES = {
    "per_day": "day",
    "per_partner": "partner_id",
    "per_channel": "channel",
    "per_offer": "offer_id",
    "per_segment": "segment_token",
    "per_status": "status",
}


def _cursor(record: Record) -> str:
    return base64.urlsafe_b64encode(f"{record.redeemed_at.isoformat()}|{record.record_id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), uuid.UUID(rid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_field(
            "query.cursor", "invalid", "unknown cursor", detail="cursor is not one this service gave out"
        ) from exc


def record_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = record.as_dict()
    for key, value in fields.items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif key == "amount":
            value = money_text(value, fields.get("currency"))
        elif key == "points" and value is not None:
            value = str(value)
        out[key] = value
    return out


@router.get("/v1/redemption-records", response_model=RecordPage, response_model_exclude_unset=True)
async def redemption_records(
    principal: Annotated[Principal, Depends(require_roles(*DASHBOARD_ROLES))],
    pool: DbPool,
    kind: RedemptionKind | None = None,
    status: RedemptionStatus | None = None,
    partner_id: str | None = None,
    offer_id: str | None = None,
    channel: str | None = None,
    segment_token: str | None = None,
    member_id: Annotated[str | None, Query(description="staff only")] = None,
    date_from: Annotated[date | None, Query(alias="from", description="first UTC day, inclusive")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="last UTC day, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    aggregates: Annotated[bool, Query(description="include counts per day, partner, channel, …")] = True,
) -> dict[str, Any]:
    """Records newest first, and (from the daily aggregates, exact even after retention purges) counts and
    sums per day, partner, channel, offer, segment and status. Partners see only their own."""
    if _sees_only_its_own(principal):
        if partner_id not in (None, principal.sub):
            raise Problem(403, "forbidden", detail="A partner sees only its own redemptions.")
        partner_id = principal.sub
        member_id = None
    if date_from and date_to and date_to < date_from:
        raise invalid_field("query.to", "before_from", "before from", detail="`to` is before `from`")
    flt = RecordFilter(
        kind=kind.value if kind else None,
        status=status.value if status else None,
        partner_id=partner_id,
        offer_id=offer_id,
        channel=channel,
        segment_token=segment_token,
        member_id=member_id,
        date_from=date_from,
        date_to=date_to,
    )
    before = _parse_cursor(cursor) if cursor else None
    async with pool.acquire() as conn:
        records = await list_records(conn, flt, limit=limit, before=before)
        body: dict[str, Any] = {
            "items": [record_json(r) for r in records],
            "next_cursor": _cursor(records[-1]) if len(records) == limit else None,
        }
        if aggregates and member_id is None:
            body["aggregates"] = await _aggregates(conn, flt)
    return body


def _sees_only_its_own(principal: Principal) -> bool:
    """A partner without any other dashboard role: its own redemptions, and no member's."""
    return Role.PARTNER in principal.roles and not principal.has_any_role(
        set(DASHBOARD_ROLES) - {Role.PARTNER}
    )


async def _aggregates(conn: Connection, flt: RecordFilter) -> dict[str, Any]:
    """The filtered records' totals, and their counts and sums per each of `AGGREGATES`."""
    per = {name: await aggregate(conn, flt, dim) for name, dim in AGGREGATES.items()}
    totals = per["per_status"]
    money = per_currency(
        [(m["currency"], Decimal(m["amount"])) for r in totals for m in r["amounts"]],
        records=sum(r["records"] for r in totals),
        points=sum(int(r["points"]) for r in totals),
    )
    return {
        "total": {
            "records": money["records"],
            "by_status": {r["value"]: r["records"] for r in totals},
            "amounts": money["amounts"],
        },
        **per,
    }
