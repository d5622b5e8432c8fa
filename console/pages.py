"""What every screen shares: rendering a page, role checks, flashed outcomes and service calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from console import views
from console.api import Api, ApiError, problem_of
from console.auth import SignInRequired, Viewer, current_viewer
from console.navigation import screen, screens_for
from console.settings import ConsoleSettings

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
    answer = await attempt(request, viewer, service, path, body)
    if answer is not None:
        flash(request, "ok", done)
    return answer


async def attempt(
    request: Request,
    viewer: Viewer,
    service: str,
    path: str,
    body: dict[str, Any],
    *,
    files: Any = None,
    method: str = "POST",
    refused: str = "",
) -> Any:
    """POST (or PATCH) to a service: its answer (`{}` when empty), or None with its refusal flashed,
    after `refused` if given. Refusals of the person (401, 403) are raised: they get a page of their own."""
    api = api_for(request, viewer)
    try:
        if method == "PATCH":
            answer = await api.patch(service, path, body)
        else:
            answer = await api.post(service, path, body, files=files)
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        flash(request, "error", f"{refused}{refusal(exc)}")
        return None
    return answer if answer is not None else {}


def previewed(
    request: Request,
    viewer: Viewer,
    answer: Any,
    confirm: bool,
    *,
    back: str,
    outcome: Callable[[Any], str],
    title: str,
    preview: Callable[[], views.Preview],
    action: str,
    fields: Mapping[str, str],
) -> Response:
    """After a dry-run-first action: back to `back` when it was refused, or confirmed and done (its
    outcome flashed); otherwise the dry run's preview, whose one button posts `fields` to `action`
    again with the confirmation."""
    if answer is None:
        return back_to(back)
    if confirm:
        flash(request, "ok", outcome(answer))
        return back_to(back)
    return render(
        request,
        "confirm.html",
        viewer,
        title=title,
        preview=preview(),
        action=action,
        fields=fields,
        back=back,
    )


def refusal(exc: ApiError) -> str:
    """A service's refusal as one line, naming the fields it found wrong."""
    fields = ", ".join(str(e.get("field", "")).removeprefix("body.") for e in exc.errors)
    return f"{exc.detail}{f' ({fields})' if fields else ''}"


async def relay_download(
    request: Request, viewer: Viewer, service: str, path: str, file_name: str | None = None
) -> Response:
    """A service's file, streamed through to the browser as it arrives (named `file_name`, or as the
    service names it); a refusal is raised as the service's problem."""
    settings: ConsoleSettings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http
    upstream = client.build_request(
        "GET",
        settings.service_url(service) + path,
        headers={"Authorization": f"Bearer {viewer.access_token}"},
    )
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        raise ApiError(503, "service_unavailable", f"The {service} service did not answer.") from exc
    if answer.status_code >= 400:
        await answer.aread()
        await answer.aclose()
        raise problem_of(answer)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_bytes():
                yield chunk
        finally:
            await answer.aclose()

    disposition = (
        f'attachment; filename="{file_name}"'
        if file_name
        else answer.headers.get("content-disposition", "attachment")
    )
    return StreamingResponse(
        body(), media_type=answer.headers.get("content-type"), headers={"Content-Disposition": disposition}
    )


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
