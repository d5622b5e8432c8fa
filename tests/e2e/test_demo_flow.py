"""The demo data `orchard up` loads travels the whole pipeline: IPA → order → code → delivery → wallet."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from chassis.testing import wait_until
from deploy.demo import VOUCHER_CAMPAIGN, demo_records, seed
from tests import pipeline
from tests.system import System


async def _summary(system: System) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=system.urls["order"], headers=system.headers()) as order:
        return (await order.get("/v1/orders/summary")).json()


async def test_demo_allocations_end_as_completed_orders_each_delivered_once(system: System) -> None:
    records = demo_records()
    valid_vouchers = [
        r for r in records if r["reward_type"] == "voucher" and "invalid" not in r["external_ref"]
    ]

    report = await seed(system.urls, system.admin_token)

    assert report.seeded
    await wait_until(
        lambda: _completed(system, len(valid_vouchers)), timeout=120, what="every order completes"
    )
    summary = await _summary(system)
    assert summary["by_state"] == {"pending": 0, "completed": len(valid_vouchers), "cancelled": 0}

    # Voucher messages only: members may also be sent notices (points credited, …).
    emails = pipeline.emails_by_recipient(system)
    messages = pipeline.messages_by_recipient(system)
    by_channel = {
        ch: sum(1 for r in valid_vouchers if r["channel"] == ch) for ch in ("email", "sms", "whatsapp")
    }
    assert sum(emails.values()) == by_channel["email"]
    assert sum(messages.values()) == by_channel["sms"] + by_channel["whatsapp"]
    expected = sorted(r["phone"] for r in valid_vouchers if r["channel"] != "email")
    assert sorted(messages.elements()) == expected, "each SMS/WhatsApp recipient got exactly one message"

    async with httpx.AsyncClient(base_url=system.urls["order"], headers=system.headers()) as order:
        errors = (await order.get(f"/v1/ipa/batches/{report.batch_id}/errors.csv")).text
        progress = (await order.get(f"/v1/ipa/batches/{report.batch_id}")).json()
    rejected = list(csv.DictReader(io.StringIO(errors)))
    assert sorted(r["external_ref"] for r in rejected) == ["demo-invalid-0001", "demo-invalid-0002"]
    assert progress["received"] == len(records)
    assert progress["accepted"] + progress["rejected"] == progress["received"]

    async with httpx.AsyncClient(base_url=system.urls["wallet"], headers=system.headers()) as wallet:
        await wait_until(
            lambda: _has_balance(wallet, "demo-member-01", "500"), timeout=60, what="the points award"
        )


async def test_seeding_again_creates_no_second_reward(system: System) -> None:
    before = await _summary(system)

    again = await seed(system.urls, system.admin_token)

    assert not again.seeded
    assert (await _summary(system))["total"] == before["total"]
    async with httpx.AsyncClient(base_url=system.urls["voucher"], headers=system.headers()) as voucher:
        campaign = (await voucher.get(f"/v1/campaigns/{VOUCHER_CAMPAIGN}")).json()
    assert (
        campaign["code_counts"].get("issued", 0) + campaign["code_counts"].get("redeemed", 0)
        == before["total"]
    )


async def _completed(system: System, expected: int) -> bool:
    return (await _summary(system))["by_state"]["completed"] == expected


async def _has_balance(wallet: httpx.AsyncClient, member_id: str, points: str) -> bool:
    answer = await wallet.get(f"/v1/members/{member_id}/wallet")
    return answer.status_code == 200 and answer.json()["balance"] == points


async def test_a_member_spends_points_on_a_reward_and_gets_the_voucher(system: System) -> None:
    member = "demo-member-01"
    admin = system.headers()
    as_member = system.headers(role="member", sub=member)
    async with (
        httpx.AsyncClient(base_url=system.urls["redemption"]) as redemption,
        httpx.AsyncClient(base_url=system.urls["wallet"], headers=admin) as wallet,
    ):
        await wait_until(lambda: _has_balance(wallet, member, "500"), timeout=60, what="the points award")
        reward = await redemption.post(
            "/v1/rewards",
            headers=admin,
            json={
                "reward_id": "e2e-coffee",
                "name": "Coffee voucher",
                "campaign_id": VOUCHER_CAMPAIGN,
                "points_price": "300",
            },
        )
        assert reward.status_code in (200, 201), reward.text
        started = await redemption.post(
            "/v1/storefront/redemptions",
            headers=as_member,
            json={
                "reward_id": "e2e-coffee",
                "idempotency_key": "e2e-spend-1",
                "email": "member01@example.com",
                "channel": "email",
            },
        )
        assert started.status_code == 202, started.text
        redemption_id = started.json()["redemption_id"]

        async def finished() -> bool:
            view = (
                await redemption.get(f"/v1/storefront/redemptions/{redemption_id}", headers=as_member)
            ).json()
            return view["status"] in ("completed", "failed", "refunded")

        await wait_until(finished, timeout=120, what="the storefront redemption to finish")
        view = (await redemption.get(f"/v1/storefront/redemptions/{redemption_id}", headers=as_member)).json()
        assert view["status"] == "completed", view
        assert view["charged"]
        assert not view["refunded"]
        await wait_until(lambda: _has_balance(wallet, member, "200"), timeout=30, what="the debit")

    async with httpx.AsyncClient(base_url=system.urls["order"], headers=admin) as order:
        placed = (await order.get(f"/v1/orders/{view['order_id']}")).json()
    assert placed["source"] == "storefront"
    assert placed["state"] == "completed"
