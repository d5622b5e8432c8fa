"""Deliveries: the failed-delivery queue with reason codes; correct the recipient and resend."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from console import views
from console.auth import Viewer, check_csrf
from console.pages import act, allowed, back_to, segment, show

router = APIRouter(include_in_schema=False)
Agent = Annotated[Viewer, Depends(allowed("deliveries"))]


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries(request: Request, viewer: Agent) -> Response:
    def model(page: Any) -> dict[str, Any]:
        return {"rows": views.failed_deliveries(page["items"]), "next_cursor": page.get("next_cursor")}

    params = {"limit": "100", "cursor": request.query_params.get("cursor")}
    return await show(request, viewer, "deliveries.html", "delivery", "/v1/deliveries/failed", model, params)


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
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    body = {"email": email.strip() or None, "phone": phone.strip() or None, "resend": True}
    body |= {"reason": reason.strip()} if reason.strip() else {}
    path = f"/v1/deliveries/{segment(delivery_id)}/recipient"
    await act(request, viewer, "delivery", path, body, "Recipient corrected; the voucher is on its way.")
    return back_to(f"/deliveries/{segment(delivery_id)}")


@router.post("/deliveries/{delivery_id}/resend")
async def resend(
    request: Request, delivery_id: str, viewer: Agent, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, csrf)
    await act(request, viewer, "delivery", f"/v1/deliveries/{segment(delivery_id)}/resend", {}, "Sent again.")
    return back_to(f"/deliveries/{segment(delivery_id)}")
