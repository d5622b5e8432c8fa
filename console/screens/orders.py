"""Orders: tabs per state with exact counts, filters, an order's timeline, cancel with a reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.api import ApiError
from console.auth import CSRF_CHECKED, Viewer
from console.pages import act, allowed, api_for, attempt, back_to, flash, previewed, render, segment, show

router = APIRouter(include_in_schema=False)
Reader = Annotated[Viewer, Depends(allowed("orders"))]
CHART_HOURS = 24


@router.get("/orders", response_class=HTMLResponse)
async def orders(request: Request, viewer: Reader) -> Response:
    filters = views.order_filters(request.query_params)
    api = api_for(request, viewer)
    params = {**filters.api_params(), "limit": "50", "cursor": request.query_params.get("cursor")}
    summary, page = await asyncio.gather(
        api.get("order", "/v1/orders/summary", {"campaign_id": filters.campaign_id}),
        api.get("order", "/v1/orders", params),
    )
    return render(
        request,
        "orders.html",
        viewer,
        filters=filters,
        tabs=views.order_tabs(summary, filters.state),
        rows=views.order_rows(page["items"]),
        total=page["total"],
        next_cursor=page.get("next_cursor"),
        attention=summary.get("needs_attention", 0),
        may_bulk_cancel=viewer.has(*views.CANCEL_ROLES),
    )


@router.get("/orders/tabs", response_class=HTMLResponse)
async def order_tabs(request: Request, viewer: Reader) -> Response:
    filters = views.order_filters(request.query_params)

    def model(summary: Any) -> dict[str, Any]:
        return {"filters": filters, "tabs": views.order_tabs(summary, filters.state)}

    params = {"campaign_id": filters.campaign_id}
    return await show(request, viewer, "_order_tabs.html", "order", "/v1/orders/summary", model, params)


@router.get("/orders/chart", response_class=HTMLResponse)
async def orders_chart(request: Request, viewer: Reader) -> Response:
    """Orders per hour of the last day by state, counted by the order service: a fragment the orders
    page loads after itself and every five minutes."""
    filters = views.order_filters(request.query_params)
    next_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    params = {
        "from": (next_hour - timedelta(hours=CHART_HOURS)).isoformat(),
        "to": next_hour.isoformat(),
        "campaign_id": filters.campaign_id,
        "member_id": filters.member_id,
    }

    def model(figures: Any) -> dict[str, Any]:
        return {"chart": charts.orders_per_hour(figures["hours"]), "filters": filters}

    return await show(
        request, viewer, "_orders_chart.html", "order", "/v1/orders/stats/hourly", model, params
    )


@router.post("/orders/bulk-cancel", response_class=HTMLResponse)
async def bulk_cancel(
    request: Request,
    viewer: Reader,
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirm: Annotated[bool, Form()] = False,
    csrf: None = CSRF_CHECKED,
) -> Response:
    """First a dry run shown as a preview with its count; only the preview's confirm cancels."""
    form = await request.form()
    filters = views.order_filters({k: str(v) for k, v in form.items() if isinstance(v, str)})
    listing = f"/orders?{filters.query()}"
    if not viewer.has(*views.CANCEL_ROLES):
        raise ApiError(403, "forbidden", "Your role may not cancel orders.")
    if filters.state != "pending" or not filters.narrowed:
        flash(request, "error", "Narrow the pending orders first (campaign, member, dates or status).")
        return back_to(listing)
    if not reason.strip():
        flash(request, "error", "Say why the orders are cancelled.")
        return back_to(listing)
    path = f"/v1/orders/cancel?{urlencode(filters.api_params())}"
    body = {"reason": reason.strip(), "dry_run": not confirm}
    answer = await attempt(request, viewer, "order", path, body)
    return previewed(
        request,
        viewer,
        answer,
        confirm,
        back=listing,
        outcome=views.bulk_cancel_outcome,
        title="Cancel in bulk",
        preview=lambda: views.bulk_cancel_preview(answer, reason.strip()),
        action="/orders/bulk-cancel",
        fields=filters.fields() | {"reason": reason.strip()},
    )


@router.get("/orders/{ref}", response_class=HTMLResponse)
async def order(request: Request, ref: str, viewer: Reader) -> Response:
    def model(found: Any) -> dict[str, Any]:
        return {
            "order": found,
            "amount": views.money(found.get("amount"), found.get("currency")),
            "steps": views.timeline(found.get("timeline", [])),
            "may_cancel": views.may_cancel(found, viewer.roles),
        }

    return await show(request, viewer, "order.html", "order", f"/v1/orders/{segment(ref)}", model)


@router.post("/orders/{ref}/cancel")
async def cancel(
    request: Request,
    ref: str,
    viewer: Reader,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    if not reason.strip():
        flash(request, "error", "Say why the order is cancelled.")
    else:
        path = f"/v1/orders/{segment(ref)}/cancel"
        await act(request, viewer, "order", path, {"reason": reason}, "The order is cancelled.")
    return back_to(f"/orders/{segment(ref)}")
