"""Intake: upload an IPA file with its mode, watch it through validation to orders, errors.csv."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from console import views
from console.api import ApiError, problem_of
from console.auth import Viewer, check_csrf
from console.pages import allowed, api_for, back_to, flash, is_fragment, refusal, segment, show
from console.settings import ConsoleSettings

router = APIRouter(include_in_schema=False)
Uploader = Annotated[Viewer, Depends(allowed("intake"))]


@router.get("/intake", response_class=HTMLResponse)
async def intake(request: Request, viewer: Uploader) -> Response:
    def model(page: Any) -> dict[str, Any]:
        return {"batches": [views.batch_progress(b) for b in page.get("items", [])[:20]]}

    return await show(request, viewer, "intake.html", "order", "/v1/ipa/batches", model)


@router.post("/intake")
async def upload(
    request: Request,
    viewer: Uploader,
    file: Annotated[UploadFile, File()],
    mode: Annotated[str, Form()] = "accept_valid",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    if mode not in views.UPLOAD_MODES:
        mode = "accept_valid"
    content = await file.read()
    files = {"file": (file.filename or "upload.csv", content, "text/csv")}
    try:
        answer = await api_for(request, viewer).post(
            "order", f"/v1/ipa/batches?mode={mode}", files=files, body={}
        )
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        flash(request, "error", f"The file was refused: {refusal(exc)}")
        return back_to("/intake")
    return back_to(f"/intake/{segment(answer['batch_id'])}")


@router.get("/intake/{batch_id}", response_class=HTMLResponse)
async def batch(request: Request, batch_id: str, viewer: Uploader) -> Response:
    def model(found: Any) -> dict[str, Any]:
        return {"batch": found, "progress": views.batch_progress(found)}

    name = "_batch_progress.html" if is_fragment(request) else "batch.html"
    return await show(request, viewer, name, "order", f"/v1/ipa/batches/{segment(batch_id)}", model)


@router.get("/intake/{batch_id}/errors.csv")
async def batch_errors(request: Request, batch_id: str, viewer: Uploader) -> Response:
    settings: ConsoleSettings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http
    answer = await client.get(
        f"{settings.service_url('order')}/v1/ipa/batches/{segment(batch_id)}/errors.csv",
        headers={"Authorization": f"Bearer {viewer.access_token}"},
    )
    if answer.status_code >= 400:
        raise problem_of(answer)
    return Response(
        answer.content,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="errors-{segment(batch_id)}.csv"'},
    )
