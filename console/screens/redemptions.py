"""Redemptions: the dashboard filtered by offer, partner, date and channel, with charts and records;
a partner sees its own offers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from console import views
from console.auth import Viewer
from console.pages import allowed, api_for, render

router = APIRouter(include_in_schema=False)
Reader = Annotated[Viewer, Depends(allowed("redemptions"))]


@router.get("/redemptions", response_class=HTMLResponse)
async def redemptions(request: Request, viewer: Reader) -> Response:
    filters = views.redemption_filters(request.query_params)
    params = filters.api_params() | {"cursor": request.query_params.get("cursor", "")}
    api = api_for(request, viewer)
    page = await api.get("redemption", "/v1/redemption-records", params)
    offers = (
        (await api.get("redemption", "/v1/offers", {"partner_id": viewer.sub})).get("items", [])
        if viewer.has("partner")
        else []
    )
    aggregates = page.get("aggregates") or {}
    charts = {
        "Per day": views.bars(sorted(aggregates.get("per_day", []), key=lambda r: str(r.get("value")))),
        "Per partner": views.bars(aggregates.get("per_partner", [])),
        "Per channel": views.bars(aggregates.get("per_channel", [])),
    }
    return render(
        request,
        "redemptions.html",
        viewer,
        filters=filters,
        total=aggregates.get("total", {}),
        charts=charts,
        records=page.get("items", []),
        next_cursor=page.get("next_cursor"),
        staff=viewer.has("admin", "ops", "finance", "auditor"),
        offers=offers,
    )
