"""IPA batches above the approval thresholds (records or total amount) wait for a second person holding
the approver permission before the worker takes them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from chassis.tests.approvals_support import announced, audited, decide, pending_ids

from .conftest import OrderService, voucher_record
from .test_ipa_batches import csv_text

THRESHOLDS = {"ORCHARD_ORDER_IPA_APPROVAL_ROWS_ABOVE": 3, "ORCHARD_ORDER_IPA_APPROVAL_TOTAL_ABOVE": "1000"}
pytestmark = pytest.mark.parametrize("order_service", [THRESHOLDS], indirect=True)


def person(service: OrderService, sub: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(role=list(roles), sub=sub, settings=service.settings)}"}


async def upload(service: OrderService, records: list[dict[str, Any]], maker: str = "omar") -> httpx.Response:
    return await service.http.post(
        "/v1/ipa/batches", json={"records": records}, headers=person(service, maker, "ops")
    )


async def batch(service: OrderService, batch_id: str) -> dict[str, Any]:
    answer = await service.http.get(f"/v1/ipa/batches/{batch_id}", headers=service.auth())
    found: dict[str, Any] = answer.json()
    return found


async def test_a_batch_within_the_thresholds_is_processed_at_once(order_service: OrderService) -> None:
    campaign = await order_service.campaign()

    answer = await upload(order_service, [voucher_record(campaign) for _ in range(3)])

    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json().get("approval_id")) == ("queued", None)
    assert (await order_service.finished_batch(answer.json()["batch_id"]))["accepted"] == 3


async def test_a_batch_with_too_many_records_waits_until_another_approver_approves_it_once(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign) for _ in range(4)]

    answer = await order_service.http.post(
        "/v1/ipa/batches",
        content=csv_text(records),
        headers={**person(order_service, "omar", "ops"), "Content-Type": "text/csv"},
    )

    assert answer.status_code == 202, answer.text
    held = answer.json()
    batch_id, approval_id = held["batch_id"], held["approval_id"]
    assert held["status"] == "awaiting_approval"
    assert held["links"]["approval"] == f"/v1/approvals/{approval_id}"
    assert (await batch(order_service, batch_id))["status"] == "awaiting_approval"
    assert approval_id in await pending_ids(order_service.http, order_service.auth("auditor"), "ipa_batch")

    own = await decide(
        order_service.http, approval_id, "approve", person(order_service, "omar", "ops", "approver")
    )
    assert (own.status_code, own.json()["code"]) == (403, "maker_cannot_approve")
    assert (await batch(order_service, batch_id))["status"] == "awaiting_approval"

    approver = person(order_service, "pia", "approver")
    approved = await decide(order_service.http, approval_id, "approve", approver)
    again = await decide(order_service.http, approval_id, "approve", order_service.auth("admin"))

    assert approved.status_code == 200, approved.text
    assert approved.json()["request"]["rows"] == 4
    assert again.status_code == 409
    finished = await order_service.finished_batch(batch_id)
    assert (finished["status"], finished["accepted"]) == ("completed", 4)
    assert await audited(order_service.pool, approval_id) == [
        ("approval.requested", "ops:omar"),
        ("approval.approved", "approver:pia"),
    ]
    assert await announced(order_service.bootstrap, approval_id, decisions=1) == [
        ("approval.requested", None),
        ("approval.decided", "approved"),
    ]


async def test_a_batch_worth_too_much_that_is_rejected_is_never_processed(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    records = [voucher_record(campaign, amount="600.00") for _ in range(2)]

    answer = await upload(order_service, records)
    dry_run = await order_service.http.post(
        "/v1/ipa/batches", params={"mode": "dry_run"}, json={"records": records}, headers=order_service.auth()
    )
    approval_id, batch_id = answer.json()["approval_id"], answer.json()["batch_id"]
    rejected = await decide(
        order_service.http, approval_id, "reject", person(order_service, "pia", "approver"), reason="too much"
    )

    assert answer.json()["status"] == "awaiting_approval"
    assert "amounts totalling 1200.00" in rejected.json()["summary"]
    assert dry_run.json()["status"] == "queued"
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["result"] == {"batch_id": batch_id, "status": "declined"}
    declined = await batch(order_service, batch_id)
    assert (declined["status"], declined["accepted"], declined["orders"]["pending"]) == ("declined", 0, 0)
    rows = await order_service.pool.fetchval(
        "SELECT count(*) FROM ipa_batch_rows WHERE batch_id = $1", batch_id
    )
    assert rows == 0
    assert await audited(order_service.pool, approval_id) == [
        ("approval.requested", "ops:omar"),
        ("approval.rejected", "approver:pia"),
    ]
