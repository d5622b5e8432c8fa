"""Campaigns: their code stock per status with a low-stock warning; create and edit; generate, import
and UAT test codes; pause, resume and end; expiry extension and recovery, each previewed by a dry run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from console import views
from console.api import ApiError
from console.auth import CSRF_CHECKED, Viewer
from console.pages import act, allowed, api_for, attempt, back_to, flash, previewed, render, segment

router = APIRouter(include_in_schema=False)
Planner = Annotated[Viewer, Depends(allowed("campaigns"))]
MANAGERS = ("admin", "ops")
Reason = Annotated[str, Form(max_length=2000)]


def _manager(viewer: Viewer) -> None:
    if not viewer.has(*MANAGERS):
        raise ApiError(403, "forbidden", "Only admin and ops change campaigns.")


async def _form(request: Request) -> dict[str, str]:
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns(request: Request, viewer: Planner) -> Response:
    api = api_for(request, viewer)
    params = {"limit": "50", "after": request.query_params.get("after")}
    page = await api.get("voucher", "/v1/campaigns", params)
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
        may_change=viewer.has(*MANAGERS),
    )


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_campaign(request: Request, viewer: Planner) -> Response:
    _manager(viewer)
    return render(request, "campaign_form.html", viewer, campaign=None)


@router.post("/campaigns")
async def create_campaign(request: Request, viewer: Planner, csrf: None = CSRF_CHECKED) -> Response:
    _manager(viewer)
    body = views.campaign_body(await _form(request), creating=True)
    created = await act(request, viewer, "voucher", "/v1/campaigns", body, "Campaign created.")
    if created is None:
        return back_to("/campaigns/new")
    return back_to(f"/campaigns/{segment(str(created['campaign_id']))}")


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign(request: Request, campaign_id: str, viewer: Planner) -> Response:
    overview = await api_for(request, viewer).get("voucher", f"/v1/campaigns/{segment(campaign_id)}")
    return render(
        request,
        "campaign.html",
        viewer,
        campaign=overview,
        row=views.campaign_stock(overview, overview),
        stock=views.code_stock(overview),
        may_change=viewer.has(*MANAGERS),
    )


@router.get("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
async def edit_campaign(request: Request, campaign_id: str, viewer: Planner) -> Response:
    _manager(viewer)
    found = await api_for(request, viewer).get("voucher", f"/v1/campaigns/{segment(campaign_id)}")
    return render(request, "campaign_form.html", viewer, campaign=found)


@router.post("/campaigns/{campaign_id}/edit")
async def change_campaign(
    request: Request, campaign_id: str, viewer: Planner, csrf: None = CSRF_CHECKED
) -> Response:
    _manager(viewer)
    body = views.campaign_body(await _form(request), creating=False)
    path = f"/v1/campaigns/{segment(campaign_id)}"
    answer = await attempt(request, viewer, "voucher", path, body, method="PATCH")
    if answer is None:
        return back_to(f"/campaigns/{segment(campaign_id)}/edit")
    pending = answer.get("approval_id")
    flash(request, "ok", "The budget increase waits for approval." if pending else "Campaign changed.")
    return back_to(f"/campaigns/{segment(campaign_id)}")


@router.post("/campaigns/{campaign_id}/generate")
async def generate_codes(
    request: Request,
    campaign_id: str,
    viewer: Planner,
    count: Annotated[int, Form(ge=1, le=1_000_000)],
    prefix: Annotated[str, Form(max_length=16)] = "",
    test: Annotated[bool, Form()] = False,
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Generate codes; `test` makes UAT test codes (never issued, redeemable in test mode only)."""
    body = {"count": count, "prefix": prefix.strip(), "test": test}
    kind = "UAT test codes" if test else "codes"
    path = f"/v1/campaigns/{segment(campaign_id)}/codes/generate"
    await act(request, viewer, "voucher", path, body, f"{count} {kind} generated.")
    return back_to(f"/campaigns/{segment(campaign_id)}")


