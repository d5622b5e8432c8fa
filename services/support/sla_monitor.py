"""The SLA monitor: a leader-elected job raising every warning and breach that is due, on time.

A breach escalates the ticket (priority one level up, escalation queue), lands on its timeline and in
the audit log, and goes out as `support.sla_breached` for the notifier; a warning goes out the same way
with `kind` warning. Alerts are recorded once per ticket, target and kind, so overlapping runs (a new
leader taking over mid-run) raise nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import asyncpg
from prometheus_client import Counter

from chassis.db import Connection
from chassis.outbox import add_event
from contracts.envelope import Envelope
from contracts.support import SlaAlertKind, SlaTarget, SupportSlaBreached
from contracts.topics import Topics
from services.support import ticket_repository as repo
from services.support.context import PRODUCER, SLA_MONITOR, SupportContext
from services.support.domain.sla import TargetStatus, alerts_due
from services.support.domain.tickets import TicketQueue, escalated_priority
from services.support.tickets import audit_ticket, calendar_of, refresh_sla, sla_statuses

CHECK_BATCH = 100


SLA_ALERTS: Final = Counter(
    "orchard_support_sla_alerts_total",
    "SLA warnings and breaches raised, by kind and target",
    ["kind", "target"],
)


async def check_sla(pool: asyncpg.Pool, ctx: SupportContext) -> int:
    """One run of the SLA monitor: raise every warning and breach that is due. Returns how many."""
    now = ctx.clock.now()
    raised: list[tuple[SlaAlertKind, SlaTarget]] = []
    while True:
        batch: list[tuple[SlaAlertKind, SlaTarget]] = []
        async with pool.acquire() as conn, conn.transaction():
            ticket_ids = await repo.tickets_to_check(conn, now, CHECK_BATCH)
            for ticket_id in ticket_ids:
                batch += await _check_ticket(conn, ctx, ticket_id, now)
        for kind, target in batch:  # counted once committed
            SLA_ALERTS.labels(kind.value, target.value).inc()
        raised += batch
        if len(ticket_ids) < CHECK_BATCH:
            return len(raised)


async def _check_ticket(
    conn: Connection, ctx: SupportContext, ticket_id: str, now: datetime
) -> list[tuple[SlaAlertKind, SlaTarget]]:
    ticket = await repo.get_ticket(conn, ticket_id)
    assert ticket is not None
    calendar = await calendar_of(conn, ticket.calendar_id)
    pauses = (await repo.pauses_of(conn, [ticket_id])).get(ticket_id, [])
    already = (await repo.alerts_of(conn, [ticket_id])).get(ticket_id, {})
    raised: list[tuple[SlaAlertKind, SlaTarget]] = []
    for status in sla_statuses(ticket, calendar, pauses, now, ctx.settings.sla_warning_share):
        for kind in alerts_due(status, already.get(status.target, ())):
            # A warning names the time the target will be missed; a breach the time it was.
            due = status.due_at or status.warn_at or now
            if await repo.record_alert(conn, ticket_id, status.target, kind, due, now):
                ticket = await _raise_alert(conn, ticket, status, kind, due, now)
                raised.append((kind, status.target))
    await refresh_sla(conn, ctx, ticket_id)
    return raised


async def _raise_alert(
    conn: Connection,
    ticket: repo.TicketRow,
    status: TargetStatus,
    kind: SlaAlertKind,
    due: datetime,
    now: datetime,
) -> repo.TicketRow:
    details: dict[str, Any] = {
        "target": status.target.value,
        "due_at": due.isoformat(),
        "elapsed_s": round(status.elapsed_s),
        "target_s": status.target_s,
    }
    priority = ticket.priority
    if kind is SlaAlertKind.BREACH:
        priority = escalated_priority(ticket.priority)
        breached_field = "fr_breached_at" if status.target is SlaTarget.FIRST_RESPONSE else "res_breached_at"
        await repo.update_ticket(
            conn,
            ticket.ticket_id,
            priority=priority,
            queue=TicketQueue.ESCALATION,
            updated_at=now,
            **{breached_field: due},
        )
        details.update(priority_from=ticket.priority.value, priority_to=priority.value, queue="escalation")
    action = "sla_breached" if kind is SlaAlertKind.BREACH else "sla_warning"
    await repo.add_timeline(conn, ticket.ticket_id, at=now, actor=SLA_MONITOR, kind=action, details=details)
    audited = action + ("_escalated" if kind is SlaAlertKind.BREACH else "")
    await audit_ticket(conn, ticket.ticket_id, actor=SLA_MONITOR, action=audited, details=details)
    alert = SupportSlaBreached(
        ticket_id=ticket.ticket_id,
        kind=kind,
        priority=priority,
        category=ticket.category,
        target=status.target,
        due_at=due,
        breached_at=due if kind is SlaAlertKind.BREACH else None,
        order_id=ticket.order_id,
        assignee=ticket.assignee,
    )
    envelope = Envelope.new(event_type=Topics.SUPPORT_SLA_BREACHED, producer=PRODUCER, data=alert)
    await add_event(conn, envelope, key=ticket.ticket_id)
    updated = await repo.get_ticket(conn, ticket.ticket_id)
    assert updated is not None
    return updated
