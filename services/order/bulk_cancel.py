"""Bulk cancellation by the order listing's filters, with a dry run, a cap and maker-checker.

`POST /v1/orders/cancel` takes the listing's filters (query parameters) and a body with `reason` and
`dry_run`. Only pending orders are cancelled; completed and already cancelled ones are skipped and
counted. Each cancellation is the single cancel's: the same decision on the order, its timeline
entry, `order.state_changed` through the outbox and an `order.cancelled` audit entry; orders are
locked and cancelled a chunk per transaction. More matching orders than the cap are refused (422:
narrow the filters). More cancellable orders than the approval threshold wait for a second person:
approving re-applies the filters to the orders created before the request, in the approval's own
transaction (bounded by the cap), so approving and cancelling happen together, once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from chassis.approvals import PENDING_RESPONSE, Approval, ApprovalAction, Approvals, pending_answer
from chassis.audit import append_audit
from chassis.auth import Principal
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.problems import Problem
from contracts.orders import FulfilmentStatus, OrderState

from . import repository
from .api import Canceller, order_filter, request_cause
from .context import Ctx, OrderContext
from .domain import OrderEvent
from .orders import Cause, Followed, audit_order, follow_many

BULK_CANCEL = "order_bulk_cancel"
CHUNK = 500


class BulkCancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why the orders are cancelled")
    dry_run: bool = Field(default=False, description="answer what would be cancelled; change nothing")


class BulkCancelledOrder(BaseModel):
    order_id: uuid.UUID
    booking_id: str
    external_ref: str | None
    campaign_id: str
    member_id: str
    fulfilment_status: FulfilmentStatus | None


class BulkCancelResult(BaseModel):
    dry_run: bool
    matched: int = Field(description="orders the filters match")
    cancellable: int = Field(description="pending orders among them")
    cancelled: int = Field(description="orders this request cancelled (0 on a dry run)")
    skipped_completed: int
    skipped_cancelled: int
    orders: list[BulkCancelledOrder] = Field(
        description="the orders cancelled, or on a dry run those that would be"
    )


@dataclass
class Outcome:
    dry_run: bool
    matched: int = 0
    cancellable: int = 0
    cancelled: int = 0
    skipped_completed: int = 0
    skipped_cancelled: int = 0
    orders: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, state: OrderState) -> None:
        if state is OrderState.COMPLETED:
            self.skipped_completed += 1
        elif state is OrderState.CANCELLED:
            self.skipped_cancelled += 1


def filter_json(flt: repository.OrderFilter) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v if isinstance(v, bool) else str(v))
        for k, v in asdict(flt).items()
        if v is not None
    }


def filter_of(raw: dict[str, Any]) -> repository.OrderFilter:
    """The filter `filter_json` stored."""
    return _STORED_FILTER.validate_python(raw)


_STORED_FILTER = TypeAdapter(repository.OrderFilter)


def _too_many(cap: int) -> Problem:
    return Problem(
        422,
        "too_many_orders",
        detail=f"More than {cap} orders match: narrow the filters (campaign, state, dates) and repeat.",
        errors=[
            {"field": "query", "code": "too_many_orders", "message": f"At most {cap} orders per request."}
        ],
    )


async def survey(conn: Connection, flt: repository.OrderFilter, *, cap: int) -> Outcome:
    """What a bulk cancel would do now: counts per state and the pending orders, oldest first."""
    counts, pending = await repository.cancel_candidates(conn, flt, cap=cap)
    matched = sum(counts.values())
    if matched > cap:
        raise _too_many(cap)
    return Outcome(
        dry_run=True,
        matched=matched,
        cancellable=len(pending),
        skipped_completed=counts.get(OrderState.COMPLETED, 0),
        skipped_cancelled=counts.get(OrderState.CANCELLED, 0),
        orders=pending,
    )


async def cancel_chunk(
    conn: Connection, orders: Sequence[dict[str, Any]], *, cause: Cause, reason: str, outcome: Outcome
) -> None:
    """Cancel these orders as the single cancel does, in the caller's transaction; an order finished
    since the survey is skipped (its timeline records the request that came too late)."""
    items = [Followed(o["order_id"], OrderEvent.CANCEL_REQUESTED, cause, reason) for o in orders]
    decisions = await follow_many(conn, items)
    for order, decision in zip(orders, decisions, strict=True):
        if decision is None:
            continue
        if not decision.applied:
            outcome.skip(decision.before.state)
            continue
        outcome.cancelled += 1
        outcome.orders.append({**order, "fulfilment_status": decision.before.fulfilment})
        await audit_order(
            conn,
            actor=cause.actor,
            action="order.cancelled",
            order_id=order["order_id"],
            details={"reason": reason, "booking_id": order["booking_id"], "bulk": True},
        )


async def _audit_bulk(conn: Connection, actor: str, flt: repository.OrderFilter, outcome: Outcome) -> None:
    await append_audit(
        conn,
        actor=actor,
        action="orders.bulk_cancelled",
        subject_type="order_filter",
        subject_id=canonical_filter(flt),
        details={
            "filters": filter_json(flt),
            "matched": outcome.matched,
            "cancelled": outcome.cancelled,
            "skipped_completed": outcome.skipped_completed,
            "skipped_cancelled": outcome.skipped_cancelled,
        },
    )


def canonical_filter(flt: repository.OrderFilter) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(filter_json(flt).items()))[:200] or "all"


def _answer(outcome: Outcome) -> JSONResponse:
    body = BulkCancelResult.model_validate(asdict(outcome))
    return JSONResponse(body.model_dump(mode="json"))


def bulk_cancel_approval(ctx: OrderContext) -> ApprovalAction:
    async def perform(conn: Connection, approval: Approval) -> dict[str, Any]:
        flt = filter_of(approval.request["filters"])
        requested_at = datetime.fromisoformat(approval.request["created_before"])
        flt = replace(flt, created_to=min(flt.created_to or requested_at, requested_at))
        survey_now = await survey(conn, flt, cap=ctx.settings.bulk_cancel_max_orders)
        outcome = replace(survey_now, dry_run=False, orders=[])
        cause = Cause(actor=approval.maker, correlation_id=str(approval.approval_id))
        for start in range(0, len(survey_now.orders), CHUNK):
            chunk = survey_now.orders[start : start + CHUNK]
            await cancel_chunk(conn, chunk, cause=cause, reason=approval.request["reason"], outcome=outcome)
        await _audit_bulk(conn, approval.maker, flt, outcome)
        return {
            "cancelled": outcome.cancelled,
            "skipped_completed": outcome.skipped_completed,
            "skipped_cancelled": outcome.skipped_cancelled,
        }

    return ApprovalAction(BULK_CANCEL, perform)


router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.post(
    "/cancel",
    summary="Cancel every pending order the listing's filters match (or, with `dry_run`, say which"
    " would be); completed and cancelled ones are skipped and counted; more than the approval"
    " threshold waits for a second person (202)",
    response_model=BulkCancelResult,
    responses={**PENDING_RESPONSE, 422: {"description": "No filter, or more orders than the cap"}},
)
async def bulk_cancel(
    ctx: Ctx,
    pool: DbPool,
    principal: Canceller,
    body: BulkCancelRequest,
    request: Request,
    flt: repository.OrderFilter = Depends(order_filter),
) -> JSONResponse:
    if not filter_json(flt):
        raise Problem(
            422,
            "filter_required",
            detail="Name at least one filter: a bulk cancel never takes every order.",
            errors=[{"field": "query", "code": "filter_required", "message": "Give at least one filter."}],
        )
    settings = ctx.settings
    cause = request_cause(request, principal)
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read"):
            planned = await survey(conn, flt, cap=settings.bulk_cancel_max_orders)
        if body.dry_run:
            return _answer(planned)
        if planned.cancellable > settings.bulk_cancel_approval_above:
            async with conn.transaction():
                approval = await _request_approval(
                    conn, ctx.approvals, flt, planned, reason=body.reason, principal=principal
                )
            return pending_answer(approval)
        outcome = replace(planned, dry_run=False, orders=[])
        for start in range(0, len(planned.orders), CHUNK):
            async with conn.transaction():
                chunk = planned.orders[start : start + CHUNK]
                await cancel_chunk(conn, chunk, cause=cause, reason=body.reason, outcome=outcome)
        async with conn.transaction():
            await _audit_bulk(conn, cause.actor, flt, outcome)
    return _answer(outcome)


async def _request_approval(
    conn: Connection,
    approvals: Approvals,
    flt: repository.OrderFilter,
    planned: Outcome,
    *,
    reason: str,
    principal: Principal,
) -> Approval:
    """The bulk cancel held for a second person, to be re-applied to the orders created until now."""
    described = canonical_filter(flt)
    return await approvals.request(
        conn,
        kind=BULK_CANCEL,
        subject_id=described,
        summary=f"Cancel {planned.cancellable} pending orders matching {described}",
        request={
            "filters": filter_json(flt),
            "reason": reason,
            "created_before": datetime.now(UTC).isoformat(),
            "cancellable": planned.cancellable,
        },
        principal=principal,
        maker=principal.actor,
        reason=reason,
    )
