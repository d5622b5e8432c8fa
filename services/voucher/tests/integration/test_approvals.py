"""Campaign budget increases and bulk recoveries wait for a second person holding the approver permission."""

from __future__ import annotations

import uuid

from chassis.tests.approvals_support import announced, audited, decide, pending_ids

from .conftest import Voucher, auth, order_event, publish_orders

APPROVER = ["ops", "approver"]


async def budget_of(voucher: Voucher, campaign: str) -> str | None:
    answer = await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("admin"))
    budget: str | None = answer.json()["budget"]
    return budget


async def set_budget(voucher: Voucher, campaign: str, budget: str | None, maker: str = "olga"):
    return await voucher.http.patch(
        f"/v1/campaigns/{campaign}", json={"budget": budget}, headers=auth("ops", maker)
    )


async def test_a_budget_increase_waits_for_another_approver_and_a_decrease_does_not(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(budget="100.00")

    lowered = await set_budget(voucher, campaign, "80.00")
    asked = await set_budget(voucher, campaign, "500.00")

    assert lowered.status_code == 200, lowered.text
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval_id"]
    assert asked.json()["kind"] == "budget_increase"
    assert await budget_of(voucher, campaign) == "80.00"
    assert approval_id in await pending_ids(voucher.http, auth("auditor"), "budget_increase")

    own = await decide(voucher.http, approval_id, "approve", auth(APPROVER, "olga"))
    assert (own.status_code, own.json()["code"]) == (403, "maker_cannot_approve")
    approved = await decide(voucher.http, approval_id, "approve", auth(APPROVER, "pete"))
    again = await decide(voucher.http, approval_id, "approve", auth("admin", "ann"))

    assert approved.status_code == 200, approved.text
    assert approved.json()["result"]["budget"] == "500.00"
    assert again.status_code == 409
    assert await budget_of(voucher, campaign) == "500.00"
    versions = await voucher.pool.fetchval("SELECT version FROM campaigns WHERE campaign_id = $1", campaign)
    assert versions == 3  # created, lowered, raised once
    assert await audited(voucher.pool, approval_id) == [
        ("approval.requested", "ops:olga"),
        ("approval.approved", "approver:pete"),
    ]
    assert await announced(voucher.bootstrap, approval_id, decisions=1) == [
        ("approval.requested", None),
        ("approval.decided", "approved"),
    ]


async def test_a_rejected_budget_increase_leaves_the_budget_as_it_was(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(budget="100.00")

    unlimited = await set_budget(voucher, campaign, None)
    approval_id = unlimited.json()["approval_id"]
    rejected = await decide(
        voucher.http, approval_id, "reject", auth("admin", "ann"), reason="not this quarter"
    )

    assert unlimited.status_code == 202
    assert rejected.json()["status"] == "rejected"
    assert await budget_of(voucher, campaign) == "100.00"
    assert await audited(voucher.pool, approval_id) == [
        ("approval.requested", "ops:olga"),
        ("approval.rejected", "admin:ann"),
    ]


async def issued_codes(voucher: Voucher, campaign: str, count: int) -> None:
    await publish_orders(voucher.bootstrap, [order_event(uuid.uuid4(), campaign) for _ in range(count)])
    await voucher.wait_for(
        "SELECT count(*) FROM codes WHERE campaign_id = $1 AND status = 'issued'",
        campaign,
        expected=count,
        what="codes issued",
    )


async def issued_count(voucher: Voucher, campaign: str) -> int:
    sql = "SELECT count(*) FROM codes WHERE campaign_id = $1 AND status = 'issued'"
    return int(await voucher.pool.fetchval(sql, campaign))


async def test_a_bulk_recovery_waits_for_another_approver_and_a_small_one_does_not(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_RECOVERY_APPROVAL_ABOVE=2)
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 6)
    await issued_codes(voucher, campaign, 5)
    one = await voucher.pool.fetchval("SELECT code_id FROM codes WHERE status = 'issued' LIMIT 1")
    everything = {"filter": {"campaign_id": campaign, "status": "issued"}, "reason": "campaign withdrawn"}

    small = await voucher.http.post(
        "/v1/codes/recover", json={"code_ids": [str(one)], "reason": "bounced"}, headers=auth("ops", "olga")
    )
    dry = await voucher.http.post(
        "/v1/codes/recover", json=everything | {"dry_run": True}, headers=auth("ops")
    )
    refused = await voucher.http.post("/v1/codes/recover", json=everything, headers=auth("ops", "olga"))
    kept = await decide(
        voucher.http, refused.json()["approval_id"], "reject", auth(APPROVER, "pete"), reason="no"
    )

    assert (small.status_code, small.json()["recovered"]) == (200, 1)
    assert (dry.status_code, dry.json()["matched"]) == (200, 4)
    assert refused.status_code == 202, refused.text
    assert kept.json()["status"] == "rejected"
    assert await issued_count(voucher, campaign) == 4

    asked = await voucher.http.post("/v1/codes/recover", json=everything, headers=auth("ops", "olga"))
    approval_id = asked.json()["approval_id"]
    assert (asked.json()["kind"], asked.json()["request"]["matched"]) == ("bulk_recovery", 4)
    assert await issued_count(voucher, campaign) == 4
    assert approval_id in await pending_ids(voucher.http, auth("approver", "pete"), "bulk_recovery")
    own = await decide(voucher.http, approval_id, "approve", auth(APPROVER, "olga"))
    approved = await decide(voucher.http, approval_id, "approve", auth(APPROVER, "pete"))
    again = await decide(voucher.http, approval_id, "approve", auth(APPROVER, "pete"))

    assert own.status_code == 403
    assert approved.status_code == 200, approved.text
    assert approved.json()["result"]["recovered"] == 4
    assert again.status_code == 409
    assert await issued_count(voucher, campaign) == 0
    recoveries = await voucher.pool.fetch(
        "SELECT actor, details FROM audit_log WHERE action = 'codes.recovered' ORDER BY seq"
    )
    assert [r["actor"] for r in recoveries] == ["ops:olga", "ops:olga"]
    assert await audited(voucher.pool, approval_id) == [
        ("approval.requested", "ops:olga"),
        ("approval.approved", "approver:pete"),
    ]


async def test_a_budget_increase_within_the_configured_margin_applies_at_once(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_BUDGET_APPROVAL_ABOVE="100")
    campaign = await voucher.create_campaign(budget="100.00")

    small = await set_budget(voucher, campaign, "200.00")
    large = await set_budget(voucher, campaign, "300.01")

    assert small.status_code == 200, small.text
    assert large.status_code == 202, large.text
    assert await budget_of(voucher, campaign) == "200.00"
