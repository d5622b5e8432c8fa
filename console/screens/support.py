"""Support: the ticket queue with SLA timers; open, move and comment on tickets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import charts, views
from console.api import ApiError
from console.auth import CSRF_CHECKED, Viewer
from console.pages import act, allowed, back_to, segment, show

router = APIRouter(include_in_schema=False)
Desk = Annotated[Viewer, Depends(allowed("support"))]
WRITERS = ("admin", "ops", "support_agent", "member")


@router.get("/support", response_class=HTMLResponse)
async def support(request: Request, viewer: Desk) -> Response:
    open_only = request.query_params.get("all") != "1"

    def model(page: Any) -> dict[str, Any]:
        return {
            "lines": views.ticket_lines(page["items"]),
            "open_only": open_only,
            "next_cursor": page.get("next_cursor"),
            "may_open": viewer.has(*WRITERS),
            "may_report": viewer.has(*views.SLA_REPORT_ROLES),
        }

    params = {"open_only": "true" if open_only else None, "cursor": request.query_params.get("cursor")}
    return await show(request, viewer, "support.html", "support", "/v1/tickets", model, params)


@router.post("/support")
async def open_ticket(
    request: Request,
    viewer: Desk,
    category: Annotated[str, Form()] = "other",
    description: Annotated[str, Form(max_length=4000)] = "",
    booking_id: Annotated[str, Form(max_length=200)] = "",
    member_id: Annotated[str, Form(max_length=200)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    body: dict[str, Any] = {"category": category, "description": description.strip()}
    body |= {"booking_id": booking_id.strip()} if booking_id.strip() else {}
    body |= {"member_id": member_id.strip()} if member_id.strip() and not viewer.has("member") else {}
    await act(request, viewer, "support", "/v1/tickets", body, "Ticket opened.")
    return back_to("/support")


@router.get("/support/sla", response_class=HTMLResponse)
async def sla_report(request: Request, viewer: Desk) -> Response:
    """The SLA compliance report: the share of tickets meeting each target per priority, category, week."""
    if not viewer.has(*views.SLA_REPORT_ROLES):
        raise ApiError(403, "forbidden", "The SLA report is not available to your role.")
    dates = views.redemption_filters(request.query_params)

    def model(report: Any) -> dict[str, Any]:
        weeks = report.get("by_week", [])
        counts = {
            (str(w["week"]), outcome): float((w.get("resolution") or {}).get(outcome) or 0)
            for w in weeks
            for outcome in ("met", "missed")
        }
        labels = [str(w["week"]) for w in weeks]
        colours = {"met": charts.GOOD, "missed": charts.BAD}
        chart = charts.stacked("Resolution target per week", ("met", "missed"), labels, counts, colours)
        return {
            "date_from": dates.date_from,
            "date_to": dates.date_to,
            "groups": {
                "Per priority": views.sla_lines(report.get("by_priority", []), "priority"),
                "Per category": views.sla_lines(report.get("by_category", []), "category"),
                "Per week": views.sla_lines(report.get("by_week", []), "week"),
            },
            "chart": chart,
            "target": views.SLA_TARGET_SHARE,
        }

    params = {"from": dates.date_from, "to": dates.date_to}
    return await show(request, viewer, "sla_report.html", "support", "/v1/sla/report", model, params)


@router.get("/support/{ticket_id}", response_class=HTMLResponse)
async def ticket(request: Request, ticket_id: str, viewer: Desk) -> Response:
    def model(found: Any) -> dict[str, Any]:
        (line,) = views.ticket_lines([found])
        return {
            "ticket": found,
            "line": line,
            "moves": views.ticket_moves(found.get("state", ""), viewer.roles),
            "may_comment": viewer.has(*WRITERS),
        }

    return await show(request, viewer, "ticket.html", "support", f"/v1/tickets/{segment(ticket_id)}", model)


@router.post("/support/{ticket_id}/move")
async def move_ticket(
    request: Request,
    ticket_id: str,
    viewer: Desk,
    to: Annotated[str, Form()] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    path = f"/v1/tickets/{segment(ticket_id)}/transitions"
    await act(request, viewer, "support", path, {"to": to}, f"Ticket moved to {to.replace('_', ' ')}.")
    return back_to(f"/support/{segment(ticket_id)}")


@router.post("/support/{ticket_id}/comment")
async def comment_ticket(
    request: Request,
    ticket_id: str,
    viewer: Desk,
    body: Annotated[str, Form(max_length=4000)] = "",
    csrf: None = CSRF_CHECKED,
) -> Response:
    path = f"/v1/tickets/{segment(ticket_id)}/comments"
    await act(request, viewer, "support", path, {"body": body.strip()}, "Comment added.")
    return back_to(f"/support/{segment(ticket_id)}")
