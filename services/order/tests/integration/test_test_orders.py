"""UAT test orders: placed like real ones with `test`, flagged on every event they cause, listed with
`test=true`, and kept apart from the finance figures (summary counts, export)."""

from __future__ import annotations

import csv
import io

from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from contracts.values import RewardType

from .conftest import OrderService, voucher_record


async def test_a_placed_test_order_is_flagged_on_its_events_and_listed_apart(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    test_body = voucher_record(campaign, test=True)
    real_body = voucher_record(campaign)

    placed = await order_service.http.post("/v1/orders", json=test_body, headers=order_service.auth("ops"))
    real = await order_service.http.post("/v1/orders", json=real_body, headers=order_service.auth("ops"))
    assert placed.status_code == 201, placed.text
    assert real.status_code == 201, real.text
    test_id, real_id = placed.json()["order_id"], real.json()["order_id"]

    assert placed.json()["test"] is True
    assert real.json()["test"] is False
    [created] = await order_service.wait_published(Topics.ORDER_STATE_CHANGED, 1, order_id=test_id)
    [requested] = await order_service.wait_published(Topics.DELIVERY_REQUESTED, 1, order_id=test_id)
    [real_created] = await order_service.wait_published(Topics.ORDER_STATE_CHANGED, 1, order_id=real_id)
    assert (created["test"], requested["test"], real_created["test"]) == (True, True, False)

    async def listed(**params: object) -> set[str]:
        response = await order_service.http.get(
            "/v1/orders", params={"campaign_id": campaign, **params}, headers=order_service.auth("finance")
        )
        assert response.status_code == 200, response.text
        return {item["order_id"] for item in response.json()["items"]}

    assert await listed(test="true") == {test_id}
    assert await listed(test="false") == {real_id}
    assert await listed() == {test_id, real_id}


async def test_test_records_of_an_ipa_batch_become_test_orders_and_points_cannot_be_tests(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    points = await order_service.campaign(reward_type=RewardType.POINTS)
    header = "external_ref,member_id,email,campaign_id,reward_type,amount,currency,test"
    rows = [
        f"csv-test-{campaign},m-1,ada@example.com,{campaign},voucher,25.00,EUR,yes",
        f"csv-real-{campaign},m-2,bob@example.com,{campaign},voucher,25.00,EUR,",
        f"csv-pts-{campaign},m-3,cy@example.com,{points},points,10,,true",
        f"csv-bad-{campaign},m-4,di@example.com,{campaign},voucher,25.00,EUR,perhaps",
    ]
    upload = await order_service.upload_csv("\n".join([header, *rows]) + "\n")
    assert upload.status_code == 202, upload.text
    batch = await order_service.finished_batch(upload.json()["batch_id"])

    assert (batch["accepted"], batch["rejected"]) == (2, 2)
    test_order = await order_service.order_of(f"csv-test-{campaign}")
    real_order = await order_service.order_of(f"csv-real-{campaign}")
    assert (test_order["test"], real_order["test"]) == (True, False)
    [accepted] = await order_service.wait_published(
        Topics.IPA_RECORD_ACCEPTED, 1, external_ref=f"csv-test-{campaign}"
    )
    assert accepted["test"] is True
    [points_rejected] = await order_service.wait_published(
        Topics.IPA_RECORD_REJECTED, 1, external_ref=f"csv-pts-{campaign}"
    )
    [bad_rejected] = await order_service.wait_published(
        Topics.IPA_RECORD_REJECTED, 1, external_ref=f"csv-bad-{campaign}"
    )
    assert {(e["field"], e["code"]) for e in points_rejected["errors"]} == {("test", "test_not_voucher")}
    assert {(e["field"], e["code"]) for e in bad_rejected["errors"]} == {("test", "invalid_flag")}


async def test_test_orders_are_kept_out_of_the_summary_figures_and_the_export_unless_asked_for(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    for body in (voucher_record(campaign, test=True), voucher_record(campaign), voucher_record(campaign)):
        response = await order_service.http.post("/v1/orders", json=body, headers=order_service.auth())
        assert response.status_code == 201, response.text

    summary = await order_service.http.get(
        "/v1/orders/summary", params={"campaign_id": campaign}, headers=order_service.auth("finance")
    )
    export = await order_service.http.get(
        "/v1/orders/export", params={"campaign_id": campaign}, headers=order_service.auth("finance")
    )
    test_export = await order_service.http.get(
        "/v1/orders/export",
        params={"campaign_id": campaign, "test": "true", "format": "csv"},
        headers=order_service.auth("finance"),
    )

    assert summary.status_code == 200, summary.text
    figures = summary.json()
    assert (figures["total"], figures["by_state"]["pending"]) == (2, 2)
    assert [c["total"] for c in figures["campaigns"]] == [2]
    assert (figures["test"]["total"], figures["test"]["by_state"]["pending"]) == (1, 1)
    exported = list(csv.DictReader(io.StringIO(export.text)))
    assert [row["test"] for row in exported] == ["false", "false"]
    assert [row["test"] for row in csv.DictReader(io.StringIO(test_export.text))] == ["true"]


async def test_a_test_record_from_the_hr_system_on_the_topic_becomes_a_test_order(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    record = IpaRecordSubmitted(**voucher_record(campaign), test=True)

    await order_service.publish(Topics.IPA_RECORD_SUBMITTED, record.external_ref, record, producer="hris")
    placed = await order_service.order_of(record.external_ref)

    assert placed["test"] is True
    [requested] = await order_service.wait_published(
        Topics.DELIVERY_REQUESTED, 1, order_id=placed["order_id"]
    )
    assert requested["test"] is True
