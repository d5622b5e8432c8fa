"""HTTP in for orders: list, export, summary, one order with its timeline, cancellation."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.downloads import (
    DOWNLOAD_RESPONSES,
    DownloadFormat,
    cursor_rows,
    download_lines,
    download_response,
)
from chassis.http import BoundedStreamingResponse
from chassis.inputs import Aware, Identifier, NoNul, ShortText, Text
from chassis.problems import Problem, register_error
from contracts.orders import FulfilmentStatus, OrderSource, OrderState

from . import intake, repository
from .domain import CompletedOrderCannotBeCancelled, OrderNotFound, looks_like_booking_id
from .orders import Cause, audit_order, cancel_order
from .views import OrderPage, OrderSummary, OrderView, json_default, order_json

READ_ROLES = (Role.ADMIN, Role.OPS, Role.SUPPORT_AGENT, Role.AUDITOR, Role.FINANCE)
CANCEL_ROLES = (Role.ADMIN, Role.OPS)
Reader = Annotated[Principal, Depends(require_roles(*READ_ROLES))]
Canceller = Annotated[Principal, Depends(require_roles(*CANCEL_ROLES))]
Sort = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "state",
    "-state",
    "fulfilment_status",
    "-fulfilment_status",
]
TIME_SORTS = ("created_at", "updated_at")

register_error(CompletedOrderCannotBeCancelled, 409, "order_completed", title="Order already completed")
register_error(OrderNotFound, 404, "order_not_found", title="Order not found")


class PlaceOrder(BaseModel):
    """An order placed by an operator: the fields of a voucher IPA record, validated by the same rules."""

    model_config = ConfigDict(extra="forbid")

    external_ref: ShortText = Field(
        description="your unique reference; a repeat is refused (409), never a second order"
    )
    member_id: ShortText
    campaign_id: ShortText
    amount: ShortText = Field(description="decimal string, e.g. '25.00'")
    currency: ShortText
    name: ShortText | None = None
    email: ShortText | None = None
    phone: ShortText | None = Field(default=None, description="E.164")
    channel: ShortText | None = Field(
        default=None, description="email | sms | whatsapp; absent: the campaign's default"
    )
    reason: Text | None = None
    reward_type: Literal["voucher"] = Field(
        default="voucher", description="always `voucher`: points awards go through IPA intake"
    )
    test: bool = Field(
        default=False,
        description="a UAT test order: issued one of the campaign's test codes (never a real one), delivered "
        "marked as a test, kept out of the summary's figures and of the export unless asked for",
    )


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why the order is cancelled")


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(body, default=json_default)), status_code=status)


def _order_ref(ref: str) -> dict[str, Any]:
    try:
        return {"order_id": uuid.UUID(ref)}
    except ValueError:
        if looks_like_booking_id(ref):
            return {"booking_id": ref.upper()}
    raise Problem(404, "order_not_found", detail=f"No order is known as {ref!r}.")


def _encode_cursor(sort: str, value: datetime | str, order_id: uuid.UUID) -> str:
    shown = value.isoformat() if isinstance(value, datetime) else value
    raw = json.dumps({"s": sort, "v": shown, "id": str(order_id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[datetime | str, uuid.UUID]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if raw["s"] != sort:
            raise ValueError("sort changed")
        value = raw["v"]
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("not a cursor value")
        if sort.lstrip("-") in TIME_SORTS:
            return datetime.fromisoformat(value), uuid.UUID(raw["id"])
        return value, uuid.UUID(raw["id"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Problem(
            422,
            "invalid_cursor",
            detail="The cursor is not one this listing returned (or the sort changed).",
            errors=[{"field": "cursor", "code": "invalid_cursor", "message": "Use next_cursor as returned."}],
        ) from None


class OrderQuery(BaseModel):
    """The filters the order listing, the export and the bulk cancel share, as query parameters."""

    state: OrderState | None = None
    fulfilment_status: FulfilmentStatus | None = None
    campaign_id: Identifier | None = None
    member_id: Identifier | None = None
    source: OrderSource | None = None
    created_from: Aware | None = Field(None, description="inclusive, RFC 3339 with an offset")
    created_to: Aware | None = Field(None, description="exclusive, RFC 3339 with an offset")
    needs_attention: bool | None = None
    test: bool | None = Field(None, description="true: UAT test orders only; false: real orders only")


def _no_orders() -> dict[str, Any]:
    """The counts of a summary bucket before any order is counted."""
    return {
        "total": 0,
        "by_state": dict.fromkeys(map(str, OrderState), 0),
        "by_fulfilment_status": dict.fromkeys(map(str, FulfilmentStatus), 0),
        "needs_attention": 0,
    }


def order_filter(query: Annotated[OrderQuery, Query()]) -> repository.OrderFilter:
    return repository.OrderFilter(**dict(query))


def request_cause(request: Request, principal: Principal) -> Cause:
    """The caller as the actor of what the request changes, with the request's correlation id."""
    return Cause(actor=principal.actor, correlation_id=request.headers.get("x-correlation-id"))


