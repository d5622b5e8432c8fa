"""IPA records on the topic, the campaign view, and the order queries."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from chassis.testing import produce, wait_until
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from contracts.values import RewardType
from contracts.vouchers import CampaignStatus

from .conftest import OrderService, voucher_record


def submitted(campaign: str, **overrides: Any) -> IpaRecordSubmitted:
    return IpaRecordSubmitted(**{**voucher_record(campaign), **overrides})


async def handled(service: OrderService, *envelopes: Envelope[Any]) -> None:
    ids = [e.event_id for e in envelopes]

    async def done() -> bool:
        count = await service.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids
        )
        return bool(count == len(ids))

    await wait_until(done, what=f"{len(ids)} event(s) handled")


async def test_a_reference_repeated_on_the_topic_gives_one_order_and_a_duplicate_answer(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    record = submitted(campaign)
    first = await order_service.publish(
        Topics.IPA_RECORD_SUBMITTED, record.external_ref, record, producer="hris"
    )
    await order_service.publish_raw(Topics.IPA_RECORD_SUBMITTED, record.external_ref, first)  # redelivery
    again = await order_service.publish(
        Topics.IPA_RECORD_SUBMITTED, record.external_ref, record, producer="hris"
    )
    await handled(order_service, first, again)

    order = await order_service.order_of(record.external_ref)
    [accepted] = await order_service.wait_published(
        Topics.IPA_RECORD_ACCEPTED, 1, external_ref=record.external_ref
    )
    [rejected] = await order_service.wait_published(
        Topics.IPA_RECORD_REJECTED, 1, external_ref=record.external_ref
    )

    assert accepted["order_id"] == order["order_id"]
    assert rejected["errors"][0]["code"] == "duplicate"
    assert order["order_id"] in rejected["errors"][0]["message"]
    assert order["timeline"][0]["cause_event_id"] == str(first.event_id)
    count = await order_service.pool.fetchval(
        "SELECT count(*) FROM orders WHERE external_ref = $1", record.external_ref
    )
    assert count == 1


async def test_a_malformed_record_on_the_topic_is_rejected_field_by_field(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign(status=CampaignStatus.PAUSED)
    ref = f"ref-{uuid.uuid4().hex[:8]}"
    raw = Envelope.new(
        event_type=Topics.IPA_RECORD_SUBMITTED,
        producer="hris",
        data=submitted(campaign, external_ref=ref),
    ).to_json_dict()
    raw["data"].update({"phone": "0044 7700", "amount": 12.5, "reward_type": "cash"})
    await produce(
        order_service.bootstrap, Topics.IPA_RECORD_SUBMITTED, [(ref.encode(), json.dumps(raw).encode())]
    )

    [rejected] = await order_service.wait_published(Topics.IPA_RECORD_REJECTED, 1, external_ref=ref)

    codes = {(e["field"], e["code"]) for e in rejected["errors"]}
    assert codes == {
        ("phone", "invalid_phone"),
        ("amount", "invalid_amount"),
        ("reward_type", "invalid_reward_type"),
        ("campaign_id", "campaign_inactive"),
    }
    assert await order_service.pool.fetchval("SELECT count(*) FROM orders WHERE external_ref = $1", ref) == 0


async def test_an_amount_no_code_of_the_campaign_is_worth_is_rejected_at_validation_not_held(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign(denominations=("10",))
    records = [
        voucher_record(campaign, amount="30.00"),
        voucher_record(campaign, amount="10.00"),
        voucher_record(campaign, amount="25"),
    ]

    batch_id = await order_service.upload_json(records)
    batch = await order_service.finished_batch(batch_id)
    errors = await order_service.http.get(
        f"/v1/ipa/batches/{batch_id}/errors.csv", headers=order_service.auth()
    )

    assert (batch["accepted"], batch["rejected"]) == (2, 1)
    assert "amount_not_a_denomination" in errors.text
    assert "its codes are worth 10, 25" in errors.text
    refs = [r["external_ref"] for r in records]
    amounts = await order_service.pool.fetch(
        "SELECT amount FROM orders WHERE external_ref = ANY($1::text[]) ORDER BY amount", refs
    )
    assert [r["amount"] for r in amounts] == [Decimal("10"), Decimal("25")]


async def test_the_campaign_view_keeps_only_newer_versions(order_service: OrderService) -> None:
    campaign = await order_service.campaign(version=3, per_record_limit="100")
    stale = await order_service.campaign(campaign_id=campaign, version=3, per_record_limit="100")
    older_env = await order_service.publish(
        Topics.CAMPAIGN_CHANGED,
        campaign,
        _campaign_changed(campaign, version=2, status=CampaignStatus.ENDED),
    )
    await handled(order_service, older_env)

    row = await order_service.pool.fetchrow(
        "SELECT version, status FROM campaigns WHERE campaign_id = $1", stale
    )
    assert (row["version"], row["status"]) == (3, "active")
    await order_service.campaign(campaign_id=campaign, version=4, status=CampaignStatus.ENDED)
    batch = await order_service.finished_batch(await order_service.upload_json([voucher_record(campaign)]))
    assert batch["rejected"] == 1


def _campaign_changed(campaign_id: str, *, version: int, status: CampaignStatus) -> Any:
    from decimal import Decimal

    from contracts.values import Channel
    from contracts.vouchers import CampaignChanged

    return CampaignChanged(
        campaign_id=campaign_id,
        version=version,
        name="old",
        reward_type=RewardType.VOUCHER,
        face_value=Decimal("25"),
        currency="EUR",
        status=status,
        default_channel=Channel.EMAIL,
    )


async def test_orders_are_listed_with_filters_stable_pages_and_exact_totals(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    other = await order_service.campaign()
    member = f"m-{uuid.uuid4().hex[:6]}"
    records = [voucher_record(campaign, member_id=member) for _ in range(7)]
    await order_service.finished_batch(await order_service.upload_json([*records, voucher_record(other)]))
    first_order = await order_service.order_of(records[0]["external_ref"])
    await order_service.http.post(
        f"/v1/orders/{first_order['order_id']}/cancel", json={"reason": "test"}, headers=order_service.auth()
    )

    seen: list[str] = []
    cursor = None
    totals = set()
    while True:
        params: dict[str, Any] = {"campaign_id": campaign, "limit": 3, "sort": "created_at"}
        if cursor:
            params["cursor"] = cursor
        page = (
            await order_service.http.get("/v1/orders", params=params, headers=order_service.auth("ops"))
        ).json()
        seen += [o["order_id"] for o in page["items"]]
        totals.add(page["total"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    pending = await order_service.http.get(
        "/v1/orders",
        params={"campaign_id": campaign, "state": "pending"},
        headers=order_service.auth("auditor"),
    )
    by_member = await order_service.http.get(
        "/v1/orders", params={"member_id": member}, headers=order_service.auth()
    )
    bad_cursor = await order_service.http.get(
        "/v1/orders", params={"cursor": "nope"}, headers=order_service.auth()
    )
    summary = await order_service.http.get(
        "/v1/orders/summary", params={"campaign_id": campaign}, headers=order_service.auth("support_agent")
    )
    everything = await order_service.http.get("/v1/orders/summary", headers=order_service.auth())

    assert len(seen) == len(set(seen)) == 7
    assert totals == {7}
    assert pending.json()["total"] == 6
    assert by_member.json()["total"] == 7
    assert bad_cursor.status_code == 422
    body = summary.json()
    assert (body["total"], body["by_state"]) == (7, {"pending": 6, "completed": 0, "cancelled": 1})
    assert body["by_fulfilment_status"]["awaiting_voucher"] == 6
    assert body["campaigns"][0]["campaign_id"] == campaign
    assert {c["campaign_id"] for c in everything.json()["campaigns"]} >= {campaign, other}


async def _all_pages(order_service: OrderService, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await order_service.http.get("/v1/orders", params=query, headers=order_service.auth("ops"))
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


async def test_orders_are_sorted_by_state_or_fulfilment_status_across_pages(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign) for _ in range(5)]
    await order_service.finished_batch(await order_service.upload_json(records))
    for record in records[:2]:
        order = await order_service.order_of(record["external_ref"])
        cancelled = await order_service.http.post(
            f"/v1/orders/{order['order_id']}/cancel", json={"reason": "left"}, headers=order_service.auth()
        )
        assert cancelled.status_code == 200, cancelled.text

    by_state = await _all_pages(order_service, campaign_id=campaign, sort="state")
    by_state_desc = await _all_pages(order_service, campaign_id=campaign, sort="-state")
    by_fulfilment = await _all_pages(order_service, campaign_id=campaign, sort="fulfilment_status")
    switched = await order_service.http.get(
        "/v1/orders",
        params={"campaign_id": campaign, "limit": 2, "sort": "state"},
        headers=order_service.auth("ops"),
    )
    wrong_sort = await order_service.http.get(
        "/v1/orders",
        params={"sort": "-created_at", "cursor": switched.json()["next_cursor"]},
        headers=order_service.auth("ops"),
    )

    states = [o["state"] for o in by_state]
    assert states == ["cancelled", "cancelled", "pending", "pending", "pending"]
    assert [o["state"] for o in by_state_desc] == states[::-1]
    assert len({o["order_id"] for o in by_state}) == 5, "every order once across the pages"
    fulfilment = [o["fulfilment_status"] or "" for o in by_fulfilment]
    assert fulfilment == sorted(fulfilment)
    assert wrong_sort.status_code == 422, "a cursor belongs to the sort it came from"


async def test_an_order_is_found_by_booking_id_in_any_case_and_unknown_ones_answer_404(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    record = voucher_record(campaign)
    await order_service.finished_batch(await order_service.upload_json([record]))
    order = await order_service.order_of(record["external_ref"])

    by_booking = await order_service.order(order["booking_id"].lower())
    unknown = await order_service.http.get("/v1/orders/BK-2222222222", headers=order_service.auth())
    member = await order_service.http.get(
        f"/v1/orders/{order['order_id']}", headers=order_service.auth("member")
    )

    assert by_booking["order_id"] == order["order_id"]
    assert unknown.status_code == 404
    assert member.status_code == 403


async def test_an_operator_places_an_order_once_and_its_reference_is_then_a_duplicate_everywhere(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    body = voucher_record(campaign)

    placed = await order_service.http.post("/v1/orders", json=body, headers=order_service.auth("ops"))
    again = await order_service.http.post("/v1/orders", json=body, headers=order_service.auth("admin"))
    invalid = await order_service.http.post(
        "/v1/orders",
        json={**body, "external_ref": "other-ref", "email": "nope", "amount": "0"},
        headers=order_service.auth(),
    )
    forbidden = await order_service.http.post(
        "/v1/orders", json=body, headers=order_service.auth("support_agent")
    )
    points = await order_service.http.post(
        "/v1/orders",
        json={**body, "external_ref": "points-ref", "reward_type": "points"},
        headers=order_service.auth(),
    )
    batch = await order_service.finished_batch(
        await order_service.upload_json([voucher_record(campaign, external_ref=body["external_ref"])])
    )

    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert (order["source"], order["state"], order["fulfilment_status"]) == (
        "api",
        "pending",
        "awaiting_voucher",
    )
    assert placed.headers["location"] == f"/v1/orders/{order['order_id']}"
    assert again.status_code == 409
    assert order["order_id"] in again.json()["detail"]
    assert invalid.status_code == 422
    assert points.status_code == 422
    assert "body.reward_type" in {e["field"] for e in points.json()["errors"]}
    assert {(e["field"], e["code"]) for e in invalid.json()["errors"]} == {
        ("email", "invalid_email"),
        ("amount", "amount_not_positive"),
    }
    assert forbidden.status_code == 403
    assert batch["rejected"] == 1
    await order_service.wait_published(Topics.DELIVERY_REQUESTED, 1, order_id=order["order_id"])
    assert not await order_service.published(Topics.IPA_RECORD_ACCEPTED, external_ref=body["external_ref"])


async def test_a_naive_datetime_in_the_order_filter_is_refused_with_422_naming_the_parameter(
    order_service: OrderService,
) -> None:
    for name in ("created_from", "created_to"):
        response = await order_service.http.get(
            "/v1/orders", params={name: "2026-01-01T00:00:00"}, headers=order_service.auth("ops")
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [f"query.{name}"]
    aware = await order_service.http.get(
        "/v1/orders", params={"created_from": "2026-01-01T00:00:00Z"}, headers=order_service.auth("ops")
    )
    assert aware.status_code == 200, aware.text


async def test_order_amounts_are_answered_in_their_currencys_minor_units(order_service: OrderService) -> None:
    euros = await order_service.campaign()
    yen = await order_service.campaign(currency="JPY")
    records = [voucher_record(euros, amount="25"), voucher_record(yen, amount="25", currency="JPY")]
    await order_service.finished_batch(await order_service.upload_json(records))
    euro_order = await order_service.order_of(records[0]["external_ref"])
    yen_order = await order_service.order_of(records[1]["external_ref"])

    listed = await order_service.http.get(
        "/v1/orders", params={"campaign_id": yen}, headers=order_service.auth()
    )
    exported = await order_service.http.get(
        "/v1/orders/export", params={"campaign_id": euros, "format": "jsonl"}, headers=order_service.auth()
    )

    assert (euro_order["amount"], yen_order["amount"]) == ("25.00", "25")
    assert [o["amount"] for o in listed.json()["items"]] == ["25"]
    assert [json.loads(line)["amount"] for line in exported.text.splitlines()] == ["25.00"]
