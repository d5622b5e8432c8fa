"""What is done to a campaign's codes, and its budget running low, is published on campaign.activity for
its owners (the delivery service routes it to the campaign's Slack/Teams channel)."""

from __future__ import annotations

import uuid

from contracts.topics import Topics

from .conftest import auth, order_event, publish_orders


async def test_generating_recovering_and_extending_codes_are_told_with_counts_actor_and_reason(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(
        expiry_policy={"kind": "fixed_date", "expires_at": "2030-12-31T00:00:00Z"}
    )
    await voucher.generate(campaign, 4)
    order = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE campaign_id = $1", campaign, expected=1, what="one code issued"
    )
    recovered = await voucher.http.post(
        "/v1/codes/recover",
        json={"filter": {"campaign_id": campaign, "status": "issued"}, "reason": "employee left"},
        headers=auth("admin", "ada"),
    )
    assert recovered.status_code == 200, recovered.text
    extended = await voucher.http.post(
        "/v1/codes/extend-expiry",
        json={"campaign_id": campaign, "expires_at": "2031-01-31T00:00:00Z", "reason": "season"},
        headers=auth("ops", "olga"),
    )
    assert extended.status_code in (200, 201), extended.text
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )

    told = await voucher.events(Topics.CAMPAIGN_ACTIVITY, campaign_id=campaign)
    by_kind = {e["data"]["kind"]: e["data"] for e in told}
    assert by_kind["codes_generated"]["count"] == 4
    assert by_kind["codes_generated"]["actor"].endswith(":tester")
    assert (by_kind["codes_recovered"]["count"], by_kind["codes_recovered"]["detail"]) == (1, "employee left")
    assert by_kind["codes_recovered"]["actor"] == "admin:ada"
    assert by_kind["expiry_extended"]["count"] == extended.json()["changed"]
    assert "season" in by_kind["expiry_extended"]["detail"]
    assert all("code" not in key for e in told for key in e["data"] if key not in ("kind",)), (
        "no code travels"
    )


async def test_a_budget_nearly_spent_is_told_once_and_again_only_after_it_was_raised(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_BUDGET_ALERT_INTERVAL=0.3)
    campaign = await voucher.create_campaign(budget="100.00")
    await voucher.generate(campaign, 6)
    await publish_orders(voucher.bootstrap, [order_event(uuid.uuid4(), campaign) for _ in range(3)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE campaign_id = $1", campaign, expected=3, what="75 of 100 spent"
    )
    await publish_orders(voucher.bootstrap, [order_event(uuid.uuid4(), campaign)])
    await voucher.wait_for(
        "SELECT budget_alerted_at IS NOT NULL FROM campaigns WHERE campaign_id = $1",
        campaign,
        expected=True,
        what="the budget alert (100 of 100 spent)",
    )
    asked = await voucher.http.patch(
        f"/v1/campaigns/{campaign}", json={"budget": "1000.00"}, headers=auth("ops")
    )
    assert asked.status_code == 202, asked.text
    approved = await voucher.http.post(
        f"/v1/approvals/{asked.json()['approval_id']}/approve", headers=auth("approver", "checker")
    )
    assert approved.status_code == 200, approved.text
    await voucher.wait_for(
        "SELECT budget_alerted_at IS NULL FROM campaigns WHERE campaign_id = $1",
        campaign,
        expected=True,
        what="the alert re-armed by the raise",
    )
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )

    alerts = [
        e["data"]
        for e in await voucher.events(Topics.CAMPAIGN_ACTIVITY, campaign_id=campaign)
        if e["data"]["kind"] == "budget_nearly_spent"
    ]
    assert len(alerts) == 1, "told once, not at every tick"
    assert alerts[0]["detail"] == "100 of 100 EUR used (100%), 0 EUR left"
    assert alerts[0]["actor"] is None
