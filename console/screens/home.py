"""The welcome page, each role's home page and the signed-out page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from console.navigation import screens_for
from console.pages import maybe_viewer, render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    viewer = await maybe_viewer(request)
    if viewer is None:
        return render(request, "welcome.html", None)
    return render(request, "home.html", viewer, screens=screens_for(viewer.roles))


@router.get("/signed-out", response_class=HTMLResponse)
async def signed_out(request: Request, failed: int = 0) -> Response:
    return render(request, "welcome.html", None, signed_out=not failed, failed=bool(failed))
