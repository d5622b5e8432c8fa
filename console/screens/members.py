"""Members: lookup by booking id with the masked code, goodwill and resend; a member's wallet, history
and audit log; the member's own wallet; reveal of a code with a reason (audited)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.api import ApiError
from console.auth import CSRF_CHECKED, Viewer, current_viewer
from console.navigation import screen
from console.pages import act, allowed, api_for, back_to, render, segment

router = APIRouter(include_in_schema=False)
Staff = Annotated[Viewer, Depends(allowed("members"))]
HISTORY_READ = 500
"""Ledger entries read for the points chart (the most the wallet answers at once)."""
HISTORY_SHOWN = 100


@router.get("/members", response_class=HTMLResponse)
async def members(request: Request, viewer: Staff, member_id: str = "") -> Response:
    if member_id.strip():
        return back_to(f"/members/{segment(member_id.strip())}")
    return render(request, "members.html", viewer)


@router.get("/members/lookup", response_class=HTMLResponse)
async def lookup(request: Request, viewer: Staff, reference: str = "") -> Response:
    """An order by booking id (or order id) as support sees it: masked code, deliveries, actions."""
    reference = reference.strip()
    if not reference:
        return back_to("/members")
    found = await api_for(request, viewer).get("support", f"/v1/portal/orders/{segment(reference)}")
    return render(
        request,
        "lookup.html",
        viewer,
        order=found,
        reference=reference,
        may_help=viewer.has(*views.AGENT_ACTION_ROLES),
        idempotency_key=uuid.uuid4().hex,
    )


@router.post("/members/lookup/{reference}/{action}")
async def agent_action(
    request: Request,
    reference: str,
    action: str,
    viewer: Staff,
    points: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
    reason: Annotated[str, Form(max_length=2000)] = "",
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    if action not in ("goodwill", "resend"):
        raise ApiError(404, "not_found", "No such action.")
    body: dict[str, Any] = {"reason": reason.strip() or None}
    body |= {"idempotency_key": idempotency_key} if idempotency_key else {}
    body |= {"points": points} if action == "goodwill" else {}
    done = (
        f"{points} goodwill points credited." if action == "goodwill" else "Asked delivery to send it again."
    )
    path = f"/v1/portal/orders/{segment(reference)}/{action}"
    await act(request, viewer, "support", path, body, done)
    return back_to(f"/members/lookup?{httpx.QueryParams({'reference': reference})}")


@router.get("/me")
async def me(viewer: Annotated[Viewer, Depends(allowed("wallet"))]) -> Response:
    return back_to(f"/members/{segment(viewer.sub)}")


@router.get("/members/{member_id}", response_class=HTMLResponse)
async def member(
    request: Request, member_id: str, viewer: Annotated[Viewer, Depends(current_viewer)]
) -> Response:
    if not viewer.has(*screen("members").roles, *screen("wallet").roles):
        raise ApiError(403, "forbidden", "Members are not available to your role.")
    api = api_for(request, viewer)
    base = f"/v1/members/{segment(member_id)}"
    wallet, history, audit, verification = await asyncio.gather(
        api.get("wallet", f"{base}/wallet"),
        api.get("wallet", f"{base}/history", {"limit": str(HISTORY_READ)}),
        api.get("wallet", f"{base}/audit"),
        api.get("wallet", f"{base}/audit/verify"),
    )
    return render(
        request,
        "member.html",
        viewer,
        member_id=member_id,
        own=viewer.sub == member_id,
        wallet=wallet,
        balance=views.points(wallet.get("balance")),
        lines=views.ledger_lines(history.get("entries", [])[:HISTORY_SHOWN]),
        points_chart=charts.points_per_day(history.get("entries", []), datetime.now(UTC)),
        orders=history.get("orders", []),
        audit=audit.get("entries", [])[-50:][::-1],
        verification=verification,
    )


@router.post("/members/{member_id}/orders/{order_id}/reveal")
async def reveal_code(
    request: Request,
    member_id: str,
    order_id: str,
    viewer: Annotated[Viewer, Depends(current_viewer)],
    reason: Annotated[str, Form(min_length=3, max_length=2000)],
    csrf: None = CSRF_CHECKED,
) -> Response:
    """The member's log records the reveal, then the voucher service's own audited reveal answers."""
    if not viewer.has(*views.REVEAL_ROLES):
        raise ApiError(403, "forbidden", "Your role may not reveal codes.")
    api = api_for(request, viewer)
    path = f"/v1/members/{segment(member_id)}/orders/{segment(order_id)}/reveal"
    pointer = await api.post("wallet", path, {"reason": reason})
    target = views.reveal_target(pointer)
    if target is None:
        raise ApiError(404, "no_revealable_code", "That order has no code to reveal.")
    answer = await api.post("voucher", target, {"reason": reason})
    response = render(
        request,
        "revealed.html",
        viewer,
        member_id=member_id,
        clear_code=answer.get("code", ""),
        masked=pointer.get("masked_code"),
    )
    response.headers["Cache-Control"] = "no-store"
    return response
