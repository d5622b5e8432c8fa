"""HTTP: tickets (open, list with SLA status, read with timeline, move, comment, assign)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import NoNul
from chassis.problems import Problem, invalid_field
from contracts.support import TicketCategory, TicketPriority
from services.support import portal_repository as orders
from services.support import ticket_repository as repo
from services.support import tickets
from services.support.api.common import STAFF, STAFF_READ, Ctx, Staff, caller_of, ticket_view
from services.support.api.views import TicketDetail, TicketOut, TicketPage
from services.support.context import SupportContext
from services.support.domain.tickets import ACTIVE_STATES, TicketQueue, TicketState


class TicketSort(StrEnum):
    OPENED_AT = "opened_at"
    SLA_DUE = "sla_due"
    """Most urgent first: the earliest due time of an unmet target; tickets on pause last."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Text without NUL bytes (a text column cannot hold one); each field keeps its own length limits.
Clean = Annotated[str, NoNul]


class TicketCreate(_Body):
    category: TicketCategory
    description: Clean = Field(min_length=1, max_length=4000)
    priority: TicketPriority = TicketPriority.MEDIUM
    order_id: uuid.UUID | None = None
    booking_id: Clean | None = Field(default=None, min_length=1, max_length=200)
    member_id: Clean | None = Field(default=None, min_length=1, max_length=200, description="staff only")
    assignee: Clean | None = Field(default=None, min_length=1, max_length=200, description="staff only")


class TransitionRequest(_Body):
    to: TicketState
    note: Clean | None = Field(default=None, max_length=4000)


class CommentRequest(_Body):
    body: Clean = Field(min_length=1, max_length=8000)
    internal: bool = Field(default=False, description="a note for staff only; members never see it")


class TicketUpdate(_Body):
    assignee: Clean | None = Field(default=None, min_length=1, max_length=200)
    priority: TicketPriority | None = None
    queue: TicketQueue | None = None


