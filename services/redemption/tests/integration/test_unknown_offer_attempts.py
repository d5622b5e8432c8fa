"""An attempt to redeem an offer the partner does not have (unknown, or another partner's) is answered
404 as before and recorded as a failed offer redemption with its reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.redemption.tests.integration.conftest import RunningService


async def _failed(service: RunningService, partner: str) -> list[dict[str, Any]]:
    response = await service.client.get(
        "/v1/redemption-records", params={"status": "failed"}, headers=service.auth("partner", partner)
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_an_attempt_on_an_unknown_offer_is_recorded_as_failed_with_its_reason(service: RunningService):
    partner, other = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    theirs = await service.client.post(
        "/v1/offers",
        json={
            "title": "Free dessert",
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "validation_method": "pin",
        },
        headers=service.auth("partner", other),
    )
    assert theirs.status_code == 201, theirs.text
    body = {"member_id": "m-42", "channel": "in_store", "location": "Main St 1", "pin": "480317"}

    attempts = [
        await service.client.post(
            f"/v1/offers/{offer}/redemptions", json=body, headers=service.auth("partner", partner)
        )
        for offer in ("no-such-offer", theirs.json()["offer_id"])
    ]

    assert [(a.status_code, a.json()["code"]) for a in attempts] == [(404, "offer_not_found")] * 2
    failed = await _failed(service, partner)
    assert sorted((r["offer_id"], r["reason"], r["kind"]) for r in failed) == sorted(
        [
            ("no-such-offer", "offer_not_found", "offer"),
            (theirs.json()["offer_id"], "offer_not_found", "offer"),
        ]
    )
    assert {(r["member_id"], r["channel"], r["location"]) for r in failed} == {
        ("m-42", "in_store", "Main St 1")
    }
    assert await _failed(service, other) == []
