"""Exports as asynchronous jobs: scoped by purpose to a fixed field set, formula-safe CSV and JSON lines,
progress until ready, a download, and an audit entry saying who exported what and why."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.audit import verify_audit_chain
from chassis.testing import wait_until
from services.redemption.tests.integration.conftest import RunningService


async def _offer_with_redemptions(service: RunningService, partner: str, count: int) -> str:
    now = datetime.now(UTC)
    response = await service.client.post(
        "/v1/offers",
        json={
            "title": "2 for 1",
            "validation_method": "one_time_code",
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(),
        },
        headers=service.auth("partner", partner),
    )
    offer = str(response.json()["offer_id"])
    for i in range(count):
        answer = await service.client.post(
            f"/v1/offers/{offer}/redemptions",
            json={
                "member_id": f"member-{i}",
                "channel": "in_store",
                "segment_token": "gold",
                "location": '=HYPERLINK("http://evil")' if i == 0 else f"Store {i}",
            },
            headers=service.auth("partner", partner),
        )
        assert answer.status_code == 202, answer.text
    return offer


async def _export(service: RunningService, role: str, sub: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await service.client.post("/v1/exports", json=body, headers=service.auth(role, sub))
    assert response.status_code == 202, response.text
    export_id = response.json()["export_id"]
    seen: dict[str, Any] = {}

    async def ready() -> bool:
        status = await service.client.get(f"/v1/exports/{export_id}", headers=service.auth(role, sub))
        seen.update(status.json())
        return bool(seen["status"] == "ready")

    await wait_until(ready, timeout=30, interval=0.2, what="export ready")
    return seen


async def test_a_partner_settlement_export_carries_only_its_fields_and_only_the_partners_rows_safely(
    service: RunningService,
) -> None:
    partner, other = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    await _offer_with_redemptions(service, partner, 3)
    await _offer_with_redemptions(service, other, 2)

    job = await _export(
        service,
        "partner",
        partner,
        {"purpose": "partner_settlement", "format": "csv", "reason": "monthly settlement"},
    )
    assert job["progress"] == {"rows_done": 3, "rows_total": 3, "percent": 100}
    download = await service.client.get(job["download"], headers=service.auth("partner", partner))

    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 3
    assert "member_id" not in rows[0]
    assert "segment_token" not in rows[0]
    assert {r["partner_id"] for r in rows} == {partner}
    assert '\'=HYPERLINK("http://evil")' in {r["location"] for r in rows}
    someone_else = await service.client.get(
        f"/v1/exports/{job['export_id']}", headers=service.auth("partner", other)
    )
    assert someone_else.status_code == 404


async def test_an_audit_export_in_json_lines_has_member_ids_and_every_export_is_audited(
    service: RunningService,
) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    offer = await _offer_with_redemptions(service, partner, 2)

    job = await _export(
        service,
        "auditor",
        "audrey",
        {
            "purpose": "audit",
            "format": "jsonl",
            "reason": "complaint #42 investigation",
            "fields": ["record_id", "member_id", "offer_id"],
            "filters": {"partner_id": partner},
        },
    )
    download = await service.client.get(job["download"], headers=service.auth("auditor", "audrey"))

    lines = [json.loads(line) for line in download.text.splitlines()]
    assert {tuple(sorted(line)) for line in lines} == {("member_id", "offer_id", "record_id")}
    assert {line["offer_id"] for line in lines} == {offer}
    assert {line["member_id"] for line in lines} == {"member-0", "member-1"}
    async with service.pool.acquire() as conn:
        entries = await conn.fetch(
            "SELECT actor, action, details::text AS details FROM audit_log"
            " WHERE subject_id = $1 ORDER BY seq",
            job["export_id"],
        )
        chain = await verify_audit_chain(conn)
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("auditor:audrey", "export.requested"),
        ("auditor:audrey", "export.downloaded"),
    ]
    requested = json.loads(entries[0]["details"])
    assert requested["reason"] == "complaint #42 investigation"
    assert requested["fields"] == ["record_id", "member_id", "offer_id"]
    assert chain.ok


async def test_a_purpose_refuses_fields_and_roles_outside_its_scope(service: RunningService) -> None:
    too_much = await service.client.post(
        "/v1/exports",
        json={"purpose": "partner_settlement", "reason": "settle", "fields": ["member_id"]},
        headers=service.auth("finance", "fiona"),
    )
    wrong_role = await service.client.post(
        "/v1/exports", json={"purpose": "audit", "reason": "curious"}, headers=service.auth("partner", "p1")
    )
    no_reason = await service.client.post(
        "/v1/exports", json={"purpose": "analytics"}, headers=service.auth("ops", "o1")
    )

    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["field"] == "body.fields"
    assert wrong_role.status_code == 403
    assert no_reason.status_code == 422
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM exports") == 0


async def test_an_export_request_with_nul_bytes_is_refused_with_422_and_no_job_is_stored(
    service: RunningService,
) -> None:
    before = await service.pool.fetchval("SELECT count(*) FROM exports")
    cases = [
        ({"reason": "month\x00end"}, "body.reason"),
        ({"filters": {"partner_id": "p\x00"}}, "body.filters.partner_id"),
        ({"fields": ["partner_id\x00"]}, "body.fields.0"),
    ]
    for override, field in cases:
        body = {"purpose": "partner_settlement", "reason": "month end", **override}
        response = await service.client.post("/v1/exports", json=body, headers=service.auth("finance", "fin"))
        assert response.status_code == 422, (override, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert await service.pool.fetchval("SELECT count(*) FROM exports") == before


async def test_each_requester_lists_only_their_own_exports_newest_first_and_auditors_see_all(
    service: RunningService,
) -> None:
    body = {"purpose": "partner_settlement", "reason": "monthly settlement"}
    first = await _export(service, "partner", "partner-list-a", body)
    second = await _export(service, "partner", "partner-list-a", body)
    other = await _export(service, "partner", "partner-list-b", body)

    own = await service.client.get("/v1/exports", headers=service.auth("partner", "partner-list-a"))
    assert own.status_code == 200, own.text
    assert [e["export_id"] for e in own.json()["items"]] == [second["export_id"], first["export_id"]]

    everyone = await service.client.get("/v1/exports?limit=100", headers=service.auth("auditor", "aud-1"))
    assert {first["export_id"], other["export_id"]} <= {e["export_id"] for e in everyone.json()["items"]}
