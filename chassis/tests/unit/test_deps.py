"""A route that takes `pool: DbPool` gets the running service's pool, or a 503 problem while there is none."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import APIRouter

from chassis.deps import DbPool
from chassis.http import create_http_app
from chassis.settings import Settings


def _app_with(pool: Any) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/v1/pool")
    async def which_pool(pool: DbPool) -> dict[str, str]:
        return {"pool": str(pool)}

    app = create_http_app(Settings(), title="deps test", readiness_checks={}, routers=[router])
    app.state.runtime = SimpleNamespace(pool=pool)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_route_gets_the_running_services_pool() -> None:
    async with _app_with("the-pool") as client:
        response = await client.get("/v1/pool")

    assert response.status_code == 200
    assert response.json() == {"pool": "the-pool"}


async def test_a_request_before_the_pool_is_connected_is_a_503_problem() -> None:
    async with _app_with(None) as client:
        response = await client.get("/v1/pool")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["detail"] == "The service is still starting."


def test_the_pool_parameter_adds_nothing_to_the_openapi_document() -> None:
    router = APIRouter()

    @router.get("/v1/pool")
    async def which_pool(pool: DbPool) -> None:
        return None

    app = create_http_app(Settings(), title="deps test", readiness_checks={}, routers=[router])

    assert "parameters" not in app.openapi()["paths"]["/v1/pool"]["get"]
