"""Every HTTP error is an RFC 9457 problem body that names what went wrong and nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from chassis.http import create_http_app
from chassis.problems import Problem, lookup_error, register_error
from chassis.settings import Settings


class InsufficientPoints(Exception):
    pass


class PointsExpired(InsufficientPoints):
    pass


class CodeAlreadyRedeemed(Exception):
    pass


register_error(InsufficientPoints, 409, "insufficient_points")
register_error(CodeAlreadyRedeemed, 409, "code_already_redeemed", title="Code already redeemed")


class Adjustment(BaseModel):
    amount: Decimal = Field(gt=0)
    reason: str


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.post("/v1/members/{member_id}/adjustments")
    async def adjust(member_id: int, adjustment: Adjustment, mode: str) -> dict[str, str]:
        return {"ok": "yes"}

    @router.post("/v1/orders/{order_id}/cancel")
    async def cancel(order_id: str) -> None:
        raise Problem(
            409, "order_completed", detail=f"Order {order_id} is completed and cannot be cancelled."
        )

    @router.post("/v1/redemptions")
    async def redeem() -> None:
        raise CodeAlreadyRedeemed("This code was already redeemed.")

    @router.post("/v1/storefront/redemptions")
    async def spend() -> None:
        raise PointsExpired("Not enough points.")

    @router.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("connection to postgresql://orchard:hunter2@db/orchard failed in repository.py")

    @router.get("/v1/gone")
    async def gone() -> None:
        raise HTTPException(404, "No such order.")

    app = create_http_app(Settings(), title="problems test", readiness_checks={}, routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_validation_errors_name_each_invalid_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/members/abc/adjustments", json={"amount": "-5"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:orchard:problem:validation_failed"
    assert body["status"] == 422
    assert body["code"] == "validation_failed"
    fields = {error["field"]: error["code"] for error in body["errors"]}
    assert fields == {
        "path.member_id": "int_parsing",
        "body.amount": "greater_than",
        "body.reason": "missing",
        "query.mode": "missing",
    }
    assert all(error["message"] for error in body["errors"])


async def test_validation_errors_do_not_echo_the_submitted_values(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/members/1/adjustments?mode=x", json={"amount": "jane@example.com", "reason": "r"}
    )

    assert response.status_code == 422
    assert "jane@example.com" not in response.text


async def test_malformed_json_is_a_validation_problem_on_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/members/1/adjustments?mode=x", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"].startswith("body")


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "title", "detail"),
    [
        pytest.param(
            "POST",
            "/v1/orders/o-1/cancel",
            409,
            "order_completed",
            "Conflict",
            "Order o-1 is completed and cannot be cancelled.",
            id="a raised problem is returned as is",
        ),
        pytest.param(
            "POST",
            "/v1/redemptions",
            409,
            "code_already_redeemed",
            "Code already redeemed",
            "This code was already redeemed.",
            id="a registered domain error becomes its problem",
        ),
        pytest.param(
            "GET",
            "/v1/gone",
            404,
            "not_found",
            "Not Found",
            "No such order.",
            id="http exceptions become problems",
        ),
    ],
)
async def test_an_error_is_answered_as_its_problem_document(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str, title: str, detail: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": f"urn:orchard:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


async def test_a_subclass_of_a_registered_error_inherits_its_mapping(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/storefront/redemptions")

    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"


async def test_an_unexpected_error_is_a_500_that_leaks_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "repository" not in response.text
    assert response.headers["x-request-id"]


async def test_unknown_routes_and_wrong_methods_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nowhere")
    wrong_method = await client.delete("/v1/redemptions")

    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["allow"]


def test_mapping_one_error_type_twice_differently_is_refused() -> None:
    register_error(CodeAlreadyRedeemed, 409, "code_already_redeemed", title="Code already redeemed")

    with pytest.raises(ValueError, match="already mapped"):
        register_error(CodeAlreadyRedeemed, 410, "gone")


def test_the_mapping_is_available_outside_http_for_dead_letter_reasons() -> None:
    mapping = lookup_error(PointsExpired("x"))

    assert mapping is not None
    assert mapping.code == "insufficient_points"
    assert lookup_error(KeyError("x")) is None
