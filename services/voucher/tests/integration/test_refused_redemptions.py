"""Every refused partner redemption is answered as before and published with its reason on
`voucher.redemption_refused`, so the redemption service records it as a failed redemption."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts.topics import Topics

from .conftest import auth, order_event, publish_orders


async def _issue_one(voucher, campaign: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    order_id = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order_id, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE order_id = $1", order_id, expected=1, what="code issued"
    )
    code_id = await voucher.pool.fetchval("SELECT code_id FROM codes WHERE order_id = $1", order_id)
    reveal = await voucher.http.post(
        f"/v1/codes/{code_id}/reveal", json={"reason": "testing"}, headers=auth("admin")
    )
    return order_id, code_id, reveal.json()["code"]


def _redeem(voucher, code: str, partner: str, amount: str | None = None, **extra):
    body = {"code": code, "channel": "in_store", "location": "Till 2", "idempotency_key": uuid.uuid4().hex}
    if amount is not None:
        body["amount"] = amount
    return voucher.http.post("/v1/redemptions", json=body | extra, headers=auth("partner", partner))


async def _refusals(voucher, partner: str, expected: int) -> list[dict]:
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    found = [e["data"] for e in await voucher.events(Topics.VOUCHER_REDEMPTION_REFUSED, partner_id=partner)]
    assert len(found) == expected, found
    return found


async def test_a_refused_redemption_of_an_expired_code_is_recorded_with_its_reason(start_voucher):
    voucher = await start_voucher()
    partner = f"p-{uuid.uuid4().hex[:8]}"
    campaign = await voucher.create_campaign(partner_ids=[partner])
    await voucher.generate(campaign, 2)
    order_id, code_id, code = await _issue_one(voucher, campaign)
    past = datetime.now(UTC) - timedelta(minutes=1)
    await voucher.pool.execute("UPDATE codes SET expires_at = $2 WHERE code_id = $1", code_id, past)

    refused = await _redeem(voucher, code, partner, "5.00")

    assert (refused.status_code, refused.json()["code"]) == (422, "code_expired")
    [event] = await _refusals(voucher, partner, expected=1)
    assert event["reason"] == "code_expired"
    assert (event["code_id"], event["campaign_id"], event["order_id"]) == (
        str(code_id),
        campaign,
        str(order_id),
    )
    assert (event["amount"], event["currency"], event["channel"]) == ("5.00", "EUR", "in_store")
    assert event["member_id"] == f"member-{order_id.hex[:6]}"
    status = await voucher.pool.fetchval("SELECT status FROM codes WHERE code_id = $1", code_id)
    assert status == "issued"
    assert await voucher.pool.fetchval("SELECT count(*) FROM redemptions") == 0


async def test_unknown_flagged_used_up_and_wrong_partner_refusals_are_each_recorded_with_their_reason(
    start_voucher,
):
    voucher = await start_voucher()
    partner, stranger = f"p-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    campaign = await voucher.create_campaign(partner_ids=[partner])
    await voucher.generate(campaign, 3)
    _, flagged_id, flagged_code = await _issue_one(voucher, campaign)
    _, used_id, used_code = await _issue_one(voucher, campaign)
    await voucher.http.post(
        "/v1/codes/flag", json={"code_ids": [str(flagged_id)], "reason": "reported"}, headers=auth("ops")
    )
    assert (await _redeem(voucher, used_code, partner)).status_code == 200

    answers = [
        await _redeem(voucher, "NO-SUCH-CODE", partner),
        await _redeem(voucher, flagged_code, partner),
        await _redeem(voucher, used_code, partner, "1.00"),
    ]
    wrong_partner = await _redeem(voucher, used_code, stranger)

    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (404, "unknown_code"),
        (422, "code_flagged"),
        (422, "code_fully_redeemed"),
    ]
    assert (wrong_partner.status_code, wrong_partner.json()["code"]) == (403, "partner_not_allowed")
    mine = await _refusals(voucher, partner, expected=3)
    assert sorted((e["reason"], e["code_id"]) for e in mine) == [
        ("code_flagged", str(flagged_id)),
        ("code_fully_redeemed", str(used_id)),
        ("unknown_code", None),
    ]
    assert len({e["attempt_id"] for e in mine}) == 3
    [theirs] = await _refusals(voucher, stranger, expected=1)
    assert (theirs["reason"], theirs["code_id"]) == ("partner_not_allowed", str(used_id))
    # Whose code it is stays with the partners of its campaign.
    assert (theirs["order_id"], theirs["member_id"]) == (None, None)
