"""Abuse controls on partner offers against real Postgres and Kafka: PIN strength, an escalating lockout
the member lifts, one failure reason for partners, rate limits shared by replicas, bounded backdating and
eligibility from what Orchard knows about the member."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from chassis.service import ServiceRuntime
from chassis.testing import kafka_answers, wait_until
from services.redemption.app import build_spec
from services.redemption.offers import domain
from services.redemption.tests.integration.conftest import (
    PIN,
    RunningService,
    create_offer,
    redeem_offer,
    service_settings,
    set_pin,
)


def _ids() -> tuple[str, str]:
    return f"p-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"


async def _pin_offer(service: RunningService, **terms: Any) -> tuple[str, str, str]:
    """A new partner's PIN offer (on `terms`) and a new member whose PIN is set: (partner, member, offer)."""
    partner, member = _ids()
    offer = await create_offer(service, partner, **terms)
    assert (await set_pin(service, member)).status_code == 204
    return partner, member, offer


async def _lock_out(service: RunningService, partner: str, offer: str, member: str) -> None:
    """Five wrong PINs in a row: the member's PIN locks."""
    for _ in range(5):
        await redeem_offer(service, partner, offer, member_id=member, pin="000000")


async def _known_as_silver_student(
    service: RunningService, member: str, staff: dict[str, str]
) -> httpx.Response:
    """Staff record the member's tier (silver) and segments (students)."""
    return await service.client.put(
        f"/v1/members/{member}/segments", json={"tier": "silver", "segments": ["students"]}, headers=staff
    )


async def _pin_row(service: RunningService, member: str) -> Any:
    async with service.pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT lockouts, failed_attempts, extract(epoch FROM locked_until - now()) AS locked_for"
            " FROM member_pins WHERE member_id = $1",
            member,
        )


async def _audited(service: RunningService, action: str, subject_id: str) -> list[Any]:
    async with service.pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT actor, details FROM audit_log WHERE action = $1 AND subject_id = $2 ORDER BY seq",
                action,
                subject_id,
            )
        )


async def _clear_of_window_end(service: RunningService, window_s: int) -> None:
    """Counters are per fixed window: start a counting test well inside one, not at its edge."""
    async with service.pool.acquire() as conn:
        into = await conn.fetchval("SELECT mod(extract(epoch FROM now()), $1::numeric)::float8", window_s)
    if window_s - into < 15:
        await asyncio.sleep(window_s - into + 0.5)


@asynccontextmanager
async def _running(service_db: Any, kafka_bootstrap: str, **settings: Any) -> AsyncIterator[RunningService]:
    config = service_settings(service_db, kafka_bootstrap, **settings)
    runtime = ServiceRuntime(config, build_spec(config))
    await runtime.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=runtime.http_app()), base_url="http://redemption"
        ) as client:
            await wait_until(kafka_answers(runtime), timeout=60, what="consumers connected")
            yield RunningService(runtime, client, kafka_bootstrap)
    finally:
        await runtime.stop()


# PINs ----------------------------------------------------------------------------------------------


async def test_a_new_pin_shorter_than_six_digits_or_trivially_guessable_is_refused_naming_body_pin(
    service: RunningService,
) -> None:
    _, member = _ids()
    for weak in ("4831", "12345", "000000", "123456", "654321", "12a456"):
        response = await set_pin(service, member, weak)
        assert response.status_code == 422, (weak, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["body.pin"]
    assert (await set_pin(service, member, PIN)).status_code == 204
    assert await _pin_row(service, member) is not None


async def test_a_four_digit_pin_stored_before_the_six_digit_rule_keeps_working(
    service: RunningService,
) -> None:
    partner, member = _ids()
    offer = await create_offer(service, partner)
    async with service.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO member_pins (member_id, pin_hash) VALUES ($1, $2)", member, domain.hash_pin("4831")
        )

    ok = await redeem_offer(service, partner, offer, member_id=member, pin="4831")

    assert ok.json()["status"] == "successful", ok.text


