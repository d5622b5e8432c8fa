"""GET /v1/campaigns lists campaigns in id order, filtered by status and reward type, a page at a time."""

from __future__ import annotations

import uuid
from decimal import Decimal

from .conftest import auth


async def test_campaigns_are_listed_by_id_filtered_and_paged(start_voucher):
    voucher = await start_voucher()
    prefix = f"c{uuid.uuid4().hex[:6]}"
    ids = [await voucher.create_campaign(campaign_id=f"{prefix}-{n}") for n in range(3)]
    await voucher.create_campaign(
        campaign_id=f"{prefix}-points", name="Points", reward_type="points", face_value=None, currency=None
    )
    paused = await voucher.http.post(f"/v1/campaigns/{ids[1]}/pause", json={}, headers=auth("ops"))
    assert paused.status_code == 200, paused.text

    everything = await voucher.http.get("/v1/campaigns", headers=auth("finance"))
    first = await voucher.http.get("/v1/campaigns", params={"limit": 2}, headers=auth("auditor"))
    rest = await voucher.http.get(
        "/v1/campaigns", params={"limit": 2, "after": first.json()["next_after"]}, headers=auth("auditor")
    )
    active_vouchers = await voucher.http.get(
        "/v1/campaigns", params={"status": "active", "reward_type": "voucher"}, headers=auth("ops")
    )
    partner = await voucher.http.get("/v1/campaigns", headers=auth("partner"))

    assert everything.status_code == 200, everything.text
    assert [c["campaign_id"] for c in everything.json()["items"]] == [*ids, f"{prefix}-points"]
    assert everything.json()["next_after"] is None
    listed = everything.json()["items"][0]
    assert (listed["name"], Decimal(listed["face_value"]), listed["status"]) == (
        "Spring thanks",
        Decimal("25.00"),
        "active",
    )
    assert [c["campaign_id"] for c in first.json()["items"]] == ids[:2]
    assert [c["campaign_id"] for c in rest.json()["items"]] == [ids[2], f"{prefix}-points"]
    assert [c["campaign_id"] for c in active_vouchers.json()["items"]] == [ids[0], ids[2]]
    assert partner.status_code == 403
