"""Orders: tabs per state with exact counts, filters, an order's timeline, cancel with a reason."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import views
from console.auth import Viewer, check_csrf
from console.pages import act, allowed, api_for, back_to, flash, render, segment, show

router = APIRouter(include_in_schema=False)
Reader = Annotated[Viewer, Depends(allowed("orders"))]


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
    )


@router.get("/orders/tabs", response_class=HTMLResponse)
async def order_tabs(request: Request, viewer: Reader) -> Response:
    filters = views.order_filters(request.query_params)

    def model(summary: Any) -> dict[str, Any]:
        return {"filters": filters, "tabs": views.order_tabs(summary, filters.state)}

    params = {"campaign_id": filters.campaign_id}
    return await show(request, viewer, "_order_tabs.html", "order", "/v1/orders/summary", model, params)


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
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    if not reason.strip():
        flash(request, "error", "Say why the order is cancelled.")
    else:
        path = f"/v1/orders/{segment(ref)}/cancel"
        await act(request, viewer, "order", path, {"reason": reason}, "The order is cancelled.")
    return back_to(f"/orders/{segment(ref)}")