async def test_a_locked_pin_stays_locked_longer_after_each_lockout(service: RunningService) -> None:
    partner, member, offer = await _pin_offer(service)
    locked_for = []
    for _ in range(3):
        await _lock_out(service, partner, offer, member)
        row = await _pin_row(service, member)
        locked_for.append(float(row["locked_for"]))
        # The lock runs out; the count of lockouts stays.
        async with service.pool.acquire() as conn:
            await conn.execute(
                "UPDATE member_pins SET locked_until = now() - interval '1 second' WHERE member_id = $1",
                member,
            )

    assert [round(s / 60) for s in locked_for] == [15, 30, 60]
    assert (await _pin_row(service, member))["lockouts"] == 3
    locks = [e["details"] for e in await _audited(service, "offer.pin_rejected", member)]
    assert json.loads(locks[-1])["lockouts"] == 3


async def test_the_right_pin_is_refused_while_locked_and_the_members_unlock_lets_it_through(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service)
    await _lock_out(service, partner, offer, member)

    while_locked = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)
    unlock = f"/v1/members/{member}/pin/unlock"
    by_partner = await service.client.post(unlock, headers=service.auth("partner", partner))
    by_other_member = await service.client.post(unlock, headers=service.auth("member", "m-someone-else"))
    by_member = await service.client.post(unlock, headers=service.auth("member", member))
    after_unlock = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)

    assert while_locked.json()["reason"] == "pin_rejected"
    assert (by_partner.status_code, by_other_member.status_code, by_member.status_code) == (403, 403, 204)
    assert after_unlock.json()["status"] == "successful"
    row = await _pin_row(service, member)
    assert (row["lockouts"], row["failed_attempts"], row["locked_for"]) == (0, 0, None)
    assert [a["actor"] for a in await _audited(service, "member.pin_unlocked", member)] == [
        f"member:{member}"
    ]


async def test_changing_the_pin_lifts_the_lock_and_forgets_the_lockouts(service: RunningService) -> None:
    partner, member, offer = await _pin_offer(service)
    await _lock_out(service, partner, offer, member)

    assert (await set_pin(service, member, "730194")).status_code == 204

    assert (await _pin_row(service, member))["lockouts"] == 0
    ok = await redeem_offer(service, partner, offer, member_id=member, pin="730194")
    assert ok.json()["status"] == "successful"


async def test_every_pin_failure_looks_the_same_to_the_partner_and_the_exact_reason_is_audited(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service)
    no_pin_member = f"m-{uuid.uuid4().hex[:6]}"

    no_pin = await redeem_offer(service, partner, offer, member_id=no_pin_member, pin=PIN)
    wrong = [await redeem_offer(service, partner, offer, member_id=member, pin="000000") for _ in range(5)]
    locked = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)

    answers = [no_pin, *wrong, locked]
    assert {(a.status_code, a.json()["status"], a.json()["reason"]) for a in answers} == {
        (201, "failed", "pin_rejected")
    }
    assert {frozenset(a.json()) for a in answers} == {frozenset(no_pin.json())}
    listing = await service.client.get(
        "/v1/redemption-records",
        params={"status": "failed", "offer_id": offer},
        headers=service.auth("partner", partner),
    )
    assert listing.status_code == 200, listing.text
    assert {item["reason"] for item in listing.json()["items"]} == {"pin_rejected"}
    assert len(listing.json()["items"]) == 7
    async with service.pool.acquire() as conn:
        details = dict(
            await conn.fetch(
                "SELECT record_id::text, failure_detail FROM offer_redemptions WHERE offer_id = $1", offer
            )
        )
    assert details[no_pin.json()["record_id"]] == "no_pin_set"
    assert details[wrong[0].json()["record_id"]] == "invalid_pin"
    assert details[wrong[-1].json()["record_id"]] == "pin_locked"
    assert details[locked.json()["record_id"]] == "pin_locked"
    audited = await _audited(service, "offer.pin_rejected", no_pin_member)
    assert [a["actor"] for a in audited] == [f"partner:{partner}"]
    assert '"reason": "no_pin_set"' in audited[0]["details"]


# Rate limits ---------------------------------------------------------------------------------------


