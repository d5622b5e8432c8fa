"""SQL for tickets, their timeline, pauses, SLA alerts, policies and calendars."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import asyncpg

from chassis.db import Connection
from contracts.support import SlaAlertKind, SlaTarget, TicketCategory, TicketPriority
from services.support.domain.sla import BusinessCalendar, Pause, SlaPolicy
from services.support.domain.tickets import TicketQueue, TicketState


@dataclass(frozen=True)
class TicketRow:
    ticket_id: str
    member_id: str | None
    category: TicketCategory
    order_id: uuid.UUID | None
    booking_id: str | None
    description: str
    priority: TicketPriority
    sla_priority: TicketPriority
    queue: TicketQueue
    assignee: str | None
    state: TicketState
    origin: str
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    fr_target_s: int
    res_target_s: int
    calendar_id: str | None
    # What a new ticket has not reached yet: answered, resolved, closed, a target met, missed or due.
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    fr_met: bool | None = None
    res_met: bool | None = None
    fr_breached_at: datetime | None = None
    res_breached_at: datetime | None = None
    sla_next_check_at: datetime | None = None
    sla_due_at: datetime | None = None

    def met_at(self, target: SlaTarget) -> datetime | None:
        return self.first_response_at if target is SlaTarget.FIRST_RESPONSE else self.resolved_at

    def target_s(self, target: SlaTarget) -> int:
        return self.fr_target_s if target is SlaTarget.FIRST_RESPONSE else self.res_target_s


_COLUMNS = ", ".join(f.name for f in fields(TicketRow))
_ENUMS: dict[str, Any] = {
    "category": TicketCategory,
    "priority": TicketPriority,
    "sla_priority": TicketPriority,
    "queue": TicketQueue,
    "state": TicketState,
}
_UPDATABLE = frozenset(f.name for f in fields(TicketRow)) - {"ticket_id", "opened_at", "opened_by", "origin"}


def _db(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _ticket(row: asyncpg.Record) -> TicketRow:
    values = {name: (_ENUMS[name](value) if name in _ENUMS else value) for name, value in row.items()}
    return TicketRow(**values)


NO_DUE = datetime(9999, 12, 31, tzinfo=UTC)
"""Where tickets whose clock stands still sort when listing by due time: last."""
NO_DUE_SQL = "'9999-12-31T00:00:00Z'::timestamptz"


@dataclass(frozen=True)
class TicketFilters:
    member_id: str | None = None
    states: Sequence[TicketState] = ()
    priorities: Sequence[TicketPriority] = ()
    categories: Sequence[TicketCategory] = ()
    assignee: str | None = None
    unassigned: bool = False
    queue: TicketQueue | None = None
    order_id: uuid.UUID | None = None


async def insert_ticket(conn: Connection, ticket: TicketRow) -> bool:
    """Insert; False when a unique rule refused it (the order already has its automatic ticket)."""
    values = [getattr(ticket, f.name) for f in fields(TicketRow)]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    inserted = await conn.fetchval(
        f"INSERT INTO tickets ({_COLUMNS}) VALUES ({placeholders})"  # noqa: S608 -- columns are TicketRow's field names; values are bind parameters
        " ON CONFLICT (order_id) WHERE origin = 'delivery_failed' DO NOTHING RETURNING ticket_id",
        *[_db(v) for v in values],
    )
    return inserted is not None


async def get_ticket(conn: Connection, ticket_id: str, *, for_update: bool = False) -> TicketRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tickets WHERE ticket_id = $1{lock}", ticket_id)  # noqa: S608 -- lock is FOR UPDATE or nothing; values are bind parameters
    return _ticket(row) if row else None


async def auto_ticket_of_order(conn: Connection, order_id: uuid.UUID) -> TicketRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM tickets WHERE order_id = $1 AND origin = 'delivery_failed' FOR UPDATE",  # noqa: S608 -- columns are TicketRow's field names; values are bind parameters
        order_id,
    )
    return _ticket(row) if row else None


async def update_ticket(conn: Connection, ticket_id: str, **changes: Any) -> None:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = list(changes)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    values = [_db(changes[n]) for n in names]
    await conn.execute(f"UPDATE tickets SET {assignments} WHERE ticket_id = $1", ticket_id, *values)  # noqa: S608 -- SET columns checked against _UPDATABLE; values are bind parameters


async def list_tickets(
    conn: Connection,
    filters: TicketFilters,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    by_sla_due: bool = False,
) -> list[TicketRow]:
    sort_key = f"coalesce(sla_due_at, {NO_DUE_SQL})" if by_sla_due else "opened_at"
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.member_id is not None:
        clauses.append(f"member_id = {arg(filters.member_id)}")
    if filters.states:
        clauses.append(f"state = ANY({arg([s.value for s in filters.states])}::text[])")
    if filters.priorities:
        clauses.append(f"priority = ANY({arg([p.value for p in filters.priorities])}::text[])")
    if filters.categories:
        clauses.append(f"category = ANY({arg([c.value for c in filters.categories])}::text[])")
    if filters.assignee is not None:
        clauses.append(f"assignee = {arg(filters.assignee)}")
    if filters.unassigned:
        clauses.append("assignee IS NULL")
    if filters.queue is not None:
        clauses.append(f"queue = {arg(filters.queue.value)}")
    if filters.order_id is not None:
        clauses.append(f"order_id = {arg(filters.order_id)}")
    if after is not None:
        clauses.append(f"({sort_key}, ticket_id) > ({arg(after[0])}, {arg(after[1])})")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM tickets {where} ORDER BY {sort_key}, ticket_id LIMIT {arg(limit)}",  # noqa: S608 -- WHERE from fixed fragments, sort key one of two literals; values are bind parameters
        *args,
    )
    return [_ticket(r) for r in rows]


async def pauses_of(conn: Connection, ticket_ids: Sequence[str]) -> dict[str, list[Pause]]:
    rows = await conn.fetch(
        "SELECT ticket_id, started_at, ended_at FROM ticket_pauses WHERE ticket_id = ANY($1::text[])"
        " ORDER BY ticket_id, started_at",
        list(ticket_ids),
    )
    result: dict[str, list[Pause]] = defaultdict(list)
    for r in rows:
        result[r["ticket_id"]].append(Pause(r["started_at"], r["ended_at"]))
    return result


async def start_pause(conn: Connection, ticket_id: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO ticket_pauses (ticket_id, started_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        ticket_id,
        at,
    )


async def end_pause(conn: Connection, ticket_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE ticket_pauses SET ended_at = greatest($2, started_at)"
        " WHERE ticket_id = $1 AND ended_at IS NULL",
        ticket_id,
        at,
    )


async def alerts_of(
    conn: Connection, ticket_ids: Sequence[str]
) -> dict[str, dict[SlaTarget, set[SlaAlertKind]]]:
    rows = await conn.fetch(
        "SELECT ticket_id, target, kind FROM sla_alerts WHERE ticket_id = ANY($1::text[])", list(ticket_ids)
    )
    result: dict[str, dict[SlaTarget, set[SlaAlertKind]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        result[r["ticket_id"]][SlaTarget(r["target"])].add(SlaAlertKind(r["kind"]))
    return result


async def record_alert(
    conn: Connection,
    ticket_id: str,
    target: SlaTarget,
    kind: SlaAlertKind,
    due_at: datetime,
    raised_at: datetime,
) -> bool:
    """True the first time; a second detection of the same alert (an overlapping leader) records nothing."""
    inserted = await conn.fetchval(
        "INSERT INTO sla_alerts (ticket_id, target, kind, due_at, raised_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING RETURNING ticket_id",
        ticket_id,
        target.value,
        kind.value,
        due_at,
        raised_at,
    )
    return inserted is not None


async def tickets_to_check(conn: Connection, now: datetime, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT ticket_id FROM tickets WHERE sla_next_check_at <= $1 ORDER BY sla_next_check_at"
        " LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [r["ticket_id"] for r in rows]


async def add_timeline(
    conn: Connection,
    ticket_id: str,
    *,
    at: datetime,
    actor: str,
    kind: str,
    from_state: TicketState | None = None,
    to_state: TicketState | None = None,
    body: str | None = None,
    internal: bool = False,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO ticket_events (ticket_id, occurred_at, actor, kind, from_state, to_state, body,"
        " internal, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
        ticket_id,
        at,
        actor,
        kind,
        from_state.value if from_state else None,
        to_state.value if to_state else None,
        body,
        internal,
        json.dumps(details or {}, default=str),
    )


async def timeline_of(conn: Connection, ticket_id: str, *, include_internal: bool) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT event_seq, occurred_at, actor, kind, from_state, to_state, body, internal, details::text"
        " AS details FROM ticket_events WHERE ticket_id = $1 AND (internal = false OR $2) ORDER BY event_seq",
        ticket_id,
        include_internal,
    )
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def _calendar(row: asyncpg.Record) -> BusinessCalendar:
    return BusinessCalendar(
        calendar_id=row["calendar_id"],
        timezone=row["timezone"],
        working_days=frozenset(row["working_days"]),
        day_start=row["day_start"],
        day_end=row["day_end"],
        holidays=frozenset(row["holidays"]),
    )


async def calendars(conn: Connection) -> dict[str, BusinessCalendar]:
    rows = await conn.fetch(
        "SELECT calendar_id, timezone, working_days, day_start, day_end, holidays FROM business_calendars"
        " ORDER BY calendar_id"
    )
    return {r["calendar_id"]: _calendar(r) for r in rows}


async def upsert_calendar(conn: Connection, calendar: BusinessCalendar, at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO business_calendars (calendar_id, timezone, working_days, day_start, day_end, holidays,
                                        updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (calendar_id) DO UPDATE SET timezone = $2, working_days = $3, day_start = $4,
            day_end = $5, holidays = $6, updated_at = $7
        """,
        calendar.calendar_id,
        calendar.timezone,
        sorted(calendar.working_days),
        calendar.day_start,
        calendar.day_end,
        sorted(calendar.holidays),
        at,
    )


