"""Intake: upload an IPA file with its mode, watch it through validation to orders, errors.csv."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from console import views
from console.auth import CSRF_CHECKED, Viewer
from console.pages import allowed, attempt, back_to, is_fragment, relay_download, segment, show

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
    csrf: None = CSRF_CHECKED,
) -> Response:
    if mode not in views.UPLOAD_MODES:
        mode = "accept_valid"
    content = await file.read()
    files = {"file": (file.filename or "upload.csv", content, "text/csv")}
    path = f"/v1/ipa/batches?mode={mode}"
    answer = await attempt(request, viewer, "order", path, {}, files=files, refused="The file was refused: ")
    if answer is None:
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
    path = f"/v1/ipa/batches/{segment(batch_id)}/errors.csv"
    return await relay_download(request, viewer, "order", path, f"errors-{segment(batch_id)}.csv")