@router.post("/campaigns/{campaign_id}/import")
async def import_codes(
    request: Request,
    campaign_id: str,
    viewer: Planner,
    file: Annotated[UploadFile, File()],
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Import a partner's CSV of codes (code, expires_at, value); problems are reported per row."""
    files = {"file": (file.filename or "codes.csv", await file.read(), "text/csv")}
    path = f"/v1/campaigns/{segment(campaign_id)}/codes/import"
    report = await attempt(
        request, viewer, "voucher", path, {}, files=files, refused="The file was refused: "
    )
    if report is not None:
        flash(request, *views.import_outcome(report))
    return back_to(f"/campaigns/{segment(campaign_id)}")


@router.post("/campaigns/{campaign_id}/extend-expiry", response_class=HTMLResponse)
async def extend_expiry(
    request: Request,
    campaign_id: str,
    viewer: Planner,
    expires_on: Annotated[date, Form()],
    reason: Reason = "",
    confirm: Annotated[bool, Form()] = False,
    csrf: None = CSRF_CHECKED,
) -> Response:
    """A dry run first, shown with its count; only the preview's confirm extends."""
    body = {
        "campaign_id": campaign_id,
        "expires_at": views.end_of_day(expires_on),
        "reason": reason.strip(),
        "dry_run": not confirm,
    }
    return await _code_operation(
        request,
        viewer,
        campaign_id,
        "extend-expiry",
        body,
        confirm,
        title="Extend expiry",
        preview=lambda answer: views.expiry_preview(answer, campaign_id, expires_on),
        fields={"expires_on": expires_on.isoformat(), "reason": reason.strip()},
    )


@router.post("/campaigns/{campaign_id}/recover", response_class=HTMLResponse)
async def recover_codes(
    request: Request,
    campaign_id: str,
    viewer: Planner,
    status: Annotated[str, Form()] = "",
    delivery_failed: Annotated[bool, Form()] = False,
    reason: Reason = "",
    confirm: Annotated[bool, Form()] = False,
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Recover the campaign's codes the filter picks: a dry run first, then the confirmation."""
    picked: dict[str, Any] = {"campaign_id": campaign_id}
    picked |= {"status": status} if status in views.CODE_STATUSES else {}
    picked |= {"delivery_failed": True} if delivery_failed else {}
    body = {"filter": picked, "reason": reason.strip(), "dry_run": not confirm}
    fields = {"status": picked.get("status", ""), "reason": reason.strip()}
    fields |= {"delivery_failed": "true"} if delivery_failed else {}
    return await _code_operation(
        request,
        viewer,
        campaign_id,
        "recover",
        body,
        confirm,
        title="Recover codes",
        preview=lambda answer: views.recovery_preview(answer, campaign_id),
        fields=fields,
    )


async def _code_operation(
    request: Request,
    viewer: Viewer,
    campaign_id: str,
    operation: str,
    body: dict[str, Any],
    confirm: bool,
    *,
    title: str,
    preview: Callable[[Any], views.Preview],
    fields: Mapping[str, str],
) -> Response:
    """A bulk operation on a campaign's codes from its page (`/v1/codes/<operation>`): the dry run's
    preview first, then, confirmed, the operation's outcome."""
    answer = await attempt(request, viewer, "voucher", f"/v1/codes/{operation}", body)
    page = f"/campaigns/{segment(campaign_id)}"
    return previewed(
        request,
        viewer,
        answer,
        confirm,
        back=page,
        outcome=views.code_outcome,
        title=title,
        preview=lambda: preview(answer),
        action=f"{page}/{operation}",
        fields=fields,
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(
    request: Request,
    campaign_id: str,
    action: str,
    viewer: Planner,
    back: Annotated[str, Form()] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    """Pause, resume or end; back to the list, or to the campaign's page when asked from there."""
    if action not in views.CAMPAIGN_ACTIONS:
        raise ApiError(404, "not_found", "No such campaign action.")
    path = f"/v1/campaigns/{segment(campaign_id)}/{action}"
    done = f"Campaign {campaign_id}: {views.CAMPAIGN_ACTIONS[action]}."
    await act(request, viewer, "voucher", path, {}, done)
    return back_to(f"/campaigns/{segment(campaign_id)}" if back == "campaign" else "/campaigns")
