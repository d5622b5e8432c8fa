"""HTTP: SLA policies, business calendars and the compliance report."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import Identifier, LocalTime, NoNul
from chassis.problems import Problem, invalid_field
from contracts.support import TicketCategory, TicketPriority
from services.support import ticket_repository as repo
from services.support.api.common import Ctx, StaffReader, caller_of
from services.support.api.views import CalendarOut, PolicyOut, SlaReport
from services.support.domain.sla import BusinessCalendar, SlaPolicy


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: TicketPriority
    category: TicketCategory | None = None
    first_response_s: int = Field(gt=0, le=365 * 86400)
    resolution_s: int = Field(gt=0, le=365 * 86400)
    calendar_id: Identifier | None = Field(
        default=None, description="absent: the clock runs around the clock"
    )


class CalendarBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul] = "UTC"
    working_days: list[int] = Field(
        default=[1, 2, 3, 4, 5], min_length=1, description="ISO weekdays, 1 = Monday"
    )
    day_start: LocalTime = Field(default=time(9, 0), description="local time in `timezone`, no offset")
    day_end: LocalTime = Field(default=time(17, 0), description="local time in `timezone`, no offset")
    holidays: list[date] = Field(default_factory=list)


def _share(met: int, missed: int) -> float | None:
    settled = met + missed
    return round(met / settled, 4) if settled else None


def _outcome(counts: dict[str, int]) -> dict[str, Any]:
    return {
        "tickets": counts["tickets"],
        "first_response": {
            "met": counts["fr_met"],
            "missed": counts["fr_missed"],
            "share_met": _share(counts["fr_met"], counts["fr_missed"]),
        },
        "resolution": {
            "met": counts["res_met"],
            "missed": counts["res_missed"],
            "share_met": _share(counts["res_met"], counts["res_missed"]),
        },
    }


_COUNTS = ("tickets", "fr_met", "fr_missed", "res_met", "res_missed")


router = APIRouter(prefix="/v1/sla", tags=["sla"])
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]


@router.get("/policies", summary="SLA policies per priority (and category)", response_model=list[PolicyOut])
async def list_policies(pool: DbPool, _: StaffReader) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [p.__dict__ for p in await repo.policies(conn)]


@router.put(
    "/policies",
    summary="Create or replace the policy of a priority (and category)",
    response_model=PolicyOut,
)
async def put_policy(ctx: Ctx, pool: DbPool, body: PolicyBody, principal: Admin) -> dict[str, Any]:
    policy = SlaPolicy(**body.model_dump())
    async with pool.acquire() as conn, conn.transaction():
        if body.calendar_id is not None and body.calendar_id not in await repo.calendars(conn):
            raise invalid_field("body.calendar_id", "unknown", "no such calendar")
        await repo.upsert_policy(conn, policy, ctx.clock.now())
        subject_id = f"{policy.priority}/{policy.category or '*'}"
        await _audited(conn, principal, "sla.policy_set", "sla_policy", subject_id, body)
    return policy.__dict__


@router.delete("/policies", status_code=204, summary="Remove a category's own policy (the priority's stays)")
async def delete_policy(
    pool: DbPool,
    principal: Admin,
    priority: TicketPriority = Query(),
    category: TicketCategory = Query(description="only category policies can go: every priority keeps one"),
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.delete_policy(conn, priority, category):
            raise Problem(404, "policy_not_found", detail=f"No policy for {priority} tickets of {category}.")
        await _audited(conn, principal, "sla.policy_removed", "sla_policy", f"{priority}/{category}")


@router.get("/calendars", summary="Business calendars", response_model=list[CalendarOut])
async def list_calendars(pool: DbPool, _: StaffReader) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [_calendar_out(c) for c in (await repo.calendars(conn)).values()]


@router.put(
    "/calendars/{calendar_id}",
    summary="Create or replace a business calendar",
    response_model=CalendarOut,
)
async def put_calendar(
    ctx: Ctx, pool: DbPool, calendar_id: Annotated[Identifier, Path()], body: CalendarBody, principal: Admin
) -> dict[str, Any]:
    calendar = BusinessCalendar(
        calendar_id=calendar_id,
        timezone=body.timezone,
        working_days=frozenset(body.working_days),
        day_start=body.day_start,
        day_end=body.day_end,
        holidays=frozenset(body.holidays),
    )
    async with pool.acquire() as conn, conn.transaction():
        await repo.upsert_calendar(conn, calendar, ctx.clock.now())
        await _audited(conn, principal, "sla.calendar_set", "business_calendar", calendar_id, body)
    return _calendar_out(calendar)


def _calendar_out(calendar: BusinessCalendar) -> dict[str, Any]:
    """A calendar as `CalendarOut`: its days as sorted lists."""
    return {
        **calendar.__dict__,
        "working_days": sorted(calendar.working_days),
        "holidays": sorted(calendar.holidays),
    }


async def _audited(
    conn: Connection,
    principal: Principal,
    action: str,
    subject_type: str,
    subject_id: str,
    body: BaseModel | None = None,
) -> None:
    """An admin's change to the SLA settings in the audit log, with the body that made it."""
    details = body.model_dump(mode="json") if body is not None else None
    await append_audit(
        conn,
        actor=caller_of(principal).actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


@router.get(
    "/report",
    summary="Share of tickets meeting each target per priority, category and week",
    response_model=SlaReport,
)
async def report(
    pool: DbPool,
    _: StaffReader,
    since: date | None = Query(default=None, alias="from", description="tickets opened on or after"),
    until: date | None = Query(default=None, alias="to", description="tickets opened before"),
) -> dict[str, Any]:
    def instant(day: date | None) -> datetime | None:
        return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)

    async with pool.acquire() as conn:
        rows = await repo.report_rows(conn, instant(since), instant(until))
    totals: dict[str, dict[Any, dict[str, int]]] = {
        "priority": defaultdict(lambda: dict.fromkeys(_COUNTS, 0)),
        "category": defaultdict(lambda: dict.fromkeys(_COUNTS, 0)),
        "week": defaultdict(lambda: dict.fromkeys(_COUNTS, 0)),
    }
    detail = []
    for row in rows:
        counts = {name: int(row[name]) for name in _COUNTS}
        week = row["week"]
        detail.append(
            {
                "priority": row["sla_priority"],
                "category": row["category"],
                "week": week,
                **_outcome(counts),
            }
        )
        for dimension, key in (
            ("priority", row["sla_priority"]),
            ("category", row["category"]),
            ("week", week),
        ):
            for name in _COUNTS:
                totals[dimension][key][name] += counts[name]
    return {
        "from": since,
        "to": until,
        "rows": detail,
        "by_priority": [{"priority": k, **_outcome(v)} for k, v in sorted(totals["priority"].items())],
        "by_category": [{"category": k, **_outcome(v)} for k, v in sorted(totals["category"].items())],
        "by_week": [
            {"week": k, "week_end": k + timedelta(days=7), **_outcome(v)}
            for k, v in sorted(totals["week"].items())
        ],
    }
