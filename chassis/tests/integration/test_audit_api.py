"""The audit API over a real audit log: filters, paging, bounded inputs, roles, and tampering found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest

from chassis.audit import append_audit
from chassis.audit_api import audit_router
from chassis.auth import issue_token
from chassis.http import create_http_app
from chassis.settings import Settings
from chassis.testing import tamper_audit_log
from deploy.testing import ServiceDb

SETTINGS = Settings(ORCHARD_SERVICE="order")


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_http_app(SETTINGS, title="audit", readiness_checks={}, routers=[audit_router()])
    app.state.runtime = SimpleNamespace(pool=pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def auth(role: str = "auditor") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(role=role, sub=f'{role}-1', settings=SETTINGS)}"}


async def record(pool: asyncpg.Pool, actor: str, action: str, subject_id: str) -> None:
    async with pool.acquire() as conn:
        await append_audit(
            conn, actor=actor, action=action, subject_type="order", subject_id=subject_id, details={"n": 1}
        )


async def audit(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/audit", params=params, headers=auth())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_entries_are_filtered_by_actor_action_and_subject(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    await record(pool, "ops-1", "order.cancelled", "o-1")
    await record(pool, "ops-2", "order.cancelled", "o-2")
    await record(pool, "ops-1", "order.placed", "o-3")

    by_actor = await audit(client, actor="ops-1")
    by_action = await audit(client, action="order.cancelled")
    by_subject = await audit(client, subject_type="order", subject_id="o-2")

    assert [e["subject_id"] for e in by_actor["items"]] == ["o-1", "o-3"]
    assert [e["actor"] for e in by_action["items"]] == ["ops-1", "ops-2"]
    assert [e["seq"] for e in by_subject["items"]] == [2]
    assert by_subject["items"][0]["details"] == {"n": 1}


async def test_entries_are_filtered_by_time(pool: asyncpg.Pool, client: httpx.AsyncClient) -> None:
    await record(pool, "ops-1", "order.placed", "o-1")
    await record(pool, "ops-1", "order.placed", "o-2")
    second = (await audit(client))["items"][1]["occurred_at"]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    assert [e["subject_id"] for e in (await audit(client, **{"from": second}))["items"]] == ["o-2"]
    assert [e["subject_id"] for e in (await audit(client, to=second))["items"]] == ["o-1"]
    assert (await audit(client, **{"from": later}))["items"] == []


async def test_pages_follow_the_chain_until_the_last(pool: asyncpg.Pool, client: httpx.AsyncClient) -> None:
    for i in range(5):
        await record(pool, "ops-1", "order.placed", f"o-{i}")

    seen: list[int] = []
    after = 0
    while True:
        page = await audit(client, limit=2, after=after)
        seen += [e["seq"] for e in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]

    assert seen == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": -1}, "after"),
        ({"after": 2**63}, "after"),
        ({"actor": "a\x00b"}, "actor"),
        ({"action": "x" * 201}, "action"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"to": "yesterday"}, "to"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/audit", params=params, headers=auth())

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{field}"]


@pytest.mark.parametrize("role", ["ops", "finance", "support_agent", "member", "partner", "hris"])
@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/verify"])
async def test_only_auditors_and_admins_read_the_log(client: httpx.AsyncClient, role: str, path: str) -> None:
    assert (await client.get(path, headers=auth(role))).status_code == 403
    assert (await client.get(path)).status_code == 401


async def test_an_intact_log_verifies(pool: asyncpg.Pool, client: httpx.AsyncClient) -> None:
    for i in range(3):
        await record(pool, "ops-1", "order.placed", f"o-{i}")

    response = await client.get("/v1/audit/verify", headers=auth("admin"))

    assert response.status_code == 200
    assert response.json() == {"ok": True, "entries": 3, "first_broken_seq": None}


async def test_an_empty_log_verifies(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/audit/verify", headers=auth())

    assert response.json() == {"ok": True, "entries": 0, "first_broken_seq": None}


async def test_a_row_edited_in_the_database_is_named_as_the_first_broken(
    pool: asyncpg.Pool, client: httpx.AsyncClient, service_db: ServiceDb
) -> None:
    for i in range(4):
        await record(pool, "ops-1", "order.placed", f"o-{i}")
    await tamper_audit_log(
        service_db.admin_dsn, service_db.schema, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3"
    )

    response = await client.get("/v1/audit/verify", headers=auth())

    assert response.json() == {"ok": False, "entries": 2, "first_broken_seq": 3}
