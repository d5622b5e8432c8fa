"""Signing in with OpenID Connect (authorization code + PKCE, Authlib), keeping the person's tokens in
their server-side session, refreshing the access token before it runs out, and signing out."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from console.sessions import ROTATE_KEY
from console.settings import ConsoleSettings

PROVIDER = "orchard"
_REFRESH_MARGIN_S = 30


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: who they are, what they hold, and the token the services get."""

    sub: str
    name: str
    roles: frozenset[str]
    access_token: str
    csrf: str

    def has(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


class SignInRequired(Exception):
    """No valid session: the page sends the person to sign in, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A form arrived without the session's CSRF token."""


def make_oauth(settings: ConsoleSettings) -> OAuth:
    oauth = OAuth()
    oauth.register(
        PROVIDER,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        server_metadata_url=f"{(settings.oidc_issuer or '').rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"},
    )
    return oauth


def safe_next(path: str | None) -> str:
    """A local path to return to after sign-in; anything else (another site) becomes `/`."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def roles_of(claims: dict[str, Any]) -> frozenset[str]:
    roles = claims.get("roles")
    if roles is None and isinstance(realm := claims.get("realm_access"), dict):
        roles = realm.get("roles")
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(role for role in roles if isinstance(role, str))


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(str(expected), submitted):
        raise CsrfRefused()


def form_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    """The form's `csrf` field checked against the session's, after the viewer's own dependency."""
    check_csrf(request, csrf)


CSRF_CHECKED: Any = Depends(form_csrf)
"""Every form route's last parameter: `csrf: None = CSRF_CHECKED`."""


async def current_viewer(request: Request) -> Viewer:
    """The signed-in person, refreshing their access token when it is about to expire."""
    session = request.session
    if "access_token" not in session:
        raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    if session.get("expires_at", 0) - _REFRESH_MARGIN_S < time.time():
        await _refresh(request)
    return Viewer(
        sub=session["sub"],
        name=session.get("name") or session["sub"],
        roles=frozenset(session.get("roles", [])),
        access_token=session["access_token"],
        csrf=session["csrf"],
    )


async def _refresh(request: Request) -> None:
    settings: ConsoleSettings = request.app.state.settings
    oauth: OAuth = request.app.state.oauth
    session = request.session
    refresh_token = session.get("refresh_token")
    next_path = request.url.path
    if not refresh_token:
        session.clear()
        raise SignInRequired(next_path)
    metadata = await oauth.create_client(PROVIDER).load_server_metadata()
    async with httpx.AsyncClient(timeout=settings.api_timeout_s) as client:
        response = await client.post(
            metadata["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(settings.client_id, settings.client_secret.get_secret_value()),
        )
    if response.status_code != 200:
        session.clear()
        raise SignInRequired(next_path)
    _keep_tokens(session, response.json())


def _keep_tokens(session: dict[str, Any], token: dict[str, Any]) -> None:
    session["access_token"] = token["access_token"]
    session["expires_at"] = int(time.time()) + int(token.get("expires_in", 60))
    if token.get("refresh_token"):
        session["refresh_token"] = token["refresh_token"]
    if token.get("id_token"):
        session["id_token"] = token["id_token"]


def build_router(settings: ConsoleSettings) -> APIRouter:
    router = APIRouter()

    @router.get("/login", include_in_schema=False)
    async def login(request: Request, next: str | None = None) -> Response:
        oauth: OAuth = request.app.state.oauth
        request.session["next"] = safe_next(next)
        client = oauth.create_client(PROVIDER)
        response: Response = await client.authorize_redirect(request, settings.callback_url)
        return response

    @router.get("/auth/callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        oauth: OAuth = request.app.state.oauth
        client = oauth.create_client(PROVIDER)
        try:
            token = await client.authorize_access_token(request)
        except OAuthError:
            request.session.clear()
            return RedirectResponse("/signed-out?failed=1", status_code=303)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        next_path = safe_next(request.session.get("next"))
        session = request.session
        session.clear()
        _keep_tokens(session, token)
        session["sub"] = claims["sub"]
        session["name"] = claims.get("name") or claims.get("preferred_username") or claims["sub"]
        session["roles"] = sorted(roles_of(claims))
        session["csrf"] = secrets.token_urlsafe(32)
        request.scope[ROTATE_KEY] = True
        return RedirectResponse(next_path, status_code=303)

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, str(form.get("csrf") or ""))
        oauth: OAuth = request.app.state.oauth
        id_token = request.session.get("id_token")
        request.session.clear()
        metadata = await oauth.create_client(PROVIDER).load_server_metadata()
        end_session = metadata.get("end_session_endpoint")
        if not end_session:
            return RedirectResponse("/signed-out", status_code=303)
        query = {
            "client_id": settings.client_id,
            "post_logout_redirect_uri": settings.public_url.rstrip("/") + "/signed-out",
        }
        if id_token:
            query["id_token_hint"] = id_token
        return RedirectResponse(f"{end_session}?{urlencode(query)}", status_code=303)

    return router
