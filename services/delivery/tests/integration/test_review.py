import uuid

from chassis.audit import verify_audit_chain
from chassis.testing import wait_until
from contracts.support import SupportResendRequested
from contracts.values import Channel

from .conftest import voucher_for


async def _failed_sms(service, phone: str = "+15005550001", campaign_id: str = "camp-1") -> uuid.UUID:
    order_id = uuid.uuid4()
    await service.join(
        order_id,
        "failed",
        voucher=voucher_for(order_id, campaign_id=campaign_id),
        channel=Channel.SMS,
        phone=phone,
        campaign_id=campaign_id,
    )
    return order_id


async def test_reviewers_list_failed_deliveries_filtered_with_masked_contacts(delivery_service):
    service = await delivery_service()
    first = await _failed_sms(service, campaign_id="camp-a")
    second = await _failed_sms(service, campaign_id="camp-b")

    everything = await service.http.get("/v1/deliveries/failed", headers=service.token("support_agent"))
    by_campaign = await service.http.get(
        "/v1/deliveries/failed", params={"campaign_id": "camp-a"}, headers=service.token("ops")
    )
    by_reason = await service.http.get(
        "/v1/deliveries/failed",
        params={"reason_code": "bounced", "channel": "sms"},
        headers=service.token("admin"),
    )
    paged = await service.http.get("/v1/deliveries/failed", params={"limit": 1}, headers=service.token())
    rest = await service.http.get(
        "/v1/deliveries/failed",
        params={"limit": 1, "cursor": paged.json()["next_cursor"]},
        headers=service.token(),
    )

    assert everything.status_code == 200
    assert {i["order_id"] for i in everything.json()["items"]} == {str(first), str(second)}
    assert [i["order_id"] for i in by_campaign.json()["items"]] == [str(first)]
    assert by_reason.json()["items"] == []
    assert [i["order_id"] for i in paged.json()["items"] + rest.json()["items"]] == [str(second), str(first)]
    item = everything.json()["items"][0]
    assert item["phone"] != "+15005550001"
    assert item["phone"].endswith("0001")
    assert item["last_reason_code"] == "invalid_number"


async def test_review_needs_a_reviewer_role_and_refuses_bad_filters(delivery_service):
    service = await delivery_service()

    member = await service.http.get("/v1/deliveries/failed", headers=service.token("member", "m-1"))
    anonymous = await service.http.get("/v1/deliveries/failed")
    bad = await service.http.get("/v1/deliveries/failed", params={"channel": "fax"}, headers=service.token())

    assert member.status_code == 403
    assert anonymous.status_code == 401
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.channel"


async def test_a_corrected_phone_is_resent_audited_with_the_actor_and_every_attempt_is_shown(
    delivery_service,
):
    service = await delivery_service()
    order_id = await _failed_sms(service)
    delivery_id = (await service.delivery(order_id))["delivery_id"]

    corrected = await service.http.post(
        f"/v1/deliveries/{delivery_id}/recipient",
        json={"phone": "+447700900888", "reason": "typo in HR record"},
        headers=service.token("admin", "alice"),
    )
    assert corrected.status_code == 202
    await service.wait_status(order_id, "sent")
    shown = await service.http.get(
        f"/v1/deliveries/{delivery_id}", headers=service.token("support_agent", "bob")
    )

    attempts = shown.json()["attempt_log"]
    assert [(a["channel"], a["outcome"], a["reason_code"], a["send_round"]) for a in attempts] == [
        ("sms", "failed", "invalid_number", 1),
        ("sms", "succeeded", None, 2),
    ]
    assert attempts[0]["provider_response"].startswith("HTTP 400 code 21211")
    assert [m["to"] for m in service.provider.messages() if m["to"] == "+447700900888"] == ["+447700900888"]
    async with service.pool.acquire() as conn:
        audit = await conn.fetch("SELECT actor, action, details FROM audit_log ORDER BY seq")
        assert (await verify_audit_chain(conn)).ok
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("admin:alice", "delivery.recipient_corrected"),
        ("admin:alice", "delivery.resend"),
    ]
    assert "+447700900888" not in str(audit)


async def test_a_resend_is_refused_within_a_minute_of_the_last_one(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    row = await service.join(order_id)

    first = await service.http.post(
        f"/v1/deliveries/{row['delivery_id']}/resend", headers=service.token("ops")
    )
    await service.wait_status(order_id, "sent")
    second = await service.http.post(
        f"/v1/deliveries/{row['delivery_id']}/resend", headers=service.token("ops")
    )
    unknown = await service.http.post(f"/v1/deliveries/{uuid.uuid4()}/resend", headers=service.token("ops"))

    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["code"] == "resend_too_soon"
    assert unknown.status_code == 404
    messages = [m for m in service.smtp.messages() if str(row["delivery_id"]) in m["Message-ID"]]
    assert len(messages) == 2
    assert len({m["Message-ID"] for m in messages}) == 2


async def test_many_failed_deliveries_are_resent_at_once_each_with_its_own_answer(delivery_service):
    service = await delivery_service()
    orders = [await _failed_sms(service, phone="+15005550500") for _ in range(2)]
    ids = [str((await service.delivery(o))["delivery_id"]) for o in orders]
    missing = str(uuid.uuid4())

    answer = await service.http.post(
        "/v1/deliveries/resend",
        json={"delivery_ids": [*ids, missing]},
        headers=service.token("support_agent"),
    )

    assert answer.status_code == 200
    assert [(r["delivery_id"], r["status"]) for r in answer.json()["results"]] == [
        (ids[0], "queued"),
        (ids[1], "queued"),
        (missing, "refused"),
    ]
    for order_id in orders:
        row = await service.wait_status(order_id, "failed")
        assert row["send_round"] == 2


async def test_support_resend_requests_resend_once_a_minute_and_refusals_are_audited(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    row = await service.join(order_id)

    for _ in range(2):
        await service.publish(
            SupportResendRequested(
                order_id=order_id, reason="member says nothing came", requested_by="agent:bob"
            )
        )

    async def both_handled() -> bool:
        actions = await service.pool.fetch("SELECT action FROM audit_log ORDER BY seq")
        return len(actions) == 2

    await wait_until(both_handled, what="both resend requests to be handled")
    await service.wait_status(order_id, "sent")
    actions = await service.pool.fetch("SELECT actor, action FROM audit_log ORDER BY seq")
    assert [(a["actor"], a["action"]) for a in actions] == [
        ("agent:bob", "delivery.resend"),
        ("agent:bob", "delivery.resend_refused"),
    ]

    async def resent() -> bool:
        return len([m for m in service.smtp.messages() if str(row["delivery_id"]) in m["Message-ID"]]) == 2

    await wait_until(resent, what="the second email")


async def test_a_naive_datetime_in_the_failed_deliveries_filter_is_refused_with_422_naming_it(
    delivery_service,
):
    service = await delivery_service()
    for name in ("from", "to"):
        response = await service.http.get(
            "/v1/deliveries/failed", params={name: "2026-01-01T00:00:00"}, headers=service.token("ops")
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [f"query.{name}"]
    aware = await service.http.get(
        "/v1/deliveries/failed", params={"from": "2026-01-01T00:00:00+01:00"}, headers=service.token("ops")
    )
    assert aware.status_code == 200, aware.text
