"""Redemptions: the dashboard filtered by offer, partner, date and channel, with charts and records;
exports with their purpose (finance, partners, ops, auditors); a partner sees its own offers,
redemptions and exports."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.api import Api, ApiError
from console.auth import CSRF_CHECKED, Viewer
from console.pages import allowed, api_for, attempt, back_to, flash, relay_download, render, segment

router = APIRouter(include_in_schema=False)
Reader = Annotated[Viewer, Depends(allowed("redemptions"))]


@router.get("/redemptions", response_class=HTMLResponse)
async def redemptions(request: Request, viewer: Reader) -> Response:
    filters = views.redemption_filters(request.query_params)
    params = filters.api_params() | {"cursor": request.query_params.get("cursor", "")}
    api = api_for(request, viewer)
    page, offers, exports = await asyncio.gather(
        api.get("redemption", "/v1/redemption-records", params),
        _own_offers(api, viewer),
        _exports(api),
    )
    aggregates = page.get("aggregates") or {}
    per_day = sorted(aggregates.get("per_day", []), key=lambda r: str(r.get("value")))
    drawn = [
        charts.counts("Per day", per_day, "redemptions"),
        charts.counts("Per partner", aggregates.get("per_partner", []), "redemptions"),
        charts.counts("Per channel", aggregates.get("per_channel", []), "redemptions"),
    ]
    return render(
        request,
        "redemptions.html",
        viewer,
        filters=filters,
        total=aggregates.get("total", {}),
        charts=drawn,
        records=page.get("items", []),
        next_cursor=page.get("next_cursor"),
        staff=viewer.has("admin", "ops", "finance", "auditor"),
        offers=offers,
        exports=views.export_lines(exports),
        purposes=views.export_purposes(viewer.roles),
    )


async def _own_offers(api: Api, viewer: Viewer) -> list[dict[str, Any]]:
    if not viewer.has("partner"):
        return []
    answer = await api.get("redemption", "/v1/offers", {"partner_id": viewer.sub})
    return list(answer.get("items", []))


async def _exports(api: Api) -> list[dict[str, Any]]:
    """The latest exports this person asked for (admins and auditors: everyone's)."""
    answer = await api.get("redemption", "/v1/exports", {"limit": "20"})
    return list(answer.get("items", []))


@router.post("/redemptions/exports")
async def request_export(
    request: Request,
    viewer: Reader,
    purpose: Annotated[str, Form()] = "",
    format: Annotated[str, Form()] = "csv",
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Ask for an export of the dashboard's records for a purpose; the service audits the reason."""
    if purpose not in views.export_purposes(viewer.roles):
        raise ApiError(403, "forbidden", "Your role may not export for that purpose.")
    form = await request.form()
    filters = views.redemption_filters({k: v for k, v in form.items() if isinstance(v, str)})
    body = {
        "purpose": purpose,
        "format": "jsonl" if format == "jsonl" else "csv",
        "reason": reason.strip(),
        "filters": views.export_filters(filters),
    }
    answer = await attempt(request, viewer, "redemption", "/v1/exports", body)
    if answer is not None:
        flash(request, "ok", f"Export requested for {views.EXPORT_PURPOSES[purpose][0].lower()}.")
    return back_to("/redemptions#exports")


@router.get("/redemptions/exports/{export_id}/download")
async def download_export(request: Request, export_id: str, viewer: Reader) -> Response:
    """The export's file, streamed from the redemption service (which audits the download)."""
    return await relay_download(request, viewer, "redemption", f"/v1/exports/{segment(export_id)}/download")