async def test_partner_validations_past_the_limit_are_answered_429_with_retry_after_across_replicas(
    service_db: Any, kafka_bootstrap: str, registry_topics: None
) -> None:
    limits = {"ORCHARD_REDEMPTION_PARTNER_VALIDATIONS_PER_MINUTE": 4}
    async with (
        _running(service_db, kafka_bootstrap, **limits) as first,
        _running(service_db, kafka_bootstrap, **limits) as second,
    ):
        partner, member = _ids()
        other_partner = f"p-{uuid.uuid4().hex[:6]}"
        offer = await create_offer(first, partner)
        other_offer = await create_offer(first, other_partner)
        await set_pin(first, member)
        await _clear_of_window_end(first, 60)

        answers = [
            await redeem_offer(replica, partner, offer, member_id=member, pin=PIN)
            for replica in (first, second, first, second, first, second)
        ]
        other = await redeem_offer(second, other_partner, other_offer, member_id=member, pin=PIN)

        assert [a.status_code for a in answers] == [201, 201, 201, 201, 429, 429]
        refused = answers[-1]
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert other.status_code == 201
        async with first.pool.acquire() as conn:
            recorded = await conn.fetchval(
                "SELECT count(*) FROM offer_redemptions WHERE offer_id = $1", offer
            )
        assert recorded == 4


async def test_one_time_code_sends_are_limited_per_partner_and_per_member(
    service_db: Any, kafka_bootstrap: str, registry_topics: None
) -> None:
    limits = {
        "ORCHARD_REDEMPTION_PARTNER_OTP_SENDS_PER_MINUTE": 3,
        "ORCHARD_REDEMPTION_MEMBER_OTP_SENDS_PER_HOUR": 2,
    }
    async with _running(service_db, kafka_bootstrap, **limits) as service:
        partner, member = _ids()
        other_partner = f"p-{uuid.uuid4().hex[:6]}"
        offer = await create_offer(service, partner, validation_method="one_time_code")
        other_offer = await create_offer(service, other_partner, validation_method="one_time_code")
        await _clear_of_window_end(service, 3600)

        to_member = [await redeem_offer(service, partner, offer, member_id=member) for _ in range(2)]
        # A third code for the same member, even asked by another partner, is one too many this hour.
        member_flooded = await redeem_offer(service, other_partner, other_offer, member_id=member)
        others = [
            await redeem_offer(service, partner, offer, member_id=f"m-{uuid.uuid4().hex[:6]}")
            for _ in range(2)
        ]

        assert [a.status_code for a in to_member] == [202, 202]
        assert member_flooded.status_code == 429
        assert int(member_flooded.headers["Retry-After"]) <= 3600
        assert [a.status_code for a in others] == [202, 429]
        assert int(others[-1].headers["Retry-After"]) <= 60
        async with service.pool.acquire() as conn:
            recorded = await conn.fetchval(
                "SELECT count(*) FROM redemption_records WHERE offer_id = ANY($1)", [offer, other_offer]
            )
            challenges = await conn.fetchval("SELECT count(*) FROM offer_otp_challenges")
        # Refused sends leave nothing behind: no record, no held slot, no code.
        assert (recorded, challenges) == (3, 3)


async def test_code_checks_count_as_partner_validations(
    service_db: Any, kafka_bootstrap: str, registry_topics: None
) -> None:
    async with _running(
        service_db, kafka_bootstrap, ORCHARD_REDEMPTION_PARTNER_VALIDATIONS_PER_MINUTE=3
    ) as service:
        partner, member = _ids()
        offer = await create_offer(service, partner, validation_method="one_time_code")
        await _clear_of_window_end(service, 60)
        record_id = (await redeem_offer(service, partner, offer, member_id=member)).json()["record_id"]
        validate = f"/v1/offers/{offer}/redemptions/{record_id}/validate"

        checks = [
            await service.client.post(
                validate, json={"code": "000000"}, headers=service.auth("partner", partner)
            )
            for _ in range(3)
        ]

        assert [c.status_code for c in checks] == [200, 200, 429]


# Redemption time -----------------------------------------------------------------------------------


