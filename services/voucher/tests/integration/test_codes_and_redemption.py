"""Campaigns, code pools, operations and partner redemption through HTTP against real Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from chassis.audit import verify_audit_chain
from contracts.topics import Topics

from .conftest import auth, order_event, publish_orders


async def _issue_one(voucher, campaign: str) -> tuple[uuid.UUID, str]:
    order_id = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order_id, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE order_id = $1", order_id, expected=1, what="code issued"
    )
    code_id = await voucher.pool.fetchval("SELECT code_id FROM codes WHERE order_id = $1", order_id)
    clear = (
        await voucher.http.post(
            f"/v1/codes/{code_id}/reveal", json={"reason": "testing"}, headers=auth("admin")
        )
    ).json()["code"]
    return code_id, clear


def _redeem(voucher, code: str, key: str, amount: str | None = None, partner: str = "partner-1", **extra):
    body = {"code": code, "channel": "in_store", "location": "Till 4", "idempotency_key": key} | extra
    if amount is not None:
        body["amount"] = amount
    return voucher.http.post("/v1/redemptions", json=body, headers=auth("partner", partner))


async def test_campaign_changes_are_versioned_published_and_audited(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(campaign_id=f"spring-{uuid.uuid4().hex[:6]}")
    again = await voucher.http.post(
        "/v1/campaigns",
        json={"campaign_id": campaign, "name": "x", "face_value": "5.00", "currency": "EUR"},
        headers=auth("admin"),
    )
    assert again.status_code == 409
    bad = await voucher.http.post(
        "/v1/campaigns", json={"name": "no value", "currency": "EUR"}, headers=auth("ops")
    )
    assert bad.status_code == 422
    assert (
        await voucher.http.post("/v1/campaigns", json={"name": "x"}, headers=auth("partner"))
    ).status_code == 403
    await voucher.http.patch(
        f"/v1/campaigns/{campaign}", json={"name": "Spring thanks 2"}, headers=auth("ops")
    )
    await voucher.http.post(f"/v1/campaigns/{campaign}/pause", json={"reason": "review"}, headers=auth("ops"))
    ended = await voucher.http.post(f"/v1/campaigns/{campaign}/end", headers=auth("admin"))
    assert ended.json()["status"] == "ended"
    refused = await voucher.http.post(f"/v1/campaigns/{campaign}/resume", headers=auth("admin"))
    assert refused.status_code == 409
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    changes = await voucher.events(Topics.CAMPAIGN_CHANGED, campaign_id=campaign)
    assert [(c["data"]["version"], c["data"]["status"]) for c in changes] == [
        (1, "active"),
        (2, "active"),
        (3, "paused"),
        (4, "ended"),
    ]
    async with voucher.pool.acquire() as conn:
        actions = await conn.fetch(
            "SELECT actor, action FROM audit_log WHERE subject_id = $1 ORDER BY seq", campaign
        )
        assert (await verify_audit_chain(conn)).ok
    assert [a["action"] for a in actions] == [
        "campaign.created",
        "campaign.updated",
        "campaign.pause",
        "campaign.end",
    ]
    assert actions[0]["actor"] == "admin:tester"


async def test_csv_import_reports_each_bad_row_and_imports_the_rest(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    other = await voucher.create_campaign()
    first = await voucher.import_csv(other, b"code\nTAKEN-0001\n")
    assert first.json()["imported"] == 1
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    csv = (
        (
            "code,expires_at,value\n"
            f"GOOD-0001,{future},\n"
            "GOOD-0002,,10.00\n"
            "GOOD-0001,,\n"
            "TAKEN-0001,,\n"
            "BAD-VALUE,,-3\n"
            "OLD-0001,2001-01-01,\n"
        ).encode()
        + b"\xff\xfeBROKEN\n"
        + b",,\n"
    )
    response = await voucher.http.post(
        f"/v1/campaigns/{campaign}/codes/import",
        files={"file": ("codes.csv", csv, "text/csv")},
        headers=auth("ops"),
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["imported"] == 2
    assert report["duplicates_in_file"] == 1
    assert report["duplicates_in_pool"] == 1
    assert report["bad_encoding"] == 1
    assert report["invalid"] == 3
    assert [(p["row"], p["code"]) for p in report["problems"]] == [
        (4, "duplicate_in_file"),
        (5, "duplicate_in_pool"),
        (6, "invalid_row"),
        (7, "already_expired"),
        (8, "bad_encoding"),
        (9, "invalid_row"),
    ]
    assert "GOOD" not in response.text.replace("GOOD-0001,", "")  # no clear code echoed back
    values = await voucher.pool.fetch("SELECT value FROM codes WHERE campaign_id = $1 ORDER BY seq", campaign)
    assert [str(v["value"]) for v in values] == ["25.0000", "10.0000"]
    stored = await voucher.pool.fetchval("SELECT count(*) FROM codes WHERE secret::text LIKE '%GOOD%'")
    assert stored == 0
    lookup = await voucher.http.post(
        "/v1/codes/lookup", json={"code": "GOOD-0002"}, headers=auth("support_agent")
    )
    assert lookup.json()["status"] == "available"
    assert lookup.json()["masked_code"] == "****-0002"
    wrong = await voucher.http.post(
        f"/v1/campaigns/{campaign}/codes/import", content=b"x", headers=auth("ops")
    )
    assert wrong.status_code == 415


async def test_generated_codes_are_unique_and_avoid_look_alikes(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    result = await voucher.generate(campaign, 2000, length=8, prefix="SPR-")
    assert result["generated"] == 2000
    assert await voucher.pool.fetchval("SELECT count(DISTINCT lookup_hash) FROM codes") == 2000
    bad = await voucher.http.post(
        f"/v1/campaigns/{campaign}/codes/generate",
        json={"count": 5, "alphabet": "ABCDEFGH0123"},
        headers=auth("ops"),
    )
    assert bad.status_code == 422
    view = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("auditor"))).json()
    assert view["code_counts"] == {"available": 2000}


async def test_test_codes_are_never_issued_and_redeem_only_in_test_mode(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 3, test=True)
    order_id = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order_id, campaign)])
    await voucher.wait_for(
        "SELECT reason FROM holds WHERE order_id = $1", order_id, expected="out_of_stock", what="order held"
    )
    view = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("ops"))).json()
    assert view["code_counts"] == {}
    assert view["test_code_counts"] == {"available": 3}
    code_id = await voucher.pool.fetchval("SELECT code_id FROM codes LIMIT 1")
    clear = (
        await voucher.http.post(f"/v1/codes/{code_id}/reveal", json={"reason": "uat"}, headers=auth("admin"))
    ).json()["code"]
    live = await _redeem(voucher, clear, "k1")
    assert live.status_code == 422
    assert live.json()["code"] == "test_code_in_live_mode"
    uat = await _redeem(voucher, clear, "k2", test_mode=True)
    assert uat.status_code == 200, uat.text
    assert uat.json()["test"] is True


async def test_partner_redemption_partial_refusals_and_idempotency(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 3)
    code_id, code = await _issue_one(voucher, campaign)
    first = await _redeem(voucher, code, "r1", "10.00")
    assert first.status_code == 200, first.text
    assert first.json()["remaining_value"] == "15.00"
    assert first.json()["partial"] is True
    replay = await _redeem(voucher, code, "r1", "10.00")
    assert replay.json()["redemption_id"] == first.json()["redemption_id"]
    assert replay.json()["replayed"] is True
    too_much = await _redeem(voucher, code, "r2", "20.00")
    assert too_much.json()["code"] == "amount_exceeds_remaining_value"
    other_partner = await _redeem(voucher, code, "r3", "1.00", partner="partner-2")
    assert other_partner.status_code == 403
    unknown = await _redeem(voucher, "NOPE-NOPE", "r4")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_code")
    rest = await _redeem(voucher, code, "r5")
    assert rest.json()["remaining_value"] == "0.00"
    assert rest.json()["status"] == "redeemed"
    done = await _redeem(voucher, code, "r6", "1.00")
    assert done.json()["code"] == "code_fully_redeemed"
    status = (await voucher.http.get(f"/v1/codes/{code_id}", headers=auth("auditor"))).json()
    assert status["status"] == "redeemed"
    assert [h["action"] for h in status["history"]] == ["issued", "redeemed", "redeemed"]
    assert len(status["redemptions"]) == 2
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    redeemed = await voucher.events(Topics.VOUCHER_REDEEMED, code_id=code_id)
    assert [(Decimal(e["data"]["amount"]), e["data"]["partial"]) for e in redeemed] == [
        (Decimal(10), True),
        (Decimal(15), False),
    ]
    assert all("code" not in e["data"] for e in redeemed)


async def test_many_concurrent_redemptions_never_exceed_the_code_value(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 1)
    code_id, code = await _issue_one(voucher, campaign)
    attempts = await asyncio.gather(*(_redeem(voucher, code, f"c{i}", "1.50") for i in range(40)))
    succeeded = [a for a in attempts if a.status_code == 200]
    refused = [a.json()["code"] for a in attempts if a.status_code != 200]
    assert len(succeeded) == 16  # 16 x 1.50 = 24.00; a 17th would pass 25.00
    assert set(refused) == {"amount_exceeds_remaining_value"}
    total = await voucher.pool.fetchval("SELECT sum(amount) FROM redemptions WHERE code_id = $1", code_id)
    remaining = await voucher.pool.fetchval("SELECT remaining_value FROM codes WHERE code_id = $1", code_id)
    assert (str(total), str(remaining)) == ("24.0000", "1.0000")


async def test_flag_recover_extend_and_expire_are_audited_and_change_status(start_voucher):
    voucher = await start_voucher(ORCHARD_VOUCHER_EXPIRY_INTERVAL=0.5)
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 2)
    code_id, code = await _issue_one(voucher, campaign)
    flagged = await voucher.http.post(
        "/v1/codes/flag", json={"code_ids": [str(code_id)], "reason": "partner report"}, headers=auth("ops")
    )
    assert flagged.json()["flagged"] == 1
    assert (await _redeem(voucher, code, "f1")).json()["code"] == "code_flagged"
    await voucher.http.post(
        "/v1/codes/unflag", json={"code_ids": [str(code_id)], "reason": "cleared"}, headers=auth("ops")
    )
    dry = await voucher.http.post(
        "/v1/codes/recover",
        json={"filter": {"campaign_id": campaign, "status": "issued"}, "reason": "bounced", "dry_run": True},
        headers=auth("admin"),
    )
    assert dry.json()["matched"] == 1
    recovered = await voucher.http.post(
        "/v1/codes/recover",
        json={"code_ids": [str(code_id)], "reason": "delivery bounced"},
        headers=auth("admin"),
    )
    assert recovered.json()["recovered"] == 1
    assert (await _redeem(voucher, code, "f2")).json()["code"] == "code_not_issued"
    # Redistributed: the next order can get it, and it is never held by two orders at once.
    await _issue_one(voucher, campaign)
    second_id, _ = await _issue_one(voucher, campaign)
    holders = await voucher.pool.fetchval(
        "SELECT count(*) FROM issuances WHERE code_id = $1 AND released_at IS NULL", code_id
    )
    assert holders <= 1
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await voucher.pool.execute("UPDATE codes SET expires_at = $2 WHERE code_id = $1", second_id, soon)
    await voucher.wait_for(
        "SELECT status FROM codes WHERE code_id = $1",
        second_id,
        expected="expired",
        what="code expired by job",
    )
    later = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    preview = await voucher.http.post(
        "/v1/codes/extend-expiry",
        json={"campaign_id": campaign, "expires_at": later, "reason": "goodwill", "dry_run": True},
        headers=auth("ops"),
    )
    assert preview.json() == {"dry_run": True, "would_change": 1}
    extended = await voucher.http.post(
        "/v1/codes/extend-expiry",
        json={"code_ids": [str(second_id)], "expires_at": later, "reason": "goodwill"},
        headers=auth("ops"),
    )
    assert extended.json()["changed"] == 1
    status = (await voucher.http.get(f"/v1/codes/{second_id}", headers=auth("ops"))).json()
    assert status["status"] == "issued"
    assert [h["action"] for h in status["history"]][-2:] == ["expired", "expiry_extended"]
    actions = [r["action"] for r in await voucher.pool.fetch("SELECT action FROM audit_log ORDER BY seq")]
    for expected in (
        "codes.flagged",
        "codes.unflagged",
        "codes.recovered",
        "codes.expiry_extended",
        "code.revealed",
    ):
        assert expected in actions
    audit = await voucher.pool.fetchval("SELECT details FROM audit_log WHERE action = 'codes.recovered'")
    assert json.loads(audit)["reason"] == "delivery bounced"


async def test_generation_replaces_a_code_that_clashes_with_an_imported_one(start_voucher, monkeypatch):
    from services.voucher import codes as codes_module
    from services.voucher.domain import generate_codes

    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    imported = await voucher.import_csv(campaign, b"code\nCLASH-ME-01\n")
    assert imported.json()["imported"] == 1
    draws = []

    def unlucky(count, **kwargs):
        # The first draw hits the imported code; later draws are random as usual.
        batch = (
            ["CLASH-ME-01", *generate_codes(count - 1, **kwargs)]
            if not draws
            else generate_codes(count, **kwargs)
        )
        draws.append(batch)
        return batch

    monkeypatch.setattr(codes_module, "generate_codes", unlucky)
    result = await voucher.generate(campaign, 10)
    assert result["generated"] == 10
    assert len(draws) == 2
    assert await voucher.pool.fetchval("SELECT count(*) FROM codes WHERE campaign_id = $1", campaign) == 11
    assert await voucher.pool.fetchval("SELECT count(*) FROM codes WHERE source = 'imported'") == 1


async def test_points_campaigns_have_no_codes_and_reveals_are_limited_to_allowed_readers(start_voucher):
    voucher = await start_voucher()
    points = await voucher.http.post(
        "/v1/campaigns", json={"name": "Milestones", "reward_type": "points"}, headers=auth("admin")
    )
    assert points.status_code == 201, points.text
    refused = await voucher.http.post(
        f"/v1/campaigns/{points.json()['campaign_id']}/codes/generate", json={"count": 5}, headers=auth("ops")
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "points_campaign_has_no_codes")
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 1)
    code_id, code = await _issue_one(voucher, campaign)
    member = await voucher.pool.fetchval("SELECT member_id FROM codes WHERE code_id = $1", code_id)
    own = await voucher.http.post(
        f"/v1/codes/{code_id}/reveal", json={"reason": "my voucher"}, headers=auth("member", member)
    )
    assert own.json()["code"] == code
    other = await voucher.http.post(
        f"/v1/codes/{code_id}/reveal", json={"reason": "curious"}, headers=auth("member", "someone-else")
    )
    assert other.status_code == 404
    for role in ("ops", "finance", "partner", "auditor"):
        denied = await voucher.http.post(
            f"/v1/codes/{code_id}/reveal", json={"reason": "curious"}, headers=auth(role)
        )
        assert denied.status_code == 403
    reveals = await voucher.pool.fetch(
        "SELECT actor FROM audit_log WHERE action = 'code.revealed' AND subject_id = $1 ORDER BY seq",
        str(code_id),
    )
    assert [r["actor"] for r in reveals] == ["admin:tester", f"member:{member}"]
    status = (await voucher.http.get(f"/v1/codes/{code_id}", headers=auth("support_agent"))).json()
    assert code not in json.dumps(status)
    assert status["member_id"] == member


async def test_codes_imported_with_a_new_value_announce_it_to_order_intake_once(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    for rows in ("NEWVAL-0001,10.00\nSAME-0001,\n", "NEWVAL-0002,10\nSAME-0002,25\n"):
        response = await voucher.import_csv(campaign, f"code,value\n{rows}".encode())
        assert response.json()["imported"] == 2, response.text
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )

    changes = await voucher.events(Topics.CAMPAIGN_CHANGED, campaign_id=campaign)

    assert [(c["data"]["version"], c["data"]["denominations"]) for c in changes] == [
        (1, []),
        (2, ["10.0000"]),
    ]
    assert changes[1]["data"]["face_value"] == "25.0000"
