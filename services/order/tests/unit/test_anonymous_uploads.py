"""The order service's IPA upload refuses anonymous callers before reading their upload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from chassis.http import create_http_app
from services.order.app import build_spec
from services.order.settings import OrderSettings


async def test_an_anonymous_ipa_upload_is_refused_401_before_its_body_is_read() -> None:
    settings = OrderSettings(ORCHARD_SERVICE="order")
    spec, _ = build_spec(settings)
    app = create_http_app(settings, title=spec.title, readiness_checks={}, routers=spec.routers)
    pulled = 0

    async def thirty_megabytes() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(30 * 16):
            pulled += 65536
            yield b"x" * 65536

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/v1/ipa/batches", content=thirty_megabytes(), headers={"Content-Type": "text/csv"}
        )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"
    assert pulled < 30 * 2**20