async def test_a_backdated_redemption_keeps_the_service_time_and_the_claimed_time_and_is_audited(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service)
    claimed = datetime.now(UTC) - timedelta(minutes=10)

    before = datetime.now(UTC)
    ok = await redeem_offer(
        service, partner, offer, member_id=member, pin=PIN, redeemed_at=claimed.isoformat()
    )

    body = ok.json()
    assert body["status"] == "successful"
    assert datetime.fromisoformat(body["redeemed_at"]) >= before
    assert datetime.fromisoformat(body["claimed_redeemed_at"]) == claimed
    async with service.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT r.redeemed_at, o.received_at, o.claimed_redeemed_at FROM redemption_records r"
            " JOIN offer_redemptions o USING (record_id) WHERE record_id = $1",
            uuid.UUID(body["record_id"]),
        )
    assert row["redeemed_at"] == row["received_at"]
    assert row["claimed_redeemed_at"] == claimed
    audited = await _audited(service, "offer.redemption_backdated", body["record_id"])
    assert [a["actor"] for a in audited] == [f"partner:{partner}"]
    assert 600 <= json.loads(audited[0]["details"])["backdated_s"] < 660


async def test_redeemed_at_too_far_back_or_ahead_is_refused_naming_body_redeemed_at(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service)
    now = datetime.now(UTC)

    for claimed in (now - timedelta(minutes=16), now - timedelta(days=40), now + timedelta(minutes=5)):
        response = await redeem_offer(
            service, partner, offer, member_id=member, pin=PIN, redeemed_at=claimed.isoformat()
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["body.redeemed_at"]
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM offer_redemptions WHERE offer_id = $1", offer) == 0


async def test_an_offer_that_ended_is_refused_even_when_the_claimed_time_falls_inside_it(
    service: RunningService,
) -> None:
    now = datetime.now(UTC)
    partner, member, offer = await _pin_offer(
        service,
        valid_from=(now - timedelta(days=1)).isoformat(),
        valid_until=(now - timedelta(minutes=5)).isoformat(),
    )

    late = await redeem_offer(
        service,
        partner,
        offer,
        member_id=member,
        pin=PIN,
        redeemed_at=(now - timedelta(minutes=10)).isoformat(),
    )

    assert (late.json()["status"], late.json()["reason"]) == ("failed", "outside_validity_window")


# Eligibility ---------------------------------------------------------------------------------------


async def test_a_partner_cannot_claim_a_tier_that_contradicts_what_orchard_knows_about_the_member(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service, eligible_tiers=["gold"])
    known = await _known_as_silver_student(service, member, service.auth("ops", "ops-1"))
    by_partner = await service.client.put(
        f"/v1/members/{member}/segments", json={"tier": "gold"}, headers=service.auth("partner", partner)
    )

    claimed_gold = await redeem_offer(
        service, partner, offer, member_id=member, pin=PIN, segment_token="gold"
    )
    unclaimed = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)

    assert known.status_code == 200, known.text
    assert by_partner.status_code == 403
    assert (claimed_gold.json()["status"], claimed_gold.json()["reason"]) == ("failed", "segment_mismatch")
    assert (unclaimed.json()["status"], unclaimed.json()["reason"]) == ("failed", "segment_not_eligible")
    assert unclaimed.json()["segment_token"] == "silver"
    assert [a["actor"] for a in await _audited(service, "member.segments_set", member)] == ["ops:ops-1"]


async def test_a_member_orchard_knows_is_eligible_by_their_known_segment_without_a_partner_claim(
    service: RunningService,
) -> None:
    partner, member, offer = await _pin_offer(service, eligible_segments=["students"])
    await _known_as_silver_student(service, member, service.auth("admin", "admin-1"))

    ok = await redeem_offer(service, partner, offer, member_id=member, pin=PIN)
    own_view = await service.client.get(
        f"/v1/members/{member}/segments", headers=service.auth("member", member)
    )

    assert (ok.json()["status"], ok.json()["segment_token"]) == ("successful", "students")
    assert own_view.json() == {"member_id": member, "tier": "silver", "segments": ["students"]}
