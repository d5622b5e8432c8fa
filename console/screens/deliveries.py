"""Deliveries: the failed-delivery queue with reason codes; correct the recipient and resend."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.auth import CSRF_CHECKED, Viewer
from console.pages import act, allowed, api_for, attempt, back_to, flash, render, segment, show

router = APIRouter(include_in_schema=False)
Agent = Annotated[Viewer, Depends(allowed("deliveries"))]


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries(request: Request, viewer: Agent) -> Response:
    """The failed-delivery queue, with how the last week's deliveries stand per channel (the delivery
    service's figures: the same whichever replica answers)."""
    api = api_for(request, viewer)
    params = {"limit": "100", "cursor": request.query_params.get("cursor")}
    page, figures = await asyncio.gather(
        api.get("delivery", "/v1/deliveries/failed", params), api.get("delivery", "/v1/deliveries/stats")
    )
    chart = charts.delivery_outcomes(figures["channels"])
    return render(
        request,
        "deliveries.html",
        viewer,
        rows=views.failed_deliveries(page["items"]),
        next_cursor=page.get("next_cursor"),
        chart=chart,
        shares=charts.success_share(chart),
    )


@router.post("/deliveries/resend")
async def resend_many(
    request: Request,
    viewer: Agent,
    delivery_ids: Annotated[list[str], Form(max_length=1000)] = [],  # noqa: B006 (FastAPI copies it)
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Resend the selected failed deliveries at once; each one's outcome is counted."""
    if not delivery_ids:
        flash(request, "error", "Select the deliveries to resend.")
        return back_to("/deliveries")
    body: dict[str, Any] = {"delivery_ids": delivery_ids} | (
        {"reason": reason.strip()} if reason.strip() else {}
    )
    answer = await attempt(request, viewer, "delivery", "/v1/deliveries/resend", body)
    if answer is not None:
        flash(request, "ok", views.resend_outcome(answer.get("results", [])))
    return back_to("/deliveries")


@router.get("/deliveries/{delivery_id}", response_class=HTMLResponse)
async def delivery(request: Request, delivery_id: str, viewer: Agent) -> Response:
    def model(found: Any) -> dict[str, Any]:
        (row,) = views.failed_deliveries([found])
        return {"delivery": found, "row": row}

    path = f"/v1/deliveries/{segment(delivery_id)}"
    return await show(request, viewer, "delivery.html", "delivery", path, model)


@router.post("/deliveries/{delivery_id}/recipient")
async def correct_recipient(
    request: Request,
    delivery_id: str,
    viewer: Agent,
    email: Annotated[str, Form(max_length=320)] = "",
    phone: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    body = {"email": email.strip() or None, "phone": phone.strip() or None, "resend": True}
    body |= {"reason": reason.strip()} if reason.strip() else {}
    path = f"/v1/deliveries/{segment(delivery_id)}/recipient"
    await act(request, viewer, "delivery", path, body, "Recipient corrected; the voucher is on its way.")
    return back_to(f"/deliveries/{segment(delivery_id)}")


@router.post("/deliveries/{delivery_id}/resend")
async def resend(request: Request, delivery_id: str, viewer: Agent, csrf: None = CSRF_CHECKED) -> Response:
    await act(request, viewer, "delivery", f"/v1/deliveries/{segment(delivery_id)}/resend", {}, "Sent again.")
    return back_to(f"/deliveries/{segment(delivery_id)}")
