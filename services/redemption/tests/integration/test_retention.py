"""Retention: a dry run says what would go and changes nothing; a run anonymises or purges what is past
its period, audits it, and the dashboards' aggregates stay exactly as they were."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chassis.audit import verify_audit_chain
from contracts.redemption import RedemptionKind, RedemptionStatus
from services.redemption.records.domain import Record
from services.redemption.records.repository import write_record
from services.redemption.retention.domain import RetentionAction, RetentionRule
from services.redemption.retention.service import run_retention
from services.redemption.tests.integration.conftest import RunningService


async def _voucher_records(service: RunningService, partner: str, ages_days: list[int]) -> list[uuid.UUID]:
    ids = []
    async with service.pool.acquire() as conn, conn.transaction():
        for age in ages_days:
            record = Record(
                record_id=uuid.uuid4(),
                kind=RedemptionKind.VOUCHER,
                status=RedemptionStatus.SUCCESSFUL,
                redeemed_at=datetime.now(UTC) - timedelta(days=age),
                member_id="m-old",
                segment_token="gold",
                partner_id=partner,
                channel="online",
                location="Store 9",
                amount=Decimal("10.00"),
                currency="EUR",
            )
            await write_record(conn, record)
            ids.append(record.record_id)
    return ids


async def _aggregates(service: RunningService, partner: str) -> dict[str, Any]:
    response = await service.client.get(
        "/v1/redemption-records", params={"partner_id": partner}, headers=service.auth("ops", "o")
    )
    return dict(response.json()["aggregates"])


async def test_a_dry_run_says_what_would_go_and_changes_nothing(service: RunningService) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    await _voucher_records(service, partner, [800, 900, 3])

    response = await service.client.post(
        "/v1/retention/runs", json={"dry_run": True}, headers=service.auth("auditor", "audrey")
    )
    refused = await service.client.post(
        "/v1/retention/runs", json={"dry_run": False}, headers=service.auth("auditor", "audrey")
    )

    voucher = next(r for r in response.json()["results"] if r["record_type"] == "voucher")
    assert (voucher["action"], voucher["affected"]) == ("anonymise", 2)
    assert refused.status_code == 403
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM redemption_records WHERE member_id = 'm-old'") == 3
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject_type = 'retention'") == 0


async def test_anonymising_past_retention_keeps_aggregates_and_is_audited(service: RunningService) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    old_a, old_b, recent = await _voucher_records(service, partner, [800, 900, 3])
    before = await _aggregates(service, partner)

    response = await service.client.post(
        "/v1/retention/runs", json={"dry_run": False}, headers=service.auth("admin", "ada")
    )

    voucher = next(r for r in response.json()["results"] if r["record_type"] == "voucher")
    assert voucher["affected"] == 2
    async with service.pool.acquire() as conn:
        rows = {
            r["record_id"]: r
            for r in await conn.fetch(
                "SELECT record_id, member_id, segment_token, location, anonymised_at FROM redemption_records"
                " WHERE record_id = ANY($1::uuid[])",
                [old_a, old_b, recent],
            )
        }
        audit = await conn.fetchrow(
            "SELECT actor, action, details::text AS d FROM audit_log"
            " WHERE subject_type = 'retention' AND subject_id = 'voucher'"
        )
        assert (await verify_audit_chain(conn)).ok
    assert rows[old_a]["member_id"] is None
    assert rows[old_a]["location"] is None
    assert rows[old_b]["anonymised_at"] is not None
    assert rows[recent]["member_id"] == "m-old"
    assert (audit["actor"], audit["action"]) == ("admin:ada", "retention.anonymise")
    assert '"affected": 2' in audit["d"]
    assert await _aggregates(service, partner) == before
    async with service.pool.acquire() as conn:
        # The past days' deltas were rolled up into one row per bucket (three days, one bucket each).
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM redemption_daily WHERE partner_id = $1 AND day < current_date", partner
            )
            == 3
        )


async def test_purging_past_retention_deletes_records_but_not_the_counts(service: RunningService) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    old, recent = await _voucher_records(service, partner, [40, 1])
    before = await _aggregates(service, partner)

    outcomes = await run_retention(
        service.pool,
        [RetentionRule("voucher", 30, RetentionAction.PURGE)],
        actor="service:test",
        dry_run=False,
    )

    assert outcomes[0].affected >= 1
    async with service.pool.acquire() as conn:
        left = {
            r["record_id"]
            for r in await conn.fetch(
                "SELECT record_id FROM redemption_records WHERE record_id = ANY($1::uuid[])", [old, recent]
            )
        }
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'retention.purge' AND actor = 'service:test'"
        )
    assert left == {recent}
    assert audited == 1
    after = await _aggregates(service, partner)
    assert after["total"] == before["total"]
    assert after["per_day"] == before["per_day"]
