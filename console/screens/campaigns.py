"""Campaigns: their code stock per status with a low-stock warning; pause, resume and end."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import views
from console.api import ApiError
from console.auth import Viewer, check_csrf
from console.pages import act, allowed, api_for, back_to, render, segment

router = APIRouter(include_in_schema=False)
Planner = Annotated[Viewer, Depends(allowed("campaigns"))]


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns(request: Request, viewer: Planner) -> Response:
    api = api_for(request, viewer)
    page = await api.get(
        "voucher", "/v1/campaigns", {"limit": "50", "after": request.query_params.get("after")}
    )
    overviews = await asyncio.gather(
        *(api.get("voucher", f"/v1/campaigns/{segment(c['campaign_id'])}") for c in page["items"])
    )
    rows = [views.campaign_stock(c, o) for c, o in zip(page["items"], overviews, strict=True)]
    return render(
        request,
        "campaigns.html",
        viewer,
        rows=rows,
        next_after=page.get("next_after"),
        may_change=viewer.has("admin", "ops"),
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(
    request: Request, campaign_id: str, action: str, viewer: Planner, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, csrf)
    if action not in views.CAMPAIGN_ACTIONS:
        raise ApiError(404, "not_found", "No such campaign action.")
    path = f"/v1/campaigns/{segment(campaign_id)}/{action}"
    done = f"Campaign {campaign_id}: {views.CAMPAIGN_ACTIONS[action]}."
    await act(request, viewer, "voucher", path, {}, done)
    return back_to("/campaigns")
