"""Ticket use cases: open, move, comment, assign; SLA bookkeeping after every change; the SLA monitor."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection
from contracts.support import (
    SlaTarget,
    TicketCategory,
    TicketPriority,
)
from services.support import ticket_repository as repo
from services.support.context import SupportContext
from services.support.domain.sla import (
    BusinessCalendar,
    Pause,
    SlaConfigError,
    SlaPolicy,
    TargetStatus,
    choose_policy,
    evaluate_target,
    next_check_at,
)
from services.support.domain.tickets import (
    PAUSED_STATES,
    TicketError,
    TicketQueue,
    TicketState,
    counts_as_first_response,
    is_reopen,
    state_after_customer_reply,
    transition,
)
from services.support.member_notices import tell_member

_ID_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_ID_ATTEMPTS = 5


class TicketNotFound(TicketError):
    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"no ticket {ticket_id}")


class InternalNoteNotAllowed(TicketError):
    def __init__(self) -> None:
        super().__init__("members cannot write internal notes")


def new_ticket_id() -> str:
    return "TK-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


@dataclass(frozen=True)
class Caller:
    """Who acts: `actor` for the timeline and audit, `member_id` set when a member acts for themself."""

    actor: str
    member_id: str | None = None

    @property
    def is_member(self) -> bool:
        return self.member_id is not None

    @property
    def is_staff(self) -> bool:
        """A person on the support side; the service's own monitors are neither staff nor member."""
        return not self.is_member and not self.actor.startswith("system:")


@dataclass(frozen=True)
class TicketView:
    ticket: repo.TicketRow
    sla: tuple[TargetStatus, TargetStatus]


def sla_statuses(
    ticket: repo.TicketRow,
    calendar: BusinessCalendar | None,
    pauses: list[Pause],
    now: datetime,
    warning_share: float,
) -> tuple[TargetStatus, TargetStatus]:
    def status(target: SlaTarget) -> TargetStatus:
        return evaluate_target(
            target,
            target_s=ticket.target_s(target),
            calendar=calendar,
            opened_at=ticket.opened_at,
            pauses=pauses,
            met_at=ticket.met_at(target),
            now=now,
            warning_share=warning_share,
        )

    return status(SlaTarget.FIRST_RESPONSE), status(SlaTarget.RESOLUTION)


async def calendar_of(conn: Connection, calendar_id: str | None) -> BusinessCalendar | None:
    if calendar_id is None:
        return None
    calendar = (await repo.calendars(conn)).get(calendar_id)
    if calendar is None:
        raise SlaConfigError(f"unknown calendar {calendar_id}")
    return calendar


async def views(conn: Connection, ctx: SupportContext, tickets: list[repo.TicketRow]) -> list[TicketView]:
    now = ctx.clock.now()
    calendars = await repo.calendars(conn)
    pauses = await repo.pauses_of(conn, [t.ticket_id for t in tickets])
    share = ctx.settings.sla_warning_share
    return [
        TicketView(
            t,
            sla_statuses(
                t,
                calendars.get(t.calendar_id) if t.calendar_id else None,
                pauses.get(t.ticket_id, []),
                now,
                share,
            ),
        )
        for t in tickets
    ]


async def refresh_sla(conn: Connection, ctx: SupportContext, ticket_id: str) -> repo.TicketRow:
    """Recompute when the SLA monitor must next look at the ticket (after any change to it)."""
    ticket = await repo.get_ticket(conn, ticket_id)
    assert ticket is not None
    now = ctx.clock.now()
    calendar = await calendar_of(conn, ticket.calendar_id)
    pauses = (await repo.pauses_of(conn, [ticket_id])).get(ticket_id, [])
    raised = (await repo.alerts_of(conn, [ticket_id])).get(ticket_id, {})
    statuses = sla_statuses(ticket, calendar, pauses, now, ctx.settings.sla_warning_share)
    check_at = None if ticket.state is TicketState.CLOSED else next_check_at(statuses, raised, now=now)
    due = min((s.due_at for s in statuses if not s.settled and s.due_at is not None), default=None)
    await repo.update_ticket(conn, ticket_id, sla_next_check_at=check_at, sla_due_at=due)
    return ticket


