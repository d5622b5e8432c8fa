"""Operations: every service's health."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from console import views
from console.auth import Viewer
from console.pages import allowed, render
from console.settings import SERVICES, ConsoleSettings

router = APIRouter(include_in_schema=False)


@router.get("/operations", response_class=HTMLResponse)
async def operations(request: Request, viewer: Annotated[Viewer, Depends(allowed("operations"))]) -> Response:
    settings: ConsoleSettings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http

    async def probe(url: str) -> int | None:
        try:
            return (await client.get(url + "/health/ready", timeout=3.0)).status_code
        except httpx.HTTPError:
            return None

    urls = {name: settings.service_url(name) for name in SERVICES}
    statuses = await asyncio.gather(*(probe(url) for url in urls.values()))
    answers = {name: (url, status) for (name, url), status in zip(urls.items(), statuses, strict=True)}
    return render(request, "operations.html", viewer, rows=views.health_rows(answers))