def _cursor(ticket: repo.TicketRow, *, by_sla_due: bool) -> str:
    key = (ticket.sla_due_at or repo.NO_DUE) if by_sla_due else ticket.opened_at
    return base64.urlsafe_b64encode(f"{key.isoformat()}|{ticket.ticket_id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        opened, ticket_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(opened), ticket_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_field("query.cursor", "invalid_cursor", "not a cursor from this API") from exc


router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
Anyone = Annotated[Principal, Depends(require_roles(*STAFF_READ, Role.MEMBER))]
Writer = Annotated[Principal, Depends(require_roles(*STAFF, Role.MEMBER))]


async def _views(conn: Any, ctx: SupportContext, rows: list[repo.TicketRow]) -> list[dict[str, Any]]:
    return [ticket_view(v) for v in await tickets.views(conn, ctx, rows)]


async def _changed(
    pool: asyncpg.Pool, ctx: SupportContext, change: Callable[[Connection], Awaitable[repo.TicketRow]]
) -> dict[str, Any]:
    """The ticket's view after `change`, in the change's transaction."""
    async with pool.acquire() as conn, conn.transaction():
        return (await _views(conn, ctx, [await change(conn)]))[0]


@router.post(
    "",
    status_code=201,
    summary="Open a ticket (members for themselves, agents on a member's behalf)",
    response_model=TicketOut,
)
async def open_ticket(ctx: Ctx, pool: DbPool, body: TicketCreate, principal: Writer) -> dict[str, Any]:
    caller = caller_of(principal)
    if caller.is_member and (body.member_id not in (None, caller.member_id) or body.assignee):
        raise Problem(403, "forbidden", detail="Members open tickets for themselves and cannot assign them.")
    async with pool.acquire() as conn, conn.transaction():
        order = None
        if body.order_id or body.booking_id:
            order = await orders.find_order(conn, str(body.order_id or body.booking_id))
        member_id = caller.member_id or body.member_id or (order["member_id"] if order else None)
        if order is not None and order["member_id"] and member_id != order["member_id"]:
            if caller.is_member:
                raise Problem(404, "order_not_found", detail="No such order among your orders.")
            raise invalid_field("body.member_id", "mismatch", "the order is another member's")
        if member_id is None:
            raise invalid_field("body.member_id", "missing", "name the member (or a known order)")
        ticket = await tickets.open_ticket(
            conn,
            ctx,
            caller,
            category=body.category,
            priority=body.priority,
            description=body.description,
            member_id=member_id,
            order_id=body.order_id or (order["order_id"] if order else None),
            booking_id=body.booking_id or (order["booking_id"] if order else None),
            assignee=body.assignee,
            origin="member" if caller.is_member else "agent",
        )
        assert ticket is not None
        return (await _views(conn, ctx, [ticket]))[0]


@router.get("", summary="List tickets with their SLA status (members: their own)", response_model=TicketPage)
async def list_tickets(
    ctx: Ctx,
    pool: DbPool,
    principal: Anyone,
    state: Annotated[list[TicketState] | None, Query()] = None,
    priority: Annotated[list[TicketPriority] | None, Query()] = None,
    category: Annotated[list[TicketCategory] | None, Query()] = None,
    assignee: Clean | None = None,
    unassigned: bool = False,
    queue: TicketQueue | None = None,
    member_id: Clean | None = None,
    order_id: uuid.UUID | None = None,
    open_only: bool = Query(default=False, description="only open, in_progress and waiting_on_customer"),
    sort: TicketSort = TicketSort.OPENED_AT,
    limit: int = Query(default=50, ge=1, le=200),
    cursor: Clean | None = None,
) -> dict[str, Any]:
    caller = caller_of(principal)
    states = list(state or ())
    if open_only and not states:
        states = sorted(ACTIVE_STATES)
    elif open_only:
        states = [s for s in states if s in ACTIVE_STATES]
    filters = repo.TicketFilters(
        member_id=caller.member_id or member_id,
        states=states,
        priorities=list(priority or ()),
        categories=list(category or ()),
        assignee=assignee,
        unassigned=unassigned,
        queue=queue,
        order_id=order_id,
    )
    after = _parse_cursor(cursor) if cursor else None
    async with pool.acquire() as conn:
        if open_only and state and not states:
            rows: list[repo.TicketRow] = []
        else:
            # One more than asked tells whether another page follows.
            rows = await repo.list_tickets(
                conn, filters, limit=limit + 1, after=after, by_sla_due=sort is TicketSort.SLA_DUE
            )
        more = len(rows) > limit
        rows = rows[:limit]
        items = await _views(conn, ctx, rows)
    next_cursor = _cursor(rows[-1], by_sla_due=sort is TicketSort.SLA_DUE) if more else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{ticket_id}", summary="A ticket with its SLA status and timeline", response_model=TicketDetail)
async def get_ticket(ctx: Ctx, pool: DbPool, ticket_id: str, principal: Anyone) -> dict[str, Any]:
    caller = caller_of(principal)
    async with pool.acquire() as conn:
        ticket = await tickets.load_for(conn, caller, ticket_id)
        view = (await _views(conn, ctx, [ticket]))[0]
        view["timeline"] = await repo.timeline_of(conn, ticket_id, include_internal=not caller.is_member)
    return view


@router.post(
    "/{ticket_id}/transitions",
    summary="Move a ticket (reopen: to `open`); 409 when not allowed",
    response_model=TicketOut,
)
async def move(
    ctx: Ctx, pool: DbPool, ticket_id: str, body: TransitionRequest, principal: Writer
) -> dict[str, Any]:
    caller = caller_of(principal)
    return await _changed(
        pool, ctx, lambda conn: tickets.change_state(conn, ctx, caller, ticket_id, body.to, body.note)
    )


@router.post(
    "/{ticket_id}/comments", status_code=201, summary="Comment on a ticket", response_model=TicketOut
)
async def comment(
    ctx: Ctx, pool: DbPool, ticket_id: str, body: CommentRequest, principal: Writer
) -> dict[str, Any]:
    caller = caller_of(principal)
    return await _changed(
        pool,
        ctx,
        lambda conn: tickets.add_comment(conn, ctx, caller, ticket_id, body.body, internal=body.internal),
    )


@router.patch(
    "/{ticket_id}",
    summary="Assign, re-prioritise (re-applies the SLA policy) or move queue",
    response_model=TicketOut,
)
async def update(
    ctx: Ctx, pool: DbPool, ticket_id: str, body: TicketUpdate, principal: Staff
) -> dict[str, Any]:
    caller, changes = caller_of(principal), body.model_dump(exclude_unset=True)
    return await _changed(
        pool, ctx, lambda conn: tickets.update_fields(conn, ctx, caller, ticket_id, changes=changes)
    )