async def open_ticket(
    conn: Connection,
    ctx: SupportContext,
    caller: Caller,
    *,
    category: TicketCategory,
    priority: TicketPriority,
    description: str,
    member_id: str | None,
    order_id: uuid.UUID | None,
    booking_id: str | None,
    assignee: str | None = None,
    origin: str,
) -> repo.TicketRow | None:
    """A new ticket with its SLA targets from the matching policy; None if a unique rule refused it."""
    policy = choose_policy(await repo.policies(conn), priority, category)
    now = ctx.clock.now()
    ticket = _new_ticket(
        policy,
        opened_by=caller.actor,
        opened_at=now,
        member_id=member_id,
        category=category,
        order_id=order_id,
        booking_id=booking_id,
        description=description,
        priority=priority,
        assignee=assignee,
        origin=origin,
    )
    inserted = await _insert_with_free_id(conn, ticket)
    if inserted is None:
        return None
    ticket = inserted
    details = {
        "category": category.value,
        "priority": priority.value,
        "order_id": str(order_id) if order_id else None,
        "booking_id": booking_id,
        "member_id": member_id,
        "origin": origin,
    }
    await repo.add_timeline(
        conn, ticket.ticket_id, at=now, actor=caller.actor, kind="created", details=details
    )
    await audit_ticket(conn, ticket.ticket_id, actor=caller.actor, action="opened", details=details)
    return await refresh_sla(conn, ctx, ticket.ticket_id)


def _new_ticket(policy: SlaPolicy, *, opened_by: str, opened_at: datetime, **fields: Any) -> repo.TicketRow:
    """An open ticket in the standard queue with the policy's SLA targets, none of them met or missed yet."""
    return repo.TicketRow(
        ticket_id=new_ticket_id(),
        sla_priority=fields["priority"],
        queue=TicketQueue.STANDARD,
        state=TicketState.OPEN,
        opened_by=opened_by,
        opened_at=opened_at,
        updated_at=opened_at,
        fr_target_s=policy.first_response_s,
        res_target_s=policy.resolution_s,
        calendar_id=policy.calendar_id,
        **fields,
    )


async def audit_ticket(
    conn: Connection, ticket_id: str, *, actor: str, action: str, details: dict[str, Any]
) -> None:
    """The audit entry of a change to the ticket: `ticket.<action>`."""
    await append_audit(
        conn,
        actor=actor,
        action=f"ticket.{action}",
        subject_type="ticket",
        subject_id=ticket_id,
        details=details,
    )


async def _insert_with_free_id(conn: Connection, ticket: repo.TicketRow) -> repo.TicketRow | None:
    """The ticket as inserted, under a fresh id if its id was taken; None if a unique rule refused it."""
    for _ in range(_ID_ATTEMPTS):
        try:
            async with conn.transaction():  # a savepoint: a clashing id is retried, not fatal
                return ticket if await repo.insert_ticket(conn, ticket) else None
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "tickets_pkey":
                raise
            ticket = replace(ticket, ticket_id=new_ticket_id())
    raise RuntimeError("could not find a free ticket id")


async def load_for(
    conn: Connection, caller: Caller, ticket_id: str, *, for_update: bool = False
) -> repo.TicketRow:
    """The ticket, if the caller may see it (a member sees only their own; others get "not found")."""
    ticket = await repo.get_ticket(conn, ticket_id, for_update=for_update)
    if ticket is None or (caller.is_member and ticket.member_id != caller.member_id):
        raise TicketNotFound(ticket_id)
    return ticket


async def _target_met(
    conn: Connection, ctx: SupportContext, ticket: repo.TicketRow, target: SlaTarget, at: datetime
) -> bool:
    calendar = await calendar_of(conn, ticket.calendar_id)
    pauses = (await repo.pauses_of(conn, [ticket.ticket_id])).get(ticket.ticket_id, [])
    status = evaluate_target(
        target,
        target_s=ticket.target_s(target),
        calendar=calendar,
        opened_at=ticket.opened_at,
        pauses=pauses,
        met_at=at,
        now=at,
        warning_share=ctx.settings.sla_warning_share,
    )
    return status.phase.value == "met"


async def _first_response(
    conn: Connection, ctx: SupportContext, ticket: repo.TicketRow, at: datetime
) -> dict[str, Any]:
    if ticket.first_response_at is not None:
        return {}
    return {
        "first_response_at": at,
        "fr_met": await _target_met(conn, ctx, ticket, SlaTarget.FIRST_RESPONSE, at),
    }


async def _move(
    conn: Connection, ctx: SupportContext, ticket: repo.TicketRow, target: TicketState, at: datetime
) -> dict[str, Any]:
    """Pauses and SLA fields that follow from moving the ticket to `target` (state already checked)."""
    changes: dict[str, Any] = {"state": target, "updated_at": at}
    was_paused, now_paused = ticket.state in PAUSED_STATES, target in PAUSED_STATES
    if target is TicketState.RESOLVED:
        changes["resolved_at"] = at
        changes["res_met"] = await _target_met(conn, ctx, ticket, SlaTarget.RESOLUTION, at)
    if target is TicketState.CLOSED:
        changes["closed_at"] = at
    if is_reopen(ticket.state, target):
        changes.update(resolved_at=None, res_met=None, closed_at=None)
    if now_paused and not was_paused:
        await repo.start_pause(conn, ticket.ticket_id, at)
    elif was_paused and not now_paused:
        await repo.end_pause(conn, ticket.ticket_id, at)
    return changes