async def policies(conn: Connection) -> list[SlaPolicy]:
    rows = await conn.fetch(
        "SELECT priority, category, first_response_s, resolution_s, calendar_id FROM sla_policies"
        " ORDER BY priority, category NULLS FIRST"
    )
    return [
        SlaPolicy(
            priority=TicketPriority(r["priority"]),
            category=TicketCategory(r["category"]) if r["category"] else None,
            first_response_s=r["first_response_s"],
            resolution_s=r["resolution_s"],
            calendar_id=r["calendar_id"],
        )
        for r in rows
    ]


async def upsert_policy(conn: Connection, policy: SlaPolicy, at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO sla_policies (priority, category, first_response_s, resolution_s, calendar_id, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (priority, COALESCE(category, '')) DO UPDATE SET first_response_s = $3, resolution_s = $4,
            calendar_id = $5, updated_at = $6
        """,
        policy.priority.value,
        policy.category.value if policy.category else None,
        policy.first_response_s,
        policy.resolution_s,
        policy.calendar_id,
        at,
    )


async def delete_policy(conn: Connection, priority: TicketPriority, category: TicketCategory) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM sla_policies WHERE priority = $1 AND COALESCE(category, '') = $2 RETURNING policy_id",
        priority.value,
        category.value,
    )
    return deleted is not None


async def attach_member_to_order_tickets(
    conn: Connection, order_id: uuid.UUID, member_id: str, booking_id: str
) -> None:
    """Tickets opened before the order was known (a delivery failure seen first) get its member."""
    await conn.execute(
        "UPDATE tickets SET member_id = coalesce(member_id, $2), booking_id = coalesce(booking_id, $3)"
        " WHERE order_id = $1 AND (member_id IS NULL OR booking_id IS NULL)",
        order_id,
        member_id,
        booking_id,
    )


async def report_rows(
    conn: Connection, since: datetime | None, until: datetime | None
) -> list[asyncpg.Record]:
    """Outcome counts per SLA priority, category and ISO week of opening."""
    return await conn.fetch(
        """
        WITH outcomes AS (
            SELECT sla_priority, category, date_trunc('week', opened_at AT TIME ZONE 'UTC')::date AS week,
                   CASE WHEN fr_met IS TRUE THEN 'met'
                        WHEN fr_met IS FALSE OR fr_breached_at IS NOT NULL THEN 'missed'
                        ELSE 'pending' END AS fr,
                   CASE WHEN res_met IS TRUE AND resolved_at IS NOT NULL THEN 'met'
                        WHEN (res_met IS FALSE AND resolved_at IS NOT NULL) OR res_breached_at IS NOT NULL
                             THEN 'missed'
                        ELSE 'pending' END AS res
              FROM tickets
             WHERE ($1::timestamptz IS NULL OR opened_at >= $1)
               AND ($2::timestamptz IS NULL OR opened_at < $2)
        )
        SELECT sla_priority, category, week, count(*) AS tickets,
               count(*) FILTER (WHERE fr = 'met') AS fr_met,
               count(*) FILTER (WHERE fr = 'missed') AS fr_missed,
               count(*) FILTER (WHERE res = 'met') AS res_met,
               count(*) FILTER (WHERE res = 'missed') AS res_missed
          FROM outcomes GROUP BY sla_priority, category, week ORDER BY week, sla_priority, category
        """,
        since,
        until,
    )
