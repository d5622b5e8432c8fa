"""The console's own HTTP behaviour, without a provider or services: sign-in redirects, CSRF, the
session cookie and security headers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from console.app import create_app
from console.sessions import ServerSessionMiddleware, SessionStore
from console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(
    ORCHARD_ENV="dev",
    ORCHARD_OIDC_ISSUER="http://127.0.0.1:9/realms/orchard",
    ORCHARD_ORDER_URL="http://127.0.0.1:9",
)


@pytest.fixture
async def console() -> AsyncIterator[tuple[httpx.AsyncClient, SessionStore]]:
    app = create_app(SETTINGS)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client,
    ):
        yield client, app.state.sessions


def signed_in(store: SessionStore, roles: list[str]) -> str:
    return store.put(
        None,
        {"access_token": "t", "expires_at": time.time() + 600, "sub": "u-1", "roles": roles, "csrf": "good"},
    )


async def test_a_page_sends_someone_not_signed_in_to_sign_in_and_back(console) -> None:
    client, _ = console
    answer = await client.get("/orders?state=completed")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Forders%3Fstate%3Dcompleted"


async def test_htmx_requests_are_told_where_to_sign_in_instead_of_following_a_redirect(console) -> None:
    client, _ = console
    answer = await client.get("/orders/tabs", headers={"HX-Request": "true"})
    assert answer.headers["HX-Redirect"].startswith("/login?next=")


async def test_a_form_without_the_sessions_csrf_token_is_refused_and_nothing_is_called(console) -> None:
    client, store = console
    client.cookies.set("orchard-console", signed_in(store, ["ops"]))
    answer = await client.post("/orders/abc/cancel", data={"reason": "dup", "csrf": "forged"})
    assert answer.status_code == 403
    assert "stale" in answer.text


async def test_a_role_without_the_screen_gets_a_403_page(console) -> None:
    client, store = console
    client.cookies.set("orchard-console", signed_in(store, ["member"]))
    answer = await client.get("/operations")
    assert answer.status_code == 403
    assert "Not allowed" in answer.text


async def test_pages_carry_security_headers(console) -> None:
    client, _ = console
    answer = await client.get("/health/live")
    assert answer.status_code == 200
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


async def test_readiness_fails_while_the_identity_provider_does_not_answer(console) -> None:
    client, _ = console
    assert (await client.get("/health/ready")).status_code == 503


@pytest.mark.parametrize(("secure", "name"), [(False, "orchard-console"), (True, "__Host-orchard-console")])
async def test_the_session_cookie_is_httponly_and_samesite_and_secure_outside_development(
    secure: bool, name: str
) -> None:
    async def remember(request: Request) -> PlainTextResponse:
        request.session["seen"] = True
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", remember)])
    app.add_middleware(ServerSessionMiddleware, store=SessionStore(60), secure=secure)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        cookie = (await client.get("/")).headers["set-cookie"]
    assert cookie.startswith(f"{name}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_outside_development_the_console_refuses_to_start_without_https_and_its_secret() -> None:
    refusals = ConsoleSettings(
        ORCHARD_ENV="production", ORCHARD_OIDC_ISSUER="http://idp/realms/o"
    ).startup_refusals()
    joined = "\n".join(refusals)
    assert "ORCHARD_CONSOLE_CLIENT_SECRET" in joined
    assert "ORCHARD_CONSOLE_URL" in joined
    assert "ORCHARD_OIDC_ISSUER" in joined


async def test_a_bulk_cancel_of_every_pending_order_is_refused_before_any_service_is_called(console) -> None:
    client, store = console
    client.cookies.set("orchard-console", signed_in(store, ["ops"]))
    answer = await client.post(
        "/orders/bulk-cancel", data={"state": "pending", "reason": "all", "csrf": "good"}
    )
    assert answer.status_code == 303  # no service answers on this address: a call would be a 503 page
    assert answer.headers["location"] == "/orders?state=pending&sort=-created_at"


async def test_finance_reads_orders_but_may_not_cancel_them_in_bulk(console) -> None:
    client, store = console
    client.cookies.set("orchard-console", signed_in(store, ["finance"]))
    form = {"state": "pending", "campaign_id": "c-1", "reason": "x", "csrf": "good"}
    answer = await client.post("/orders/bulk-cancel", data=form)
    assert answer.status_code == 403
    assert "may not cancel" in answer.text


async def test_only_the_export_purposes_of_ones_role_may_be_asked_for(console) -> None:
    client, store = console
    client.cookies.set("orchard-console", signed_in(store, ["partner"]))
    form = {"purpose": "audit", "reason": "curious", "csrf": "good"}
    answer = await client.post("/redemptions/exports", data=form)
    assert answer.status_code == 403