async def change_state(
    conn: Connection,
    ctx: SupportContext,
    caller: Caller,
    ticket_id: str,
    target: TicketState,
    note: str | None,
) -> repo.TicketRow:
    ticket = await load_for(conn, caller, ticket_id, for_update=True)
    new_state = transition(ticket.state, target, by_member=caller.is_member)
    now = ctx.clock.now()
    changes = {}
    if counts_as_first_response(by_staff=caller.is_staff):
        changes.update(await _first_response(conn, ctx, ticket, now))
    changes.update(await _move(conn, ctx, ticket, new_state, now))
    await repo.update_ticket(conn, ticket_id, **changes)
    action = "reopened" if is_reopen(ticket.state, new_state) else "state_changed"
    await repo.add_timeline(
        conn,
        ticket_id,
        at=now,
        actor=caller.actor,
        kind=action,
        from_state=ticket.state,
        to_state=new_state,
        body=note,
    )
    details = {"from": ticket.state.value, "to": new_state.value, "note": note}
    await audit_ticket(conn, ticket_id, actor=caller.actor, action=action, details=details)
    updated = await refresh_sla(conn, ctx, ticket_id)
    if caller.is_staff:
        await tell_member(conn, updated)
    return updated


async def add_comment(
    conn: Connection, ctx: SupportContext, caller: Caller, ticket_id: str, body: str, *, internal: bool
) -> repo.TicketRow:
    if internal and caller.is_member:
        raise InternalNoteNotAllowed()
    ticket = await load_for(conn, caller, ticket_id, for_update=True)
    now = ctx.clock.now()
    changes: dict[str, Any] = {"updated_at": now}
    if counts_as_first_response(by_staff=caller.is_staff, internal=internal):
        changes.update(await _first_response(conn, ctx, ticket, now))
    if caller.is_member:
        resumed = state_after_customer_reply(ticket.state)
        if resumed is not ticket.state:
            changes.update(await _move(conn, ctx, ticket, resumed, now))
            await repo.add_timeline(
                conn,
                ticket_id,
                at=now,
                actor=caller.actor,
                kind="state_changed",
                from_state=ticket.state,
                to_state=resumed,
                body="the customer replied",
            )
    await repo.update_ticket(conn, ticket_id, **changes)
    await repo.add_timeline(
        conn, ticket_id, at=now, actor=caller.actor, kind="comment", body=body, internal=internal
    )
    updated = await refresh_sla(conn, ctx, ticket_id)
    if caller.is_staff and not internal:
        await tell_member(conn, updated, message=body)
    return updated


async def update_fields(
    conn: Connection,
    ctx: SupportContext,
    caller: Caller,
    ticket_id: str,
    *,
    changes: dict[str, Any],
) -> repo.TicketRow:
    """Staff changes: assignee, priority (re-applies the SLA policy), queue."""
    ticket = await load_for(conn, caller, ticket_id, for_update=True)
    now = ctx.clock.now()
    updates: dict[str, Any] = {}
    if "assignee" in changes and changes["assignee"] != ticket.assignee:
        updates["assignee"] = changes["assignee"]
    if "queue" in changes and changes["queue"] is not None and changes["queue"] is not ticket.queue:
        updates["queue"] = changes["queue"]
    priority = changes.get("priority")
    if priority is not None and priority is not ticket.priority:
        policy = choose_policy(await repo.policies(conn), priority, ticket.category)
        updates.update(
            priority=priority,
            sla_priority=priority,
            fr_target_s=policy.first_response_s,
            res_target_s=policy.resolution_s,
            calendar_id=policy.calendar_id,
        )
    if not updates:
        return ticket
    await repo.update_ticket(conn, ticket_id, updated_at=now, **updates)
    before = {k: _plain(getattr(ticket, k)) for k in updates if k in ("assignee", "queue", "priority")}
    after = {k: _plain(v) for k, v in updates.items() if k in ("assignee", "queue", "priority")}
    change = {"from": before, "to": after}
    await repo.add_timeline(conn, ticket_id, at=now, actor=caller.actor, kind="updated", details=change)
    await audit_ticket(conn, ticket_id, actor=caller.actor, action="updated", details=change)
    return await refresh_sla(conn, ctx, ticket_id)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)
