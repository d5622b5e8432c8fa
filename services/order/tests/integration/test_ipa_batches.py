"""IPA batches through HTTP, the batch worker, Postgres and the relay to Kafka."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from contracts.topics import Topics
from contracts.values import RewardType

from .conftest import OrderService, voucher_record

HEADER = "external_ref,member_id,name,email,phone,channel,campaign_id,reward_type,amount,currency,reason"


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER.split(","), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in HEADER.split(",")})
    return out.getvalue()


def parse_report(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_csv_upload_accepts_valid_rows_and_reports_each_invalid_one_by_row_and_field(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    good = [voucher_record(campaign) for _ in range(3)]
    bad_contact = voucher_record(campaign, phone="12345", channel="sms", email=None, amount="-3")
    repeated = dict(good[0], member_id="someone-else")
    upload = await order_service.upload_csv(csv_text([*good, bad_contact, repeated]))
    assert upload.status_code == 202, upload.text
    batch_id = upload.json()["batch_id"]

    batch = await order_service.finished_batch(batch_id)

    assert batch["status"] == "completed"
    assert (batch["received"], batch["validated"], batch["accepted"], batch["rejected"]) == (5, 5, 3, 2)
    assert batch["orders"] == {"pending": 3, "completed": 0, "cancelled": 0}
    report = await order_service.http.get(
        f"/v1/ipa/batches/{batch_id}/errors.csv", headers=order_service.auth()
    )
    assert report.status_code == 200
    rows = parse_report(report.text)
    assert [r["row"] for r in rows] == ["4", "5"]
    assert "phone: invalid_phone" in rows[0]["errors"]
    assert "amount: amount_not_positive" in rows[0]["errors"]
    assert "channel: channel_unreachable" not in rows[0]["errors"]  # a phone was given, just malformed
    assert "external_ref: duplicate_in_file" in rows[1]["errors"]
    assert "row 1" in rows[1]["errors"]
    for record in good:
        order = await order_service.order_of(record["external_ref"])
        assert order["booking_id"].startswith("BK-")
        assert order["state"] == "pending"
        assert order["fulfilment_status"] == "awaiting_voucher"
        assert order["timeline"][0]["event"] == "created"
    accepted = await order_service.wait_published(
        Topics.IPA_RECORD_ACCEPTED, 1, external_ref=good[1]["external_ref"]
    )
    assert accepted[0]["order_id"] is not None
    delivery = await order_service.wait_published(
        Topics.DELIVERY_REQUESTED, 1, order_id=accepted[0]["order_id"]
    )
    assert delivery[0]["email"] == "ada@example.com"
    assert delivery[0]["channel"] == "email"
    await order_service.wait_published(
        Topics.IPA_RECORD_REJECTED, 1, external_ref=bad_contact["external_ref"]
    )


async def test_a_reference_accepted_in_an_earlier_batch_is_rejected_as_a_duplicate_naming_the_original(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    record = voucher_record(campaign)
    first = await order_service.finished_batch(await order_service.upload_json([record]))
    original = await order_service.order_of(record["external_ref"])

    second = await order_service.finished_batch(await order_service.upload_json([record]))

    listed = await order_service.http.get(
        "/v1/ipa/batches", params={"limit": 2}, headers=order_service.auth("auditor")
    )
    assert [b["batch_id"] for b in listed.json()["items"]] == [second["batch_id"], first["batch_id"]]
    assert first["accepted"] == 1
    assert (second["accepted"], second["rejected"]) == (0, 1)
    report = await order_service.http.get(
        f"/v1/ipa/batches/{second['batch_id']}/errors.csv", headers=order_service.auth()
    )
    [row] = parse_report(report.text)
    assert "external_ref: duplicate:" in row["errors"]
    assert original["order_id"] in row["errors"]
    count = await order_service.pool.fetchval(
        "SELECT count(*) FROM orders WHERE external_ref = $1", record["external_ref"]
    )
    assert count == 1


async def test_dry_run_reports_problems_and_changes_nothing(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign), voucher_record(campaign, currency="USD")]

    batch = await order_service.finished_batch(await order_service.upload_json(records, mode="dry_run"))

    assert (batch["status"], batch["validated"], batch["valid"], batch["rejected"], batch["accepted"]) == (
        "completed",
        2,
        1,
        1,
        0,
    )
    # Other tests' records on the shared topic may reach this service: count only this campaign's.
    assert (
        await order_service.pool.fetchval("SELECT count(*) FROM orders WHERE campaign_id = $1", campaign) == 0
    )
    assert (
        await order_service.pool.fetchval("SELECT count(*) FROM ipa_records WHERE campaign_id = $1", campaign)
        == 0
    )
    mentions = "SELECT count(*) FROM outbox WHERE position($1 in convert_from(payload, 'UTF8')) > 0"
    assert await order_service.pool.fetchval(mentions, campaign) == 0


async def test_all_or_nothing_accepts_none_when_one_row_fails_and_all_when_none_does(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign) for _ in range(4)]
    broken = [*records[:3], voucher_record(campaign, amount="25.001")]

    refused = await order_service.finished_batch(
        await order_service.upload_json(broken, mode="all_or_nothing")
    )
    accepted = await order_service.finished_batch(
        await order_service.upload_json(records, mode="all_or_nothing")
    )

    assert (refused["status"], refused["accepted"], refused["rejected"], refused["valid"]) == (
        "rejected",
        0,
        1,
        3,
    )
    assert (accepted["status"], accepted["accepted"], accepted["rejected"]) == ("completed", 4, 0)
    assert accepted["orders"]["pending"] == 4


async def test_a_points_reward_is_accepted_for_the_wallet_without_an_order(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign(reward_type=RewardType.POINTS, per_record_limit="1000")
    record = voucher_record(campaign, reward_type="points", amount="250", currency=None)

    batch = await order_service.finished_batch(await order_service.upload_json([record]))

    assert (batch["accepted"], batch["points_accepted"], batch["orders"]["pending"]) == (1, 1, 0)
    [event] = await order_service.wait_published(
        Topics.IPA_RECORD_ACCEPTED, 1, external_ref=record["external_ref"]
    )
    assert event["reward_type"] == "points"
    assert event["order_id"] is None
    assert str(event["amount"]) == "250"


async def test_the_error_report_can_be_fixed_and_uploaded_again(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    record = voucher_record(
        campaign, phone="+447700900123", name='=HYPERLINK("http://x")', email="not-an-email"
    )
    batch = await order_service.finished_batch(
        (await order_service.upload_csv(csv_text([record]))).json()["batch_id"]
    )
    report = await order_service.http.get(
        f"/v1/ipa/batches/{batch['batch_id']}/errors.csv", headers=order_service.auth()
    )
    [row] = parse_report(report.text)
    assert row["name"].startswith("'=")  # kept inert for spreadsheets
    assert row["phone"] == "'+447700900123"
    assert "name: formula_like" in row["errors"]
    assert "email: invalid_email" in row["errors"]

    fixed = report.text.replace('"\'=HYPERLINK(""http://x"")"', "Ada").replace(
        "not-an-email", "ada@example.com"
    )
    again = await order_service.finished_batch((await order_service.upload_csv(fixed)).json()["batch_id"])

    assert (again["accepted"], again["rejected"]) == (1, 0)
    await order_service.order_of(record["external_ref"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"external_ref,member_id\n\xff\xfe,bad\n", "bad_encoding"),
        (b"r1,m1,c1,voucher,10,EUR\n", "missing_header"),
        (b"external_ref;member_id;campaign_id;reward_type;amount\nr;m;c;voucher;1\n", "wrong_delimiter"),
        (
            b"external_ref,member_id,campaign_id,reward_type,amount,colour\nr,m,c,voucher,1,red\n",
            "unknown_column",
        ),
        (b"external_ref,member_id,campaign_id\nr,m,c\n", "missing_column"),
        (b"", "empty_file"),
        (b'external_ref,member_id,campaign_id,reward_type,amount\n"r" 1,m,c,voucher,1\n', "malformed_csv"),
    ],
)
async def test_an_unreadable_file_gets_a_clear_error_and_stores_nothing(
    order_service: OrderService, body: bytes, code: str
) -> None:
    response = await order_service.upload_csv(body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert response.json()["errors"][0]["field"] == "file"
    assert await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches") == 0


@pytest.mark.parametrize("order_service", [{"ORCHARD_ORDER_MAX_UPLOAD_BYTES": 2000}], indirect=True)
async def test_an_upload_over_the_size_limit_is_refused_with_413(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    big = csv_text([voucher_record(campaign) for _ in range(40)])

    declared = await order_service.upload_csv(big)

    async def chunks():  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 500):
            yield big[i : i + 500].encode()

    streamed = await order_service.http.post(
        "/v1/ipa/batches", content=chunks(), headers={**order_service.auth(), "Content-Type": "text/csv"}
    )
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "upload_too_large"
    assert await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches") == 0


async def test_a_multipart_upload_and_its_file_name_are_accepted(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign) for _ in range(2)]

    response = await order_service.http.post(
        "/v1/ipa/batches",
        files={"file": ("allocations.csv", csv_text(records).encode(), "text/csv")},
        headers=order_service.auth("hris"),
    )

    assert response.status_code == 202, response.text
    batch = await order_service.finished_batch(response.json()["batch_id"])
    assert (batch["file_name"], batch["accepted"]) == ("allocations.csv", 2)


async def test_uploads_need_an_intake_role(order_service: OrderService) -> None:
    response = await order_service.http.post(
        "/v1/ipa/batches",
        json={"records": [{"external_ref": "x"}]},
        headers=order_service.auth("support_agent"),
    )
    missing = await order_service.http.get(f"/v1/ipa/batches/{uuid.uuid4()}", headers=order_service.auth())

    assert response.status_code == 403
    assert missing.status_code == 404


async def test_a_nul_byte_in_a_batch_field_is_refused_with_422_and_nothing_is_stored(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    batches_before = await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches")
    records = [voucher_record(campaign), voucher_record(campaign, member_id="m-\x00-1")]

    response = await order_service.http.post(
        "/v1/ipa/batches", json={"records": records}, headers=order_service.auth()
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["records.2.member_id"]
    assert await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches") == batches_before
    assert (
        await order_service.pool.fetchval(
            "SELECT count(*) FROM ipa_batch_rows WHERE external_ref = $1", records[0]["external_ref"]
        )
        == 0
    )


async def test_a_nul_byte_in_a_csv_cell_is_refused_with_422_and_nothing_is_stored(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    batches_before = await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches")
    record = voucher_record(campaign, reason="bonus\x00")

    response = await order_service.upload_csv(csv_text([voucher_record(campaign), record]))

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["file.reason"]
    assert await order_service.pool.fetchval("SELECT count(*) FROM ipa_batches") == batches_before
