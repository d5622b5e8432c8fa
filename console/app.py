"""The console's pages: sign-in, the home page of each role, and the screens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from console import auth, views
from console.api import Api, ApiError, problem_of
from console.auth import CsrfRefused, SignInRequired, Viewer, check_csrf, current_viewer
from console.navigation import SCREENS, screen, screens_for
from console.sessions import ServerSessionMiddleware, SessionStore
from console.settings import SERVICES, ConsoleSettings

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")


def _api(request: Request, viewer: Viewer) -> Api:
    return Api(request.app.state.settings, request.app.state.http, viewer.access_token)


def _page(
    request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any
) -> Response:
    menu = screens_for(viewer.roles) if viewer else []
    fragment = request.headers.get("HX-Request") == "true"
    flash = request.session.pop("flash", None) if viewer and not fragment else None
    return templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "menu": menu, "flash": flash, "views": views, **context},
        status_code=status_code,
    )


def _allowed(key: str) -> Any:
    """A dependency: the viewer, when they hold a role of screen `key`; a 403 page otherwise."""

    async def check(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
        if not viewer.has(*screen(key).roles):
            raise ApiError(403, "forbidden", f"{screen(key).title} is not available to your role.")
        return viewer

    return check


def _flash(request: Request, kind: str, text: str) -> None:
    request.session["flash"] = {"kind": kind, "text": text}


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
    app.add_middleware(ServerSessionMiddleware, store=app.state.sessions, secure=not settings.is_dev)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(auth.build_router(settings))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
            "form-action 'self' " + (settings.oidc_issuer or ""),
        )
        return response

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        target = f"/login?{httpx.QueryParams({'next': exc.next_path})}"
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return _page(
            request, "error.html", None, 403, status=403, detail="The form was stale; reload and try again."
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        viewer = await _maybe_viewer(request)
        return _page(request, "error.html", viewer, exc.status, status=exc.status, detail=exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        viewer = await _maybe_viewer(request)
        return _page(
            request, "error.html", viewer, exc.status_code, status=exc.status_code, detail=exc.detail
        )

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        url = f"{(settings.oidc_issuer or '').rstrip('/')}/.well-known/openid-configuration"
        try:
            answer = await request.app.state.http.get(url, timeout=2.0)
            provider = answer.status_code == 200
        except httpx.HTTPError:
            provider = False
        body = {"status": "ok" if provider else "unavailable", "checks": {"identity_provider": provider}}
        return JSONResponse(body, status_code=200 if provider else 503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> Response:
        viewer = await _maybe_viewer(request)
        if viewer is None:
            return _page(request, "welcome.html", None)
        return _page(request, "home.html", viewer, screens=screens_for(viewer.roles))

    @app.get("/signed-out", response_class=HTMLResponse, include_in_schema=False)
    async def signed_out(request: Request, failed: int = 0) -> Response:
        return _page(request, "welcome.html", None, signed_out=not failed, failed=bool(failed))

    # --- orders -----------------------------------------------------------------------------------

    @app.get("/orders", response_class=HTMLResponse, include_in_schema=False)
    async def orders(request: Request, viewer: Annotated[Viewer, Depends(_allowed("orders"))]) -> Response:
        filters = views.order_filters(request.query_params)
        api = _api(request, viewer)
        params = {**filters.api_params(), "limit": "50", "cursor": request.query_params.get("cursor")}
        summary, page = await asyncio.gather(
            api.get("order", "/v1/orders/summary", {"campaign_id": filters.campaign_id}),
            api.get("order", "/v1/orders", params),
        )
        return _page(
            request,
            "orders.html",
            viewer,
            filters=filters,
            tabs=views.order_tabs(summary, filters.state),
            rows=views.order_rows(page["items"]),
            total=page["total"],
            next_cursor=page.get("next_cursor"),
            attention=summary.get("needs_attention", 0),
        )

    @app.get("/orders/tabs", response_class=HTMLResponse, include_in_schema=False)
    async def order_tabs(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("orders"))]
    ) -> Response:
        filters = views.order_filters(request.query_params)
        summary = await _api(request, viewer).get(
            "order", "/v1/orders/summary", {"campaign_id": filters.campaign_id}
        )
        return _page(
            request,
            "_order_tabs.html",
            viewer,
            filters=filters,
            tabs=views.order_tabs(summary, filters.state),
        )

    @app.get("/orders/{ref}", response_class=HTMLResponse, include_in_schema=False)
    async def order(
        request: Request, ref: str, viewer: Annotated[Viewer, Depends(_allowed("orders"))]
    ) -> Response:
        found = await _api(request, viewer).get("order", f"/v1/orders/{_segment(ref)}")
        return _page(
            request,
            "order.html",
            viewer,
            order=found,
            amount=views.money(found.get("amount"), found.get("currency")),
            steps=views.timeline(found.get("timeline", [])),
            may_cancel=views.may_cancel(found, viewer.roles),
        )

    @app.post("/orders/{ref}/cancel", include_in_schema=False)
    async def cancel(
        request: Request,
        ref: str,
        viewer: Annotated[Viewer, Depends(_allowed("orders"))],
        reason: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        if not reason.strip():
            _flash(request, "error", "Say why the order is cancelled.")
        else:
            path = f"/v1/orders/{_segment(ref)}/cancel"
            await _act(request, viewer, "order", path, {"reason": reason}, "The order is cancelled.")
        return RedirectResponse(f"/orders/{_segment(ref)}", status_code=303)

    # --- members ----------------------------------------------------------------------------------

    @app.get("/members", response_class=HTMLResponse, include_in_schema=False)
    async def members(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("members"))], member_id: str = ""
    ) -> Response:
        if member_id.strip():
            return RedirectResponse(f"/members/{_segment(member_id.strip())}", status_code=303)
        return _page(request, "members.html", viewer)

    @app.get("/members/lookup", response_class=HTMLResponse, include_in_schema=False)
    async def lookup(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("members"))], reference: str = ""
    ) -> Response:
        """An order by booking id (or order id) as support sees it: masked code, deliveries, actions."""
        reference = reference.strip()
        if not reference:
            return RedirectResponse("/members", status_code=303)
        found = await _api(request, viewer).get("support", f"/v1/portal/orders/{_segment(reference)}")
        return _page(
            request,
            "lookup.html",
            viewer,
            order=found,
            reference=reference,
            may_help=viewer.has(*views.AGENT_ACTION_ROLES),
            idempotency_key=uuid.uuid4().hex,
        )

    @app.post("/members/lookup/{reference}/{action}", include_in_schema=False)
    async def agent_action(
        request: Request,
        reference: str,
        action: str,
        viewer: Annotated[Viewer, Depends(_allowed("members"))],
        points: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
        reason: Annotated[str, Form(max_length=2000)] = "",
        idempotency_key: Annotated[str, Form(max_length=200)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        if action not in ("goodwill", "resend"):
            raise ApiError(404, "not_found", "No such action.")
        body: dict[str, Any] = {"reason": reason.strip() or None}
        body |= {"idempotency_key": idempotency_key} if idempotency_key else {}
        body |= {"points": points} if action == "goodwill" else {}
        done = (
            f"{points} goodwill points credited."
            if action == "goodwill"
            else "Asked delivery to send it again."
        )
        path = f"/v1/portal/orders/{_segment(reference)}/{action}"
        await _act(request, viewer, "support", path, body, done)
        return RedirectResponse(
            f"/members/lookup?{httpx.QueryParams({'reference': reference})}", status_code=303
        )

    @app.get("/me", include_in_schema=False)
    async def me(viewer: Annotated[Viewer, Depends(_allowed("wallet"))]) -> Response:
        return RedirectResponse(f"/members/{_segment(viewer.sub)}", status_code=303)

    @app.get("/members/{member_id}", response_class=HTMLResponse, include_in_schema=False)
    async def member(
        request: Request, member_id: str, viewer: Annotated[Viewer, Depends(current_viewer)]
    ) -> Response:
        if not viewer.has(*screen("members").roles, *screen("wallet").roles):
            raise ApiError(403, "forbidden", "Members are not available to your role.")
        api = _api(request, viewer)
        wallet, history, audit, verification = await asyncio.gather(
            api.get("wallet", f"/v1/members/{_segment(member_id)}/wallet"),
            api.get("wallet", f"/v1/members/{_segment(member_id)}/history"),
            api.get("wallet", f"/v1/members/{_segment(member_id)}/audit"),
            api.get("wallet", f"/v1/members/{_segment(member_id)}/audit/verify"),
        )
        return _page(
            request,
            "member.html",
            viewer,
            member_id=member_id,
            own=viewer.sub == member_id,
            wallet=wallet,
            balance=views.points(wallet.get("balance")),
            lines=views.ledger_lines(history.get("entries", [])),
            orders=history.get("orders", []),
            audit=audit.get("entries", [])[-50:][::-1],
            verification=verification,
        )

    # --- deliveries -------------------------------------------------------------------------------

    @app.get("/deliveries", response_class=HTMLResponse, include_in_schema=False)
    async def deliveries(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("deliveries"))]
    ) -> Response:
        page = await _api(request, viewer).get(
            "delivery",
            "/v1/deliveries/failed",
            {"limit": "100", "cursor": request.query_params.get("cursor")},
        )
        return _page(
            request,
            "deliveries.html",
            viewer,
            rows=views.failed_deliveries(page["items"]),
            next_cursor=page.get("next_cursor"),
        )

    @app.get("/deliveries/{delivery_id}", response_class=HTMLResponse, include_in_schema=False)
    async def delivery(
        request: Request, delivery_id: str, viewer: Annotated[Viewer, Depends(_allowed("deliveries"))]
    ) -> Response:
        found = await _api(request, viewer).get("delivery", f"/v1/deliveries/{_segment(delivery_id)}")
        (row,) = views.failed_deliveries([found])
        return _page(request, "delivery.html", viewer, delivery=found, row=row)

    @app.post("/deliveries/{delivery_id}/recipient", include_in_schema=False)
    async def correct_recipient(
        request: Request,
        delivery_id: str,
        viewer: Annotated[Viewer, Depends(_allowed("deliveries"))],
        email: Annotated[str, Form(max_length=320)] = "",
        phone: Annotated[str, Form(max_length=32)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        body = {"email": email.strip() or None, "phone": phone.strip() or None, "resend": True}
        body |= {"reason": reason.strip()} if reason.strip() else {}
        path = f"/v1/deliveries/{_segment(delivery_id)}/recipient"
        await _act(request, viewer, "delivery", path, body, "Recipient corrected; the voucher is on its way.")
        return RedirectResponse(f"/deliveries/{_segment(delivery_id)}", status_code=303)

    @app.post("/deliveries/{delivery_id}/resend", include_in_schema=False)
    async def resend(
        request: Request,
        delivery_id: str,
        viewer: Annotated[Viewer, Depends(_allowed("deliveries"))],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        path = f"/v1/deliveries/{_segment(delivery_id)}/resend"
        await _act(request, viewer, "delivery", path, {}, "Sent again.")
        return RedirectResponse(f"/deliveries/{_segment(delivery_id)}", status_code=303)

    # --- support ----------------------------------------------------------------------------------

    @app.get("/support", response_class=HTMLResponse, include_in_schema=False)
    async def support(request: Request, viewer: Annotated[Viewer, Depends(_allowed("support"))]) -> Response:
        open_only = request.query_params.get("all") != "1"
        params = {"open_only": "true" if open_only else None, "cursor": request.query_params.get("cursor")}
        page = await _api(request, viewer).get("support", "/v1/tickets", params)
        return _page(
            request,
            "support.html",
            viewer,
            lines=views.ticket_lines(page["items"]),
            open_only=open_only,
            next_cursor=page.get("next_cursor"),
            may_open=viewer.has("admin", "ops", "support_agent", "member"),
        )

    @app.post("/support", include_in_schema=False)
    async def open_ticket(
        request: Request,
        viewer: Annotated[Viewer, Depends(_allowed("support"))],
        category: Annotated[str, Form()] = "other",
        description: Annotated[str, Form(max_length=4000)] = "",
        booking_id: Annotated[str, Form(max_length=200)] = "",
        member_id: Annotated[str, Form(max_length=200)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        body: dict[str, Any] = {"category": category, "description": description.strip()}
        body |= {"booking_id": booking_id.strip()} if booking_id.strip() else {}
        body |= {"member_id": member_id.strip()} if member_id.strip() and not viewer.has("member") else {}
        await _act(request, viewer, "support", "/v1/tickets", body, "Ticket opened.")
        return RedirectResponse("/support", status_code=303)

    @app.get("/support/{ticket_id}", response_class=HTMLResponse, include_in_schema=False)
    async def ticket(
        request: Request, ticket_id: str, viewer: Annotated[Viewer, Depends(_allowed("support"))]
    ) -> Response:
        found = await _api(request, viewer).get("support", f"/v1/tickets/{_segment(ticket_id)}")
        (line,) = views.ticket_lines([found])
        return _page(
            request,
            "ticket.html",
            viewer,
            ticket=found,
            line=line,
            moves=views.ticket_moves(found.get("state", ""), viewer.roles),
            may_comment=viewer.has("admin", "ops", "support_agent", "member"),
        )

    @app.post("/support/{ticket_id}/move", include_in_schema=False)
    async def move_ticket(
        request: Request,
        ticket_id: str,
        viewer: Annotated[Viewer, Depends(_allowed("support"))],
        to: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        path = f"/v1/tickets/{_segment(ticket_id)}/transitions"
        await _act(request, viewer, "support", path, {"to": to}, f"Ticket moved to {to.replace('_', ' ')}.")
        return RedirectResponse(f"/support/{_segment(ticket_id)}", status_code=303)

    @app.post("/support/{ticket_id}/comment", include_in_schema=False)
    async def comment_ticket(
        request: Request,
        ticket_id: str,
        viewer: Annotated[Viewer, Depends(_allowed("support"))],
        body: Annotated[str, Form(max_length=4000)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        path = f"/v1/tickets/{_segment(ticket_id)}/comments"
        await _act(request, viewer, "support", path, {"body": body.strip()}, "Comment added.")
        return RedirectResponse(f"/support/{_segment(ticket_id)}", status_code=303)

    # --- campaigns --------------------------------------------------------------------------------

    @app.get("/campaigns", response_class=HTMLResponse, include_in_schema=False)
    async def campaigns(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("campaigns"))]
    ) -> Response:
        api = _api(request, viewer)
        page = await api.get(
            "voucher", "/v1/campaigns", {"limit": "50", "after": request.query_params.get("after")}
        )
        overviews = await asyncio.gather(
            *(api.get("voucher", f"/v1/campaigns/{_segment(c['campaign_id'])}") for c in page["items"])
        )
        rows = [views.campaign_stock(c, o) for c, o in zip(page["items"], overviews, strict=True)]
        return _page(
            request,
            "campaigns.html",
            viewer,
            rows=rows,
            next_after=page.get("next_after"),
            may_change=viewer.has("admin", "ops"),
        )

    # --- redemptions ------------------------------------------------------------------------------

    @app.get("/redemptions", response_class=HTMLResponse, include_in_schema=False)
    async def redemptions(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("redemptions"))]
    ) -> Response:
        filters = views.redemption_filters(request.query_params)
        params = filters.api_params() | {"cursor": request.query_params.get("cursor", "")}
        api = _api(request, viewer)
        page = await api.get("redemption", "/v1/redemption-records", params)
        offers = (
            (await api.get("redemption", "/v1/offers", {"partner_id": viewer.sub})).get("items", [])
            if viewer.has("partner")
            else []
        )
        aggregates = page.get("aggregates") or {}
        charts = {
            "Per day": views.bars(sorted(aggregates.get("per_day", []), key=lambda r: str(r.get("value")))),
            "Per partner": views.bars(aggregates.get("per_partner", [])),
            "Per channel": views.bars(aggregates.get("per_channel", [])),
        }
        return _page(
            request,
            "redemptions.html",
            viewer,
            filters=filters,
            total=aggregates.get("total", {}),
            charts=charts,
            records=page.get("items", []),
            next_cursor=page.get("next_cursor"),
            staff=viewer.has("admin", "ops", "finance", "auditor"),
            offers=offers,
        )

    @app.post("/campaigns/{campaign_id}/{action}", include_in_schema=False)
    async def campaign_action(
        request: Request,
        campaign_id: str,
        action: str,
        viewer: Annotated[Viewer, Depends(_allowed("campaigns"))],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        if action not in views.CAMPAIGN_ACTIONS:
            raise ApiError(404, "not_found", "No such campaign action.")
        path = f"/v1/campaigns/{_segment(campaign_id)}/{action}"
        await _act(
            request, viewer, "voucher", path, {}, f"Campaign {campaign_id}: {views.CAMPAIGN_ACTIONS[action]}."
        )
        return RedirectResponse("/campaigns", status_code=303)

    # --- intake -----------------------------------------------------------------------------------

    @app.get("/intake", response_class=HTMLResponse, include_in_schema=False)
    async def intake(request: Request, viewer: Annotated[Viewer, Depends(_allowed("intake"))]) -> Response:
        page = await _api(request, viewer).get("order", "/v1/ipa/batches")
        batches = [views.batch_progress(b) for b in page.get("items", [])[:20]]
        return _page(request, "intake.html", viewer, batches=batches)

    @app.post("/intake", include_in_schema=False)
    async def upload(
        request: Request,
        viewer: Annotated[Viewer, Depends(_allowed("intake"))],
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
            answer = await _api(request, viewer).post(
                "order", f"/v1/ipa/batches?mode={mode}", files=files, body={}
            )
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            _flash(request, "error", f"The file was refused: {exc.detail}")
            return RedirectResponse("/intake", status_code=303)
        return RedirectResponse(f"/intake/{_segment(answer['batch_id'])}", status_code=303)

    @app.get("/intake/{batch_id}", response_class=HTMLResponse, include_in_schema=False)
    async def batch(
        request: Request, batch_id: str, viewer: Annotated[Viewer, Depends(_allowed("intake"))]
    ) -> Response:
        found = await _api(request, viewer).get("order", f"/v1/ipa/batches/{_segment(batch_id)}")
        fragment = request.headers.get("HX-Request") == "true"
        return _page(
            request,
            "_batch_progress.html" if fragment else "batch.html",
            viewer,
            batch=found,
            progress=views.batch_progress(found),
        )

    @app.get("/intake/{batch_id}/errors.csv", include_in_schema=False)
    async def batch_errors(
        request: Request, batch_id: str, viewer: Annotated[Viewer, Depends(_allowed("intake"))]
    ) -> Response:
        settings_: ConsoleSettings = request.app.state.settings
        client: httpx.AsyncClient = request.app.state.http
        answer = await client.get(
            f"{settings_.service_url('order')}/v1/ipa/batches/{_segment(batch_id)}/errors.csv",
            headers={"Authorization": f"Bearer {viewer.access_token}"},
        )
        if answer.status_code >= 400:
            raise problem_of(answer)
        return Response(
            answer.content,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="errors-{_segment(batch_id)}.csv"'},
        )

    @app.post("/members/{member_id}/orders/{order_id}/reveal", include_in_schema=False)
    async def reveal_code(
        request: Request,
        member_id: str,
        order_id: str,
        viewer: Annotated[Viewer, Depends(current_viewer)],
        reason: Annotated[str, Form(min_length=3, max_length=2000)],
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        """The member's log records the reveal, then the voucher service's own audited reveal answers."""
        check_csrf(request, csrf)
        if not viewer.has(*views.REVEAL_ROLES):
            raise ApiError(403, "forbidden", "Your role may not reveal codes.")
        api = _api(request, viewer)
        path = f"/v1/members/{_segment(member_id)}/orders/{_segment(order_id)}/reveal"
        pointer = await api.post("wallet", path, {"reason": reason})
        target = views.reveal_target(pointer)
        if target is None:
            raise ApiError(404, "no_revealable_code", "That order has no code to reveal.")
        answer = await api.post("voucher", target, {"reason": reason})
        response = _page(
            request,
            "revealed.html",
            viewer,
            member_id=member_id,
            clear_code=answer.get("code", ""),
            masked=pointer.get("masked_code"),
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- operations -------------------------------------------------------------------------------

    @app.get("/operations", response_class=HTMLResponse, include_in_schema=False)
    async def operations(
        request: Request, viewer: Annotated[Viewer, Depends(_allowed("operations"))]
    ) -> Response:
        client: httpx.AsyncClient = request.app.state.http

        async def probe(url: str) -> int | None:
            try:
                return (await client.get(url + "/health/ready", timeout=3.0)).status_code
            except httpx.HTTPError:
                return None

        urls = {name: settings.service_url(name) for name in SERVICES}
        statuses = await asyncio.gather(*(probe(url) for url in urls.values()))
        answers = {name: (url, status) for (name, url), status in zip(urls.items(), statuses, strict=True)}
        return _page(request, "operations.html", viewer, rows=views.health_rows(answers))

    app.state.screens = SCREENS
    return app


async def _act(
    request: Request, viewer: Viewer, service: str, path: str, body: dict[str, Any], done: str
) -> None:
    """POST an action; its outcome (or the service's refusal) is flashed on the next page."""
    try:
        await _api(request, viewer).post(service, path, body)
        _flash(request, "ok", done)
    except ApiError as exc:
        if exc.status in (401, 403):
            raise
        fields = ", ".join(str(e.get("field", "")).removeprefix("body.") for e in exc.errors)
        _flash(request, "error", f"{exc.detail}{f' ({fields})' if fields else ''}")


def _segment(value: str) -> str:
    """A path segment for a service URL: ids with slashes or dots cannot step elsewhere."""
    from urllib.parse import quote

    return quote(value, safe="")


async def _maybe_viewer(request: Request) -> Viewer | None:
    try:
        return await current_viewer(request)
    except SignInRequired:
        return None
