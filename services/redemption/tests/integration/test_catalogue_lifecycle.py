"""Offers and rewards can be edited, paused, resumed and ended over HTTP, against real Postgres: a paused
or ended one is refused with its reason (recorded for offers), ended is for good, and every change is
audited."""

from __future__ import annotations

import uuid
from typing import Any

from services.redemption.tests.integration.conftest import (
    PIN,
    RunningService,
    create_offer,
    pinned_member,
    redeem_offer,
)


async def _partners_offer(service: RunningService) -> tuple[str, str, str, dict[str, str]]:
    """A new partner's PIN offer, a member who can redeem it, and the partner's headers."""
    partner = f"p-{uuid.uuid4().hex[:6]}"
    offer, member = await create_offer(service, partner), await pinned_member(service)
    return partner, offer, member, service.auth("partner", partner)


async def _audit(service: RunningService, subject: str) -> list[str]:
    async with service.pool.acquire() as conn:
        rows = await conn.fetch("SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY seq", subject)
    return [r["action"] for r in rows]


async def test_a_paused_offer_refuses_redemptions_with_a_recorded_reason_until_it_is_resumed(
    service: RunningService,
) -> None:
    partner, offer, member, me = await _partners_offer(service)

    paused = await service.client.post(
        f"/v1/offers/{offer}/pause", json={"reason": "kitchen closed"}, headers=me
    )
    refused = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)
    again = await service.client.post(f"/v1/offers/{offer}/pause", headers=me)
    listed = await service.client.get("/v1/offers", headers=service.auth("member", member))
    resumed = await service.client.post(f"/v1/offers/{offer}/resume", headers=me)
    redeemed = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)

    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert (refused.status_code, refused.json()["status"], refused.json()["reason"]) == (
        201,
        "failed",
        "offer_paused",
    )
    assert (again.status_code, again.json()["code"]) == (409, "already_paused")
    assert offer not in {o["offer_id"] for o in listed.json()["items"]}, "members see no paused offer"
    assert resumed.json()["status"] == "active"
    assert redeemed.json()["status"] == "successful"
    assert await _audit(service, offer) == ["offer.created", "offer.paused", "offer.resumed"]


async def test_an_ended_offer_refuses_redemptions_and_can_neither_resume_nor_change(
    service: RunningService,
) -> None:
    partner, offer, member, me = await _partners_offer(service)

    ended = await service.client.post(f"/v1/offers/{offer}/end", headers=me)
    refused = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)
    resume = await service.client.post(f"/v1/offers/{offer}/resume", headers=me)
    edit = await service.client.patch(f"/v1/offers/{offer}", json={"title": "Two desserts"}, headers=me)
    shown = await service.client.get(f"/v1/offers/{offer}", headers=me)

    assert ended.json()["status"] == "ended"
    assert refused.json()["reason"] == "offer_ended"
    assert [(r.status_code, r.json()["code"]) for r in (resume, edit)] == [(409, "ended"), (409, "ended")]
    assert (shown.json()["status"], shown.json()["title"]) == ("ended", "Free dessert")


async def test_an_offers_terms_are_edited_by_its_partner_or_staff_and_checked(
    service: RunningService,
) -> None:
    partner, other = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(service, partner, total_cap=5)
    member = await pinned_member(service)
    for _ in range(2):
        assert (await redeem_offer(service, partner, offer, member_id=member, pin=PIN)).json()[
            "status"
        ] == "successful"
    me = service.auth("partner", partner)

    edited = await service.client.patch(
        f"/v1/offers/{offer}",
        json={"title": "Free dessert and coffee", "total_cap": 10, "limit_per_member": None},
        headers=me,
    )
    by_ops = await service.client.patch(
        f"/v1/offers/{offer}", json={"description": "weekdays"}, headers=service.auth("ops", "olga")
    )
    foreign = await service.client.patch(
        f"/v1/offers/{offer}", json={"title": "Mine"}, headers=service.auth("partner", other)
    )
    below = await service.client.patch(f"/v1/offers/{offer}", json={"total_cap": 0}, headers=me)
    under_redeemed = await service.client.patch(f"/v1/offers/{offer}", json={"total_cap": 1}, headers=me)
    backwards = await service.client.patch(
        f"/v1/offers/{offer}", json={"valid_until": "2000-01-01T00:00:00Z"}, headers=me
    )
    nothing = await service.client.patch(f"/v1/offers/{offer}", json={}, headers=me)
    untitled = await service.client.patch(f"/v1/offers/{offer}", json={"title": None}, headers=me)

    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["total_cap"], edited.json()["redeemed"]) == (
        "Free dessert and coffee",
        10,
        2,
    )
    assert by_ops.json()["description"] == "weekdays"
    assert (foreign.status_code, foreign.json()["code"]) == (404, "offer_not_found")
    assert below.status_code == 422
    assert below.json()["errors"][0]["field"].endswith("total_cap")
    assert (under_redeemed.status_code, under_redeemed.json()["errors"][0]["code"]) == (409, "below_redeemed")
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "body.valid_until"
    assert nothing.status_code == 422
    assert untitled.status_code == 422
    assert untitled.json()["errors"][0]["field"] == "body.title"
    shown = await service.client.get(f"/v1/offers/{offer}", headers=me)
    assert (shown.json()["total_cap"], shown.json()["description"]) == (10, "weekdays")
    assert await _audit(service, offer) == ["offer.created", "offer.updated", "offer.updated"]


