"""What every screen shares: rendering a page, role checks, flashed outcomes and service calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from console import views
from console.api import Api, ApiError
from console.auth import SignInRequired, Viewer, current_viewer
from console.navigation import screen, screens_for

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")


def api_for(request: Request, viewer: Viewer) -> Api:
    """The services as `viewer` sees them: every call carries their own token."""
    return Api(request.app.state.settings, request.app.state.http, viewer.access_token)


def render(
    request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any
) -> Response:
    """A template with the menu of `viewer`'s screens and the outcome flashed by the last action."""
    menu = screens_for(viewer.roles) if viewer else []
    fragment = is_fragment(request)
    flashed = request.session.pop("flash", None) if viewer and not fragment else None
    return templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "menu": menu, "flash": flashed, "views": views, **context},
        status_code=status_code,
    )


async def show(
    request: Request,
    viewer: Viewer,
    name: str,
    service: str,
    path: str,
    model: Callable[[Any], Mapping[str, Any]],
    params: dict[str, Any] | None = None,
) -> Response:
    """Fetch one answer and render `name` with the context `model` makes of it.

    A refusal or failure of the service is raised as an `ApiError`, which the app renders as a
    problem page with the service's own status and detail."""
    found = await api_for(request, viewer).get(service, path, params)
    return render(request, name, viewer, **model(found))


def is_fragment(request: Request) -> bool:
    """An htmx request wants a fragment of a page, not a whole one."""
    return request.headers.get("HX-Request") == "true"


def allowed(key: str) -> Any:
    """A dependency: the viewer, when they hold a role of screen `key`; a 403 page otherwise."""

    async def check(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
        if not viewer.has(*screen(key).roles):
            raise ApiError(403, "forbidden", f"{screen(key).title} is not available to your role.")
        return viewer

    return check


def flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = {"kind": kind, "text": text}


async def act(
    request: Request, viewer: Viewer, service: str, path: str, body: dict[str, Any], done: str
) -> Any:
    """POST an action; its outcome (or the service's refusal) is flashed on the next page.

    Returns the service's answer, or None when it refused."""
    try:
        answer = await api_for(request, viewer).post(service, path, body)
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        flash(request, "error", refusal(exc))
        return None
    flash(request, "ok", done)
    return answer if answer is not None else {}


def refusal(exc: ApiError) -> str:
    """A service's refusal as one line, naming the fields it found wrong."""
    fields = ", ".join(str(e.get("field", "")).removeprefix("body.") for e in exc.errors)
    return f"{exc.detail}{f' ({fields})' if fields else ''}"


def back_to(path: str) -> RedirectResponse:
    """After a form: see the page again (post/redirect/get)."""
    return RedirectResponse(path, status_code=303)


def segment(value: str) -> str:
    """A path segment for a service URL: ids with slashes or dots cannot step elsewhere."""
    return quote(value, safe="")


async def maybe_viewer(request: Request) -> Viewer | None:
    try:
        return await current_viewer(request)
    except SignInRequired:
        return None
