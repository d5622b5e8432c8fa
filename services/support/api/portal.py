"""HTTP: the agent and ops portal — look an order up, resend its voucher, grant goodwill points."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import NoNul
from chassis.problems import Problem
from services.support import portal
from services.support.api.common import Ctx, Staff, StaffReader, caller_of
from services.support.api.views import AgentAction, PortalOrder
from services.support.domain.goodwill import GoodwillLimitExceeded, JustificationRequired


class _AgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: Annotated[str, NoNul] | None = Field(default=None, min_length=1, max_length=200)
    reason: Annotated[str, NoNul] | None = Field(default=None, max_length=2000)
    idempotency_key: Annotated[str, NoNul] | None = Field(
        default=None, min_length=1, max_length=200, description="repeat it to repeat the request safely"
    )


class ResendBody(_AgentBody):
    delivery_id: uuid.UUID | None = Field(default=None, description="absent: the order's latest delivery")


class GoodwillBody(_AgentBody):
    points: int = Field(gt=0, description="whole points to credit")


def _request(principal: Principal, body: _AgentBody) -> portal.AgentRequest:
    return portal.AgentRequest(
        actor=caller_of(principal).actor,
        roles=sorted(str(r) for r in principal.roles),
        ticket_id=body.ticket_id,
        reason=body.reason.strip() if body.reason else None,
        idempotency_key=body.idempotency_key,
    )


def _justification_problem() -> Problem:
    message = "give a ticket_id or a reason"
    return Problem(
        422,
        "justification_required",
        detail="An agent action needs a ticket_id or a reason.",
        errors=[
            {"field": "body.ticket_id", "code": "missing", "message": message},
            {"field": "body.reason", "code": "missing", "message": message},
        ],
    )


async def _agent_action(
    pool: asyncpg.Pool,
    response: Response,
    act: Callable[[Connection], Awaitable[tuple[dict[str, Any], bool]]],
) -> dict[str, Any]:
    """An agent's action in one transaction: 202 when it is new, 200 when it repeats one already
    recorded; refused 422 when the action needs a ticket and a reason and has neither."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            action, created = await act(conn)
    except JustificationRequired as exc:
        raise _justification_problem() from exc
    if not created:
        response.status_code = 200
    return action


router = APIRouter(prefix="/v1/portal", tags=["portal"])


@router.get(
    "/orders/{reference}",
    summary="An order by order id or booking id: state, code (masked), deliveries",
    response_model=PortalOrder,
)
async def get_order(pool: DbPool, reference: str, _: StaffReader) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await portal.order_view(conn, reference)


@router.post(
    "/orders/{reference}/resend",
    status_code=202,
    summary="Ask delivery to send the voucher again (audited)",
    response_model=AgentAction,
)
async def resend(
    ctx: Ctx, pool: DbPool, reference: str, body: ResendBody, response: Response, principal: Staff
) -> dict[str, Any]:
    request = _request(principal, body)
    return await _agent_action(
        pool, response, lambda conn: portal.request_resend(conn, ctx, reference, request, body.delivery_id)
    )


@router.post(
    "/orders/{reference}/goodwill",
    status_code=202,
    summary="Credit goodwill points to the order's member, within the caller's limits (audited)",
    response_model=AgentAction,
)
async def goodwill(
    ctx: Ctx, pool: DbPool, reference: str, body: GoodwillBody, response: Response, principal: Staff
) -> dict[str, Any]:
    request = _request(principal, body)
    try:
        return await _agent_action(
            pool, response, lambda conn: portal.grant_goodwill(conn, ctx, reference, request, body.points)
        )
    except GoodwillLimitExceeded as exc:
        raise Problem(
            422,
            "goodwill_limit_exceeded",
            detail=str(exc),
            errors=[{"field": "body.points", "code": "limit_exceeded", "message": str(exc)}],
        ) from exc
