"""Anonymous requests and oversized bodies are refused before their bodies are read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from starlette.types import Message

from chassis.auth import Principal, issue_token, require_roles
from chassis.http import body_limit, create_http_app, upload_body
from chassis.settings import Settings

SETTINGS = Settings(
    ORCHARD_SERVICE="order",
    ORCHARD_JWT_SECRET="unit-test-secret-long-enough-for-hs256",
    ORCHARD_JWT_ISSUER="unit",
    ORCHARD_HTTP_MAX_BODY_BYTES=1000,
    ORCHARD_HTTP_MAX_UPLOAD_BYTES=5000,
)


def build_app() -> Any:
    router = APIRouter()

    @router.post("/v1/orders")
    async def create(
        body: dict[str, Any], principal: Principal = Depends(require_roles("ops"))
    ) -> dict[str, Any]:
        return {"keys": len(body), "by": principal.sub}

    @router.post("/v1/uploads", dependencies=[Depends(upload_body)])
    async def upload(request: Request, _: Principal = Depends(require_roles("ops"))) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.post("/v1/imports", dependencies=[Depends(body_limit(200))])
    async def imports(request: Request, _: Principal = Depends(require_roles("ops"))) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.post("/v1/public/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return create_http_app(SETTINGS, title="bodies", readiness_checks={}, routers=[router])


def bearer(role: str = "ops") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(role=role, sub='u-1', settings=SETTINGS)}"}


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def call_raw(
    app: Any, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes, int]:
    """Calls the app directly with a receive() that counts how often it was called."""
    calls = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "server": ("test", 80),
        "client": ("127.0.0.1", 1234),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, content, calls


async def test_an_anonymous_post_is_refused_401_before_its_body_is_read() -> None:
    status, headers, content, calls = await call_raw(
        build_app(), "/v1/orders", b'{"a": 1}', {"content-type": "application/json"}
    )

    assert status == 401
    assert calls == 0
    assert headers["content-type"] == "application/problem+json"
    assert headers["www-authenticate"] == "Bearer"
    assert b'"code":"unauthenticated"' in content


async def test_an_invalid_token_is_refused_401_before_the_body_is_read() -> None:
    status, headers, content, calls = await call_raw(
        build_app(),
        "/v1/orders",
        b'{"a": 1}',
        {"content-type": "application/json", "authorization": "Bearer not-a-jwt"},
    )

    assert status == 401
    assert calls == 0
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert b'"code":"invalid_token"' in content


async def test_an_anonymous_oversized_malformed_post_is_401_not_422() -> None:
    async with client_for(build_app()) as client:
        response = await client.post(
            "/v1/orders", content=b"{" * 30_000, headers={"content-type": "application/json"}
        )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_valid_token_with_the_wrong_role_is_still_403() -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/v1/orders", json={"a": 1}, headers=bearer("finance"))

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_a_valid_token_reaches_the_route() -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/v1/orders", json={"a": 1, "b": 2}, headers=bearer())

    assert response.status_code == 200
    assert response.json() == {"keys": 2, "by": "u-1"}


async def test_public_routes_and_health_need_no_token() -> None:
    async with client_for(build_app()) as client:
        echo = await client.post("/v1/public/echo", content=b"x" * 10)
        live = await client.get("/health/live")
        docs = await client.get("/openapi.json")

    assert (echo.status_code, echo.json()) == (200, {"bytes": 10})
    assert live.status_code == 200
    assert docs.status_code == 200


async def test_a_body_over_the_limit_is_refused_413_without_reading_it_whole() -> None:
    status, headers, content, calls = await call_raw(
        build_app(), "/v1/orders", b"x" * 1001, {"content-type": "application/json", **bearer()}
    )

    assert status == 413
    assert calls == 0
    assert headers["content-type"] == "application/problem+json"
    assert b'"code":"payload_too_large"' in content


class _CountedBody:
    """A 100 kB body sent in 100-byte chunks, counting how much of it the server pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for _ in range(1000):
            self.pulled += 100
            yield b"x" * 100


async def test_a_chunked_body_over_the_limit_is_cut_off_413_at_the_limit() -> None:
    body = _CountedBody()

    async with client_for(build_app()) as client:
        response = await client.post(
            "/v1/orders", content=body.chunks(), headers={"content-type": "application/json", **bearer()}
        )

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert body.pulled < 100_000


async def test_an_anonymous_chunked_post_is_refused_401_without_pulling_its_body() -> None:
    body = _CountedBody()

    async with client_for(build_app()) as client:
        response = await client.post("/v1/orders", content=body.chunks())

    assert response.status_code == 401
    assert body.pulled < 100_000


async def test_a_public_route_also_has_the_default_limit() -> None:
    async with client_for(build_app()) as client:
        response = await client.post("/v1/public/echo", content=b"x" * 1001)

    assert response.status_code == 413


async def test_upload_routes_accept_bodies_up_to_the_upload_limit() -> None:
    async with client_for(build_app()) as client:
        within = await client.post("/v1/uploads", content=b"x" * 5000, headers=bearer())
        over = await client.post("/v1/uploads", content=b"x" * 5001, headers=bearer())

    assert (within.status_code, within.json()) == (200, {"bytes": 5000})
    assert over.status_code == 413
    assert over.json()["code"] == "upload_too_large"


async def test_a_route_can_declare_its_own_limit() -> None:
    async with client_for(build_app()) as client:
        within = await client.post("/v1/imports", content=b"x" * 200, headers=bearer())
        over = await client.post("/v1/imports", content=b"x" * 201, headers=bearer())

    assert within.status_code == 200
    assert over.status_code == 413