router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.post(
    "",
    status_code=201,
    summary="Place a voucher order directly (source `api`), validated like an IPA record",
    response_model=OrderView,
    responses={409: {"description": "The external_ref was used before"}, 422: {"description": "Invalid"}},
)
async def place(
    pool: DbPool,
    principal: Canceller,
    body: PlaceOrder,
    request: Request,
) -> JSONResponse:
    candidate = intake.Candidate(cells=body.model_dump())
    cause = request_cause(request, principal)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await intake.validate(conn, [candidate], batch_id=None)
            await intake.accept(conn, [candidate], source="api", cause=cause, order_source=OrderSource.API)
            if candidate.accepted:
                await audit_order(
                    conn,
                    actor=cause.actor,
                    action="order.placed",
                    order_id=candidate.order_id,
                    details={"external_ref": body.external_ref, "campaign_id": body.campaign_id},
                )
        if not candidate.accepted:
            duplicate = [e for e in candidate.errors if e.code == "duplicate"]
            raise Problem(
                409 if duplicate else 422,
                "duplicate" if duplicate else "validation_failed",
                detail=duplicate[0].message if duplicate else "The order is not valid.",
                errors=[{"field": e.field, "code": e.code, "message": e.message} for e in candidate.errors],
            )
        created = await repository.fetch_order(conn, str(candidate.order_id))
    response = _json(order_json(created), status=201)
    response.headers["Location"] = f"/v1/orders/{candidate.order_id}"
    return response


@router.get(
    "",
    summary="Orders, filtered and sorted, with cursor pagination and the exact total",
    response_model=OrderPage,
)
async def list_orders(
    pool: DbPool,
    principal: Reader,
    flt: repository.OrderFilter = Depends(order_filter),
    sort: Sort = "-created_at",
    limit: int = Query(50, ge=1, le=500),
    cursor: Annotated[str, NoNul] | None = None,
) -> JSONResponse:
    column = sort.lstrip("-")
    after = _decode_cursor(cursor, sort) if cursor else None
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rows, total = await repository.list_orders(
            conn, flt, sort_column=column, descending=sort.startswith("-"), limit=limit + 1, after=after
        )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    next_cursor = (
        _encode_cursor(sort, repository.sort_value(last, column), last["order_id"]) if last else None
    )
    return _json({"items": [order_json(r) for r in rows], "total": total, "next_cursor": next_cursor})


@router.get(
    "/export",
    summary="Every order the listing's filters match, in its sort order, streamed as CSV or JSON lines "
    "(real orders only unless `test` is given)",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
async def export_orders(
    pool: DbPool,
    principal: Reader,
    request: Request,
    format: Annotated[DownloadFormat, Query(description="`csv` (spreadsheet-safe) or `jsonl`")] = "csv",
    flt: repository.OrderFilter = Depends(order_filter),
    sort: Sort = "-created_at",
) -> BoundedStreamingResponse:
    timeout_s: float = request.app.state.settings.http_download_timeout_s
    if flt.test is None:  # a finance figure: UAT test orders only when asked for
        flt = replace(flt, test=False)
    query, args = repository.export_query(flt, sort_column=sort.lstrip("-"), descending=sort.startswith("-"))
    rows = cursor_rows(pool, query, *args, statement_timeout_s=timeout_s)
    return download_response(
        download_lines(rows, repository.ORDER_COLUMN_NAMES, format, order_json),
        name="orders",
        format=format,
        timeout_s=timeout_s,
    )


@router.get(
    "/summary",
    summary="Exact order counts per state and fulfilment status, overall and per campaign (real orders); "
    "UAT test orders counted apart under `test`",
    response_model=OrderSummary,
)
async def summary(
    pool: DbPool,
    principal: Reader,
    campaign_id: Identifier | None = None,
) -> JSONResponse:
    async with pool.acquire() as conn:
        rows = await repository.summary(conn, campaign_id)
    overall = _no_orders()
    test = _no_orders()
    campaigns: dict[str, dict[str, Any]] = {}
    for r in rows:
        buckets = (test,) if r["test"] else (overall, campaigns.setdefault(r["campaign_id"], _no_orders()))
        for bucket in buckets:
            bucket["total"] += r["n"]
            bucket["by_state"][r["state"]] += r["n"]
            if r["fulfilment_status"]:
                bucket["by_fulfilment_status"][r["fulfilment_status"]] += r["n"]
            bucket["needs_attention"] += r["attention"]
    return _json(
        {
            **overall,
            "campaigns": [{"campaign_id": cid, **c} for cid, c in sorted(campaigns.items())],
            "test": test,
        }
    )


@router.get(
    "/{ref}",
    summary="One order by order_id or booking_id, with its full timeline",
    response_model=OrderView,
)
async def get_order(pool: DbPool, ref: str, principal: Reader) -> JSONResponse:
    _order_ref(ref)
    async with pool.acquire() as conn:
        order = await repository.fetch_order(conn, ref)
    if order is None:
        raise OrderNotFound(ref)
    return _json(order_json(order))


@router.post(
    "/{ref}/cancel",
    summary="Cancel a pending order (a completed one answers 409)",
    response_model=OrderView,
    responses={409: {"description": "The order is completed"}},
)
async def cancel(
    pool: DbPool,
    principal: Canceller,
    ref: str,
    body: CancelRequest,
    request: Request,
) -> JSONResponse:
    cause = request_cause(request, principal)
    async with pool.acquire() as conn:
        async with conn.transaction():
            order, decision = await cancel_order(conn, cause=cause, reason=body.reason, **_order_ref(ref))
            if decision.applied:
                await audit_order(
                    conn,
                    actor=cause.actor,
                    action="order.cancelled",
                    order_id=order.order_id,
                    details={"reason": body.reason, "booking_id": order.booking_id},
                )
        current = await repository.fetch_order(conn, str(order.order_id))
    return _json(order_json(current))
