"""The console app: sessions, sign-in, security headers, problem pages and every screen's router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from console import auth
from console.api import ApiError
from console.auth import CsrfRefused, SignInRequired
from console.navigation import SCREENS
from console.pages import HERE, maybe_viewer, render
from console.screens import (
    campaigns,
    deliveries,
    home,
    intake,
    members,
    operations,
    orders,
    redemptions,
    support,
)
from console.sessions import ServerSessionMiddleware, SessionStore
from console.settings import ConsoleSettings

SCREEN_ROUTERS = (home, orders, members, deliveries, support, campaigns, redemptions, intake, operations)


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.api_timeout_s) as client:
            app.state.http = client
            yield

    app = FastAPI(title="Orchard Console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.oauth = auth.make_oauth(settings)
    app.state.sessions = SessionStore(settings.session_idle_s)
    app.state.screens = SCREENS
    app.add_middleware(ServerSessionMiddleware, store=app.state.sessions, secure=not settings.is_dev)
    app.middleware("http")(_security_headers(settings))
    _handle_problems(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(auth.build_router(settings))
    app.include_router(_health(settings))
    for module in SCREEN_ROUTERS:
        app.include_router(module.router)
    return app


def _security_headers(settings: ConsoleSettings) -> Any:
    policy = (
        "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        "form-action 'self' " + (settings.oidc_issuer or "")
    )

    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", policy)
        return response

    return security_headers


def _handle_problems(app: FastAPI) -> None:
    """Sign-in redirects, stale forms and the services' refusals as pages."""

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        target = f"/login?{httpx.QueryParams({'next': exc.next_path})}"
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        detail = "The form was stale; reload and try again."
        return render(request, "error.html", None, 403, status=403, detail=detail)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        viewer = await maybe_viewer(request)
        return render(request, "error.html", viewer, exc.status, status=exc.status, detail=exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        viewer = await maybe_viewer(request)
        status = exc.status_code
        return render(request, "error.html", viewer, status, status=status, detail=exc.detail)


def _health(settings: ConsoleSettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        url = f"{(settings.oidc_issuer or '').rstrip('/')}/.well-known/openid-configuration"
        try:
            answer = await request.app.state.http.get(url, timeout=2.0)
            provider = answer.status_code == 200
        except httpx.HTTPError:
            provider = False
        body = {"status": "ok" if provider else "unavailable", "checks": {"identity_provider": provider}}
        return JSONResponse(body, status_code=200 if provider else 503)

    return router
