"""A campaign's codes listed and exported: masked, test codes flagged, clear codes only audited."""

from __future__ import annotations

import csv
import io
import json
import uuid

from .conftest import Voucher, auth, order_event, publish_orders


async def campaign_with_codes(voucher: Voucher) -> tuple[str, str]:
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 3)
    await voucher.generate(campaign, 2, test=True)
    order_id = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order_id, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE order_id = $1", order_id, expected=1, what="code issued"
    )
    return campaign, str(order_id)


async def test_a_campaigns_codes_are_listed_masked_in_pages_by_status_and_test_flag(start_voucher) -> None:
    voucher = await start_voucher()
    campaign, order_id = await campaign_with_codes(voucher)

    first = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes", params={"limit": 4}, headers=auth("ops")
    )
    rest = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes",
        params={"limit": 4, "after": first.json()["next_after"]},
        headers=auth("finance"),
    )
    tests = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes", params={"test": "true"}, headers=auth("ops")
    )
    issued = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes", params={"status": "issued"}, headers=auth("auditor")
    )
    unknown = await voucher.http.get("/v1/campaigns/no-such-campaign/codes", headers=auth("ops"))
    partner = await voucher.http.get(f"/v1/campaigns/{campaign}/codes", headers=auth("partner"))
    bad_status = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes", params={"status": "lost"}, headers=auth("ops")
    )

    assert first.status_code == 200, first.text
    items = first.json()["items"] + rest.json()["items"]
    assert len(items) == 5
    assert rest.json()["next_after"] is None
    assert all(i["masked_code"].startswith("****-") and len(i["masked_code"]) == 9 for i in items)
    assert [i["test"] for i in tests.json()["items"]] == [True, True]
    assert [(i["order_id"], i["value"]) for i in issued.json()["items"]] == [(order_id, "25.00")]
    secrets = await voucher.pool.fetch("SELECT secret FROM codes WHERE campaign_id = $1", campaign)
    assert all(bytes(s["secret"]).hex() not in first.text for s in secrets)
    assert unknown.status_code == 404
    assert partner.status_code == 403
    assert bad_status.status_code == 422


async def test_an_export_streams_every_code_masked_and_only_an_admin_gets_clear_codes_audited(
    start_voucher,
) -> None:
    voucher = await start_voucher()
    campaign, _ = await campaign_with_codes(voucher)

    masked = await voucher.http.get(f"/v1/campaigns/{campaign}/codes/export", headers=auth("ops"))
    lines = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes/export",
        params={"format": "jsonl", "test": "true"},
        headers=auth("ops"),
    )
    ops_clear = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes/export",
        params={"clear": "true", "reason": "partner UAT"},
        headers=auth("ops"),
    )
    no_reason = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes/export", params={"clear": "true"}, headers=auth("admin")
    )
    assert (
        await voucher.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'codes.exported_clear'")
        == 0
    )
    clear = await voucher.http.get(
        f"/v1/campaigns/{campaign}/codes/export",
        params={"clear": "true", "reason": "partner UAT", "test": "true", "format": "jsonl"},
        headers=auth("admin"),
    )

    assert masked.status_code == 200, masked.text
    rows = list(csv.DictReader(io.StringIO(masked.text)))
    assert len(rows) == 5
    assert "code" not in rows[0]
    assert sorted(r["test"] for r in rows) == ["false", "false", "false", "true", "true"]
    assert [json.loads(line)["test"] for line in lines.text.splitlines()] == [True, True]
    assert ops_clear.status_code == 403
    assert no_reason.status_code == 422
    assert clear.status_code == 200, clear.text
    exported = [json.loads(line) for line in clear.text.splitlines()]
    for row in exported:
        revealed = await voucher.http.post(
            f"/v1/codes/{row['code_id']}/reveal", json={"reason": "check export"}, headers=auth("admin")
        )
        assert revealed.json()["code"] == row["code"]
        assert row["masked_code"] == "****-" + row["code"][-4:]
    audit = await voucher.pool.fetchrow(
        "SELECT actor, subject_id, details FROM audit_log WHERE action = 'codes.exported_clear'"
    )
    assert (audit["actor"], audit["subject_id"]) == ("admin:tester", campaign)
    details = json.loads(audit["details"]) if isinstance(audit["details"], str) else audit["details"]
    assert (details["reason"], details["codes"], details["test"]) == ("partner UAT", 2, True)


async def test_campaign_and_code_values_are_answered_in_the_currencys_minor_units(start_voucher) -> None:
    voucher = await start_voucher()
    yen = await voucher.create_campaign(face_value="2500", currency="JPY", budget="100000")
    await voucher.generate(yen, 1)

    campaign = await voucher.http.get(f"/v1/campaigns/{yen}", headers=auth("ops"))
    listed = await voucher.http.get(f"/v1/campaigns/{yen}/codes", headers=auth("ops"))
    code_id = listed.json()["items"][0]["code_id"]
    code = await voucher.http.get(f"/v1/codes/{code_id}", headers=auth("ops"))

    body = campaign.json()
    assert (body["face_value"], body["budget"], body["budget_used"], body["budget_left"]) == (
        "2500",
        "100000",
        "0",
        "100000",
    )
    assert [(i["value"], i["currency"]) for i in listed.json()["items"]] == [("2500", "JPY")]
    assert (code.json()["value"], code.json()["remaining_value"]) == ("2500", "2500")
    openapi = (await voucher.http.get("/openapi.json")).json()
    value = openapi["components"]["schemas"]["CodeListItem"]["properties"]["value"]
    assert value["type"] == "string"
    assert "minor units" in value["description"]
