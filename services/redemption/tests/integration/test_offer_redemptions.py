"""Partner offer redemptions over HTTP against real Postgres and Kafka: ownership, eligibility, PIN and
one-time code validation, and limits and caps under concurrent redemptions."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.testing import read_topic, wait_until
from contracts.topics import Topics
from services.redemption.offers.api import expire_open_challenges
from services.redemption.tests.integration.conftest import (
    RunningService,
    create_offer,
    offer_body,
    redeem_offer,
    set_pin,
)


async def _redeem(service: RunningService, partner: str, offer: str, **body: Any) -> Any:
    return await redeem_offer(service, partner, offer, **{"location": "Main St 1", **body})


async def _code_sent_for(service: RunningService, record_id: str) -> str:
    found: list[str] = []

    async def sent() -> bool:
        for record in await read_topic(service.bootstrap, Topics.DELIVERY_MESSAGE_REQUESTED):
            data = json.loads(record.value)["data"]
            if data["message_id"] == record_id:
                found.append(data["params"]["code"])
        return bool(found)

    await wait_until(sent, timeout=30, interval=0.3, what="one-time code sent")
    return found[0]


async def test_a_pin_offer_succeeds_with_the_right_pin_and_locks_after_repeated_wrong_ones(
    service: RunningService,
) -> None:
    partner, member = f"p-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(service, partner)
    assert (await set_pin(service, member)).status_code == 204

    ok = await _redeem(service, partner, offer, member_id=member, segment_token="gold", pin="480317")
    assert ok.status_code == 201
    assert ok.json()["status"] == "successful"
    assert ok.json()["validation_method"] == "pin"

    reasons = []
    for _ in range(5):
        wrong = await _redeem(service, partner, offer, member_id=member, pin="000000")
        reasons.append(wrong.json()["reason"])
    locked = await _redeem(service, partner, offer, member_id=member, pin="480317")

    # The partner cannot tell a wrong PIN from a locked one; the audit log can.
    assert reasons == ["pin_rejected"] * 5
    assert locked.json()["status"] == "failed"
    assert locked.json()["reason"] == "pin_rejected"
    async with service.pool.acquire() as conn:
        precise = await conn.fetch(
            "SELECT details->>'reason' AS reason FROM audit_log"
            " WHERE action = 'offer.pin_rejected' AND subject_id = $1 ORDER BY seq",
            member,
        )
    assert [r["reason"] for r in precise] == ["invalid_pin"] * 4 + ["pin_locked"] * 2
    async with service.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT pin_hash FROM member_pins WHERE member_id = $1", member)
        audited = await conn.fetch(
            "SELECT actor, details::text AS d FROM audit_log"
            " WHERE action = 'member.pin_set' AND subject_id = $1",
            member,
        )
    assert [(a["actor"], a["d"]) for a in audited] == [(f"member:{member}", "{}")]
    assert stored.startswith("peppered$$argon2id$"), "stored keyed with the pepper, then argon2-hashed"
    assert "480317" not in stored


async def test_a_one_time_code_offer_stays_pending_until_the_code_sent_to_the_member_is_given(
    service: RunningService,
) -> None:
    partner, member = f"p-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(service, partner, validation_method="one_time_code", total_cap=1)

    pending = await _redeem(service, partner, offer, member_id=member, channel="app")
    assert pending.status_code == 202
    record_id = pending.json()["record_id"]
    assert pending.json()["status"] == "pending"
    code = await _code_sent_for(service, record_id)
    wrong_code = "000000" if code != "000000" else "111111"

    validate = f"/v1/offers/{offer}/redemptions/{record_id}/validate"
    wrong = await service.client.post(
        validate, json={"code": wrong_code}, headers=service.auth("partner", partner)
    )
    right = await service.client.post(validate, json={"code": code}, headers=service.auth("partner", partner))

    assert wrong.json()["status"] == "pending"
    assert wrong.json()["attempts_left"] == 4
    assert right.json()["status"] == "successful"
    async with service.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT code_hash FROM offer_otp_challenges WHERE record_id = $1", uuid.UUID(record_id)
        )
    assert code not in stored


async def test_repeated_wrong_codes_lock_the_redemption_and_free_its_slot(service: RunningService) -> None:
    partner, member = f"p-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(service, partner, validation_method="one_time_code", total_cap=1)
    record_id = (await _redeem(service, partner, offer, member_id=member)).json()["record_id"]
    code = await _code_sent_for(service, record_id)
    wrong_code = "000000" if code != "000000" else "111111"

    validate = f"/v1/offers/{offer}/redemptions/{record_id}/validate"
    answers = [
        (
            await service.client.post(
                validate, json={"code": wrong_code}, headers=service.auth("partner", partner)
            )
        ).json()
        for _ in range(5)
    ]
    too_late = await service.client.post(
        validate, json={"code": code}, headers=service.auth("partner", partner)
    )

    assert answers[-1]["status"] == "failed"
    assert answers[-1]["reason"] == "too_many_attempts"
    assert too_late.json()["status"] == "failed"
    # The cap of one is free again for someone else.
    again = await _redeem(service, partner, offer, member_id=f"m-{uuid.uuid4().hex[:6]}")
    assert again.json()["status"] == "pending"


async def test_an_expired_code_fails_the_redemption(service: RunningService) -> None:
    partner, member = f"p-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(service, partner, validation_method="one_time_code")
    record_id = (await _redeem(service, partner, offer, member_id=member)).json()["record_id"]
    code = await _code_sent_for(service, record_id)
    async with service.pool.acquire() as conn:
        await conn.execute(
            "UPDATE offer_otp_challenges SET expires_at = now() - interval '1 second' WHERE record_id = $1",
            uuid.UUID(record_id),
        )

    late = await service.client.post(
        f"/v1/offers/{offer}/redemptions/{record_id}/validate",
        json={"code": code},
        headers=service.auth("partner", partner),
    )

    assert late.json()["status"] == "failed"
    assert late.json()["reason"] == "code_expired"
    assert await expire_open_challenges(service.pool) == 0


async def test_limits_per_member_and_the_total_cap_hold_under_concurrent_redemptions(
    service: RunningService,
) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    offer = await create_offer(
        service, partner, validation_method="one_time_code", total_cap=7, limit_per_member=2
    )
    members = [f"m-{uuid.uuid4().hex[:6]}" for _ in range(5)]

    answers = await asyncio.gather(
        *(_redeem(service, partner, offer, member_id=m) for m in members for _ in range(4))
    )

    bodies = [a.json() for a in answers]
    held = [b for b in bodies if b["status"] == "pending"]
    assert len(held) == 7
    for member in members:
        assert sum(1 for b in held if b["member_id"] == member) <= 2
    reasons = {b["reason"] for b in bodies if b["status"] == "failed"}
    assert reasons <= {"member_limit_reached", "offer_cap_reached"}
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT used FROM offers WHERE offer_id = $1", offer) == 7


async def test_a_partner_redeems_only_its_own_offers_and_refusals_are_recorded_with_their_reason(
    service: RunningService,
) -> None:
    partner, other, member = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}", "m-1"
    now = datetime.now(UTC)
    offer = await create_offer(
        service, partner, validation_method="one_time_code", eligible_segments=["students"]
    )
    old = await create_offer(
        service,
        partner,
        validation_method="one_time_code",
        valid_from=(now - timedelta(days=10)).isoformat(),
        valid_until=(now - timedelta(days=1)).isoformat(),
    )

    foreign = await _redeem(service, other, offer, member_id=member)
    as_member = await service.client.post(
        f"/v1/offers/{offer}/redemptions",
        json={"member_id": member, "channel": "app"},
        headers=service.auth("member", member),
    )
    not_eligible = await _redeem(service, partner, offer, member_id=member, segment_token="gold")
    expired = await _redeem(service, partner, old, member_id=member, segment_token="students")
    bad_channel = await _redeem(service, partner, offer, member_id=member, channel="fax")

    assert foreign.status_code == 404
    assert as_member.status_code == 403
    assert (not_eligible.json()["status"], not_eligible.json()["reason"]) == (
        "failed",
        "segment_not_eligible",
    )
    assert expired.json()["reason"] == "outside_validity_window"
    assert bad_channel.status_code == 422
    listing = await service.client.get("/v1/offers", headers=service.auth("partner", other))
    assert listing.json()["items"] == []


async def test_offer_numbers_past_the_int32_column_or_nul_bytes_are_refused_with_422_and_nothing_is_stored(
    service: RunningService,
) -> None:
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    cases = [
        ({"limit_per_member": 2**31}, "body.limit_per_member"),
        ({"total_cap": 10**20}, "body.total_cap"),
        ({"title": "Free\x00dessert"}, "body.title"),
        ({"description": "nice\x00"}, "body.description"),
        ({"eligible_tiers": ["gold", "sil\x00ver"]}, "body.eligible_tiers.1"),
    ]
    for override, field in cases:
        response = await service.client.post(
            "/v1/offers", json=offer_body(**override), headers=service.auth("partner", partner)
        )
        assert response.status_code == 422, (override, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert await service.pool.fetchval("SELECT count(*) FROM offers WHERE partner_id = $1", partner) == 0
