"""An access token about to expire is refreshed with the refresh token before a page calls a service;
a refused refresh signs the person out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from console.app import create_app
from console.settings import ConsoleSettings


class Provider:
    def __init__(self) -> None:
        self.issuer = ""
        self.refreshes: list[dict[str, list[str]]] = []
        self.refuse = False


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._json(200, {"issuer": state.issuer, "token_endpoint": state.issuer + "/token",
                             "authorization_endpoint": state.issuer + "/auth",
                             "jwks_uri": state.issuer + "/certs"})  # fmt: skip

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            state.refreshes.append(form)
            if state.refuse:
                self._json(400, {"error": "invalid_grant"})
            else:
                self._json(200, {"access_token": "fresh", "refresh_token": "r2", "expires_in": 300})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/orchard"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


@pytest.fixture
async def console(provider: Provider) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(ConsoleSettings(ORCHARD_ENV="dev", ORCHARD_OIDC_ISSUER=provider.issuer))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client,
    ):
        sid = app.state.sessions.put(
            None,
            {"access_token": "stale", "refresh_token": "r1", "expires_at": time.time() - 1, "sub": "u-1",
             "roles": ["admin"], "csrf": "c"},
        )  # fmt: skip
        client.cookies.set("orchard-console", sid)
        yield client, app.state.sessions, sid


async def test_an_expired_access_token_is_refreshed_before_the_page_is_served(console, provider) -> None:
    client, sessions, sid = console
    answer = await client.get("/")
    assert answer.status_code == 200
    assert provider.refreshes[0]["grant_type"] == ["refresh_token"]
    assert provider.refreshes[0]["refresh_token"] == ["r1"]
    session = sessions.get(sid)
    assert (session["access_token"], session["refresh_token"]) == ("fresh", "r2")


async def test_a_refused_refresh_sends_the_person_to_sign_in_again(console, provider) -> None:
    client, sessions, sid = console
    provider.refuse = True
    answer = await client.get("/orders")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")
    assert sessions.get(sid) is None
