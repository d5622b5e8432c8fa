"""The HTTP app every service serves: ids, access log, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
import structlog
from fastapi import APIRouter, FastAPI

from chassis.http import ReadinessCheck, create_http_app
from chassis.settings import Settings
from chassis.tests.unit.conftest import LogCapture


async def passing() -> None:
    return None


async def failing_with_a_dsn() -> None:
    raise ConnectionRefusedError("cannot reach postgresql://orchard:s3cret@10.0.0.5:5432/orchard")


async def hanging() -> None:
    await asyncio.sleep(30)


def build_app(checks: Mapping[str, ReadinessCheck] | None = None) -> FastAPI:
    router = APIRouter()

    @router.get("/v1/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, str]:
        structlog.get_logger("orders").info("order_read", order_id=order_id)
        return {"order_id": order_id}

    return create_http_app(
        Settings(ORCHARD_SERVICE="order"),
        title="Order service",
        readiness_checks=checks if checks is not None else {"postgres": passing},
        routers=[router],
        readiness_timeout_s=0.2,
    )


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_liveness_answers_ok_without_a_token() -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_is_200_when_every_check_passes() -> None:
    async with client_for(build_app({"postgres": passing, "kafka": passing})) as client:
        response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "kafka": "ok"}}


async def test_readiness_is_503_naming_the_failed_check_without_its_secrets() -> None:
    async with client_for(build_app({"postgres": failing_with_a_dsn, "kafka": passing})) as client:
        response = await client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["postgres"].startswith("failed: ConnectionRefusedError: cannot reach postgresql://")
    assert "s3cret" not in response.text


async def test_a_hanging_check_fails_readiness_after_its_timeout() -> None:
    async with client_for(build_app({"kafka": hanging, "postgres": passing})) as client:
        started = asyncio.get_running_loop().time()
        response = await client.get("/health/ready")
        elapsed = asyncio.get_running_loop().time() - started

    assert response.status_code == 503
    assert response.json()["checks"] == {"kafka": "failed: timed out after 0.2s", "postgres": "ok"}
    assert elapsed < 2


async def test_readiness_checks_run_concurrently() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.1)

    async with client_for(build_app({f"dependency-{i}": slow for i in range(5)})) as client:
        started = asyncio.get_running_loop().time()
        response = await client.get("/health/ready")
        elapsed = asyncio.get_running_loop().time() - started

    assert response.status_code == 200
    assert elapsed < 0.4


async def test_metrics_expose_prometheus_text_with_route_templates() -> None:
    async with client_for(build_app()) as client:
        await client.get("/v1/orders/o-123")
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE orchard_http_requests_total counter" in response.text
    assert (
        'orchard_http_requests_total{method="GET",route="/v1/orders/{order_id}",status="200"}'
        in response.text
    )
    assert "orchard_http_request_duration_seconds_bucket" in response.text
    assert "o-123" not in response.text


async def test_unmatched_paths_share_one_metrics_label() -> None:
    async with client_for(build_app()) as client:
        await client.get("/no/such/path/12345")
        response = await client.get("/metrics")

    assert 'route="unmatched",status="404"' in response.text
    # As a label value, that is: a sample's value may happen to contain the digits.
    assert "/no/such/path" not in response.text
    assert '12345"' not in response.text


async def test_several_apps_in_one_process_share_metrics_without_clashing() -> None:
    first, second = build_app(), build_app()

    async with client_for(first) as a, client_for(second) as b:
        assert (await a.get("/metrics")).status_code == 200
        assert (await b.get("/metrics")).status_code == 200


async def test_a_request_id_is_made_when_missing_and_echoed() -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/health/live")

    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-correlation-id"] == response.headers["x-request-id"]


async def test_client_request_and_correlation_ids_are_echoed() -> None:
    async with client_for(build_app()) as client:
        response = await client.get(
            "/health/live", headers={"X-Request-ID": "req-42", "X-Correlation-ID": "corr-7"}
        )

    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["x-correlation-id"] == "corr-7"


async def test_a_request_id_that_could_forge_log_content_is_replaced() -> None:
    async with client_for(build_app()) as client:
        response = await client.get("/health/live", headers={"X-Request-ID": 'x" {"level": "error'})

    assert response.headers["x-request-id"] != 'x" {"level": "error'


async def test_logs_written_during_a_request_carry_its_ids(logs: LogCapture) -> None:
    async with client_for(build_app()) as client:
        await client.get("/v1/orders/o-1", headers={"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"})

    [order_read] = [line for line in logs.lines() if line["event"] == "order_read"]
    assert order_read["request_id"] == "req-1"
    assert order_read["correlation_id"] == "corr-1"


async def test_one_access_line_per_request_with_route_template_and_no_query_string(logs: LogCapture) -> None:
    async with client_for(build_app()) as client:
        await client.get("/v1/orders/o-1?email=jane@example.com", headers={"X-Request-ID": "req-2"})

    [access] = [line for line in logs.lines() if line["event"] == "http_request"]
    assert access["method"] == "GET"
    assert access["route"] == "/v1/orders/{order_id}"
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
    assert access["request_id"] == "req-2"
    assert "jane" not in str(logs.lines())


async def test_every_client_error_is_documented_as_a_problem_body() -> None:
    async with client_for(build_app()) as client:
        document = (await client.get("/openapi.json")).json()

    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            client_errors = {code for code in operation["responses"] if code.upper().startswith("4")}
            assert "4XX" in client_errors, f"{method} {path}"
            for code in client_errors:
                assert operation["responses"][code]["content"] == problem, f"{method} {path} {code}"
    ready = document["paths"]["/health/ready"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Readiness"}


async def test_openapi_docs_are_served() -> None:
    async with client_for(build_app()) as client:
        docs = await client.get("/docs")
        schema = await client.get("/openapi.json")

    assert docs.status_code == 200
    assert schema.json()["info"]["title"] == "Order service"
    assert {"/health/live", "/health/ready", "/metrics", "/v1/orders/{order_id}"} <= set(
        schema.json()["paths"]
    )
