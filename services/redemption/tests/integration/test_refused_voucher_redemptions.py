"""Refused partner redemptions, published by the voucher service on `voucher.redemption_refused`,
become failed voucher records with their reason."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from chassis.testing import wait_until
from contracts.topics import Topics
from contracts.vouchers import VoucherRedemptionRefused
from services.redemption.tests.integration.conftest import RunningService, publish


def _refused(partner: str, reason: str, **fields: Any) -> VoucherRedemptionRefused:
    return VoucherRedemptionRefused(
        attempt_id=uuid.uuid4(), partner_id=partner, reason=reason, channel="in_store", **fields
    )


async def _failed(service: RunningService, role: str, sub: str) -> list[dict[str, Any]]:
    response = await service.client.get(
        "/v1/redemption-records", params={"status": "failed"}, headers=service.auth(role, sub)
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_refused_voucher_redemptions_show_as_failed_records_with_their_reason(
    service: RunningService,
) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    code_id = uuid.uuid4()
    expired = _refused(
        partner,
        "code_expired",
        code_id=code_id,
        campaign_id="camp-1",
        order_id=uuid.uuid4(),
        member_id="m-7",
        amount=Decimal("5.00"),
        currency="EUR",
        location="Till 2",
    )
    refusals = [
        expired,
        _refused(partner, "unknown_code"),
        _refused(partner, "code_flagged", code_id=uuid.uuid4(), campaign_id="camp-1"),
        _refused(partner, "code_fully_redeemed", code_id=code_id, campaign_id="camp-1"),
        _refused(partner, "partner_not_allowed", code_id=uuid.uuid4(), campaign_id="camp-2"),
    ]
    uat = _refused(partner, "live_code_in_test_mode", code_id=uuid.uuid4(), test=True)
    for event in (*refusals, uat):
        key = str(event.code_id or event.partner_id)
        await publish(service.bootstrap, Topics.VOUCHER_REDEMPTION_REFUSED, key, event, "voucher")

    async def recorded() -> bool:
        # This partner's own records: the shared broker also carries other tests' refusals.
        return len(await _failed(service, "partner", partner)) >= len(refusals)

    await wait_until(recorded, timeout=60, interval=0.3, what="refusals recorded")

    failed = {r["record_id"]: r for r in await _failed(service, "partner", partner)}
    assert {rid: r["reason"] for rid, r in failed.items()} == {str(e.attempt_id): e.reason for e in refusals}
    row = failed[str(expired.attempt_id)]
    assert (row["kind"], row["status"], row["validation_method"]) == ("voucher", "failed", "voucher_code")
    assert (row["code_id"], row["amount"], row["currency"], row["location"]) == (
        str(code_id),
        "5.00",
        "EUR",
        "Till 2",
    )
    assert str(uat.attempt_id) not in failed