async def _reward(service: RunningService, **extra: Any) -> str:
    body = {"name": "Coffee voucher", "campaign_id": "camp-coffee", "points_price": "500", **extra}
    response = await service.client.post("/v1/rewards", json=body, headers=service.auth("admin", "alice"))
    assert response.status_code == 201, response.text
    return str(response.json()["reward_id"])


async def test_a_paused_or_ended_reward_leaves_the_storefront_and_its_redemptions_are_refused(
    service: RunningService,
) -> None:
    reward, member = await _reward(service), f"m-{uuid.uuid4().hex[:6]}"
    ops = service.auth("ops", "olga")

    async def redeem() -> Any:
        return await service.client.post(
            "/v1/storefront/redemptions",
            json={"reward_id": reward, "email": "m@example.com", "channel": "email"},
            headers=service.auth("member", member),
        )

    async def on_storefront() -> bool:
        listing = await service.client.get("/v1/rewards", headers=service.auth("member", member))
        return reward in {r["reward_id"] for r in listing.json()["items"]}

    paused = await service.client.post(
        f"/v1/rewards/{reward}/pause", json={"reason": "supplier late"}, headers=ops
    )
    refused = await redeem()
    hidden = not await on_storefront()
    member_view = await service.client.get(f"/v1/rewards/{reward}", headers=service.auth("member", member))
    resumed = await service.client.post(f"/v1/rewards/{reward}/resume", headers=ops)
    shown = await on_storefront()
    ended = await service.client.post(f"/v1/rewards/{reward}/end", headers=ops)
    after_end = await redeem()
    by_member = await service.client.post(
        f"/v1/rewards/{reward}/resume", headers=service.auth("member", member)
    )

    assert (paused.json()["status"], paused.json()["available"], paused.json()["active"]) == (
        "paused",
        False,
        False,
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "reward_unavailable")
    assert hidden
    assert member_view.status_code == 404
    assert resumed.json()["status"] == "active"
    assert shown
    assert ended.json()["status"] == "ended"
    assert (after_end.status_code, after_end.json()["code"]) == (409, "reward_unavailable")
    assert by_member.status_code == 403
    assert await _audit(service, reward) == [
        "reward.created",
        "reward.paused",
        "reward.resumed",
        "reward.ended",
    ]


async def test_a_rewards_price_and_stock_are_edited_and_an_ended_reward_is_not(
    service: RunningService,
) -> None:
    reward = await _reward(service, stock=3)
    admin = service.auth("admin", "alice")

    edited = await service.client.patch(
        f"/v1/rewards/{reward}",
        json={"points_price": "750", "stock": None, "name": "Large coffee"},
        headers=admin,
    )
    inactive = await _reward(service, active=False)
    created_paused = await service.client.get(f"/v1/rewards/{inactive}", headers=admin)
    free = await service.client.patch(f"/v1/rewards/{reward}", json={"points_price": "0"}, headers=admin)
    await service.client.post(f"/v1/rewards/{reward}/end", headers=admin)
    after_end = await service.client.patch(f"/v1/rewards/{reward}", json={"stock": 5}, headers=admin)
    missing = await service.client.patch("/v1/rewards/no-such-reward", json={"stock": 5}, headers=admin)

    assert edited.status_code == 200, edited.text
    assert (edited.json()["points_price"], edited.json()["stock_remaining"], edited.json()["name"]) == (
        "750",
        None,
        "Large coffee",
    )
    assert created_paused.json()["status"] == "paused"
    assert free.status_code == 422
    assert free.json()["errors"][0]["field"].endswith("points_price")
    assert (after_end.status_code, after_end.json()["code"]) == (409, "ended")
    assert (missing.status_code, missing.json()["code"]) == (404, "reward_not_found")


async def test_a_rewards_voucher_value_is_answered_in_its_currencys_minor_units(
    service: RunningService,
) -> None:
    euros = await _reward(service, amount="25", currency="EUR")
    yen = await _reward(service, amount="2500", currency="JPY")

    shown = [
        (await service.client.get(f"/v1/rewards/{r}", headers=service.auth("admin", "alice"))).json()
        for r in (euros, yen)
    ]

    assert [(s["amount"], s["currency"], s["points_price"]) for s in shown] == [
        ("25.00", "EUR", "500"),
        ("2500", "JPY", "500"),
    ]
