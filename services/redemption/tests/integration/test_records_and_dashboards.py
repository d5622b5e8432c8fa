"""Voucher redemptions and expiries from the voucher service's topics become records, published on
`redemption.recorded`, and dashboards filter and aggregate them; partners see only their own."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from chassis.testing import produce, read_topic, wait_until
from contracts.envelope import Envelope
from contracts.redemption import RedemptionKind, RedemptionStatus
from contracts.topics import Topics
from contracts.vouchers import CodeStatus, VoucherRedeemed, VoucherStatusChanged
from services.redemption.records.domain import Record
from services.redemption.records.handlers import expiry_record_id
from services.redemption.records.repository import write_record
from services.redemption.tests.integration.conftest import RunningService, publish

MIGRATION = Path(__file__).parents[2] / "migrations" / "0008_daily_currency.sql"


def _redeemed(
    partner: str, *, amount: str, remaining: str, channel: str, test: bool = False, currency: str = "EUR"
) -> VoucherRedeemed:
    return VoucherRedeemed(
        code_id=uuid.uuid4(),
        campaign_id="camp-1",
        order_id=uuid.uuid4(),
        member_id="m-1",
        partner_id=partner,
        redemption_id=uuid.uuid4(),
        amount=Decimal(amount),
        remaining_value=Decimal(remaining),
        currency=currency,
        channel=channel,
        location="Store 4",
        partial=Decimal(remaining) > 0,
        test=test,
    )


async def _records(service: RunningService, role: str, sub: str, **params: Any) -> dict[str, Any]:
    response = await service.client.get(
        "/v1/redemption-records", params=params, headers=service.auth(role, sub)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_voucher_redemptions_partial_ones_and_expiries_are_recorded_and_aggregated(
    service: RunningService,
) -> None:
    partner, other = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    full = _redeemed(partner, amount="20.00", remaining="0", channel="in_store")
    partial = _redeemed(partner, amount="5.00", remaining="15.00", channel="online")
    theirs = _redeemed(other, amount="7.00", remaining="0", channel="online")
    uat = _redeemed(partner, amount="1.00", remaining="0", channel="online", test=True)
    for event in (full, partial, theirs, uat):
        await publish(service.bootstrap, Topics.VOUCHER_REDEEMED, str(event.code_id), event, "voucher")
    expired_code = uuid.uuid4()
    expiry = VoucherStatusChanged(
        code_id=expired_code,
        campaign_id="camp-1",
        status=CodeStatus.EXPIRED,
        previous_status=CodeStatus.ISSUED,
        remaining_value=Decimal("10.00"),
    )
    await publish(service.bootstrap, Topics.VOUCHER_STATUS_CHANGED, str(expired_code), expiry, "voucher")
    # The same expiry announced twice (a new event) is still one record.
    await publish(service.bootstrap, Topics.VOUCHER_STATUS_CHANGED, str(expired_code), expiry, "voucher")

    async def recorded() -> bool:
        async with service.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) = 4 FROM redemption_records WHERE record_id = ANY($1::uuid[])",
                    [
                        full.redemption_id,
                        partial.redemption_id,
                        theirs.redemption_id,
                        expiry_record_id(expired_code),
                    ],
                )
            )

    await wait_until(recorded, timeout=60, interval=0.3, what="voucher records")

    mine = await _records(service, "partner", partner)
    assert {r["record_id"] for r in mine["items"]} == {str(full.redemption_id), str(partial.redemption_id)}
    partial_row = next(r for r in mine["items"] if r["record_id"] == str(partial.redemption_id))
    assert partial_row["partial"] is True
    assert partial_row["amount"] == "5.00"
    assert partial_row["validation_method"] == "voucher_code"
    assert {c["value"]: c["records"] for c in mine["aggregates"]["per_channel"]} == {
        "in_store": 1,
        "online": 1,
    }
    assert mine["aggregates"]["per_partner"] == [
        {
            "value": partner,
            "records": 2,
            "amount": "25.00",
            "amounts": [{"currency": "EUR", "amount": "25.00"}],
            "points": "0",
        }
    ]
    forbidden = await service.client.get(
        "/v1/redemption-records", params={"partner_id": other}, headers=service.auth("partner", partner)
    )
    assert forbidden.status_code == 403

    ops = await _records(service, "ops", "olga", kind="voucher", status="expired")
    assert [r["record_id"] for r in ops["items"]] == [str(expiry_record_id(expired_code))]
    assert ops["aggregates"]["total"]["records"] == 1
    online = await _records(service, "ops", "olga", channel="online", partner_id=other)
    assert online["aggregates"]["total"]["records"] == 1
    day = online["aggregates"]["per_day"][0]["value"]
    assert (await _records(service, "ops", "olga", partner_id=other, **{"from": day, "to": day}))["items"]

    async def published_ids() -> set[str]:
        records = await read_topic(service.bootstrap, Topics.REDEMPTION_RECORDED)
        return {json.loads(r.value)["data"]["record_id"] for r in records}

    async def both_published() -> bool:  # the relay publishes after the records are committed
        return {str(full.redemption_id), str(partial.redemption_id)} <= await published_ids()

    await wait_until(both_published, what="both redemptions' records published")
    assert str(uat.redemption_id) not in await published_ids()


async def test_an_invalid_voucher_event_is_dead_lettered_and_records_nothing(service: RunningService) -> None:
    bad = Envelope.new(
        event_type=Topics.VOUCHER_REDEEMED,
        producer="voucher",
        data=_redeemed("p-x", amount="1.00", remaining="0", channel="online"),
    ).to_json_dict()
    bad["data"]["amount"] = "-3"
    marker = str(uuid.uuid4())
    bad["data"]["redemption_id"] = marker
    await produce(service.bootstrap, Topics.VOUCHER_REDEEMED, [(b"k", json.dumps(bad).encode())])

    async def dead() -> bool:
        return any(
            marker.encode() in (r.value or b"")
            for r in await read_topic(service.bootstrap, Topics.VOUCHER_REDEEMED.dlq)
        )

    await wait_until(dead, timeout=60, interval=0.5, what="dead letter")
    async with service.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM redemption_records WHERE record_id = $1", uuid.UUID(marker)
            )
            == 0
        )


async def test_dashboard_sums_are_per_currency_never_across_currencies(service: RunningService) -> None:
    partner = f"p-{uuid.uuid4().hex[:6]}"
    events = [
        _redeemed(partner, amount="20.00", remaining="0", channel="online"),
        _redeemed(partner, amount="5.50", remaining="0", channel="online"),
        _redeemed(partner, amount="2500", remaining="0", channel="online", currency="JPY"),
        _redeemed(partner, amount="1.250", remaining="0", channel="in_store", currency="KWD"),
    ]
    for event in events:
        await publish(service.bootstrap, Topics.VOUCHER_REDEEMED, str(event.code_id), event, "voucher")

    async def recorded() -> bool:
        async with service.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) = 4 FROM redemption_records WHERE partner_id = $1", partner
                )
            )

    await wait_until(recorded, timeout=60, interval=0.3, what="the partner's four records")
    aggregates = (await _records(service, "finance", "fiona", partner_id=partner))["aggregates"]

    assert aggregates["total"]["amounts"] == [
        {"currency": "EUR", "amount": "25.50"},
        {"currency": "JPY", "amount": "2500"},
        {"currency": "KWD", "amount": "1.250"},
    ]
    [row] = aggregates["per_partner"]
    assert row["amount"] is None
    assert row["amounts"] == aggregates["total"]["amounts"]
    per_channel = {r["value"]: r for r in aggregates["per_channel"]}
    assert per_channel["in_store"]["amount"] == "1.250"
    assert [m["currency"] for m in per_channel["online"]["amounts"]] == ["EUR", "JPY"]


async def test_daily_deltas_from_before_per_currency_sums_take_their_buckets_currency_when_unmixed(
    service: RunningService,
) -> None:
    single, mixed = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)

    def record(partner: str, amount: str, currency: str) -> Record:
        return Record(
            record_id=uuid.uuid4(),
            kind=RedemptionKind.VOUCHER,
            status=RedemptionStatus.SUCCESSFUL,
            redeemed_at=now,
            partner_id=partner,
            channel="online",
            amount=Decimal(amount),
            currency=currency,
        )

    async with service.pool.acquire() as conn, conn.transaction():
        for r in (record(single, "10.00", "EUR"), record(mixed, "10.00", "EUR"), record(mixed, "500", "JPY")):
            await write_record(conn, r)
        # as the deltas were written before they kept a currency
        await conn.execute(
            "UPDATE redemption_daily SET currency = '' WHERE partner_id = ANY($1::text[])", [single, mixed]
        )
        backfill = MIGRATION.read_text().split(";", 1)[1]
        await conn.execute(backfill)
        currencies = {
            (r["partner_id"], r["currency"])
            for r in await conn.fetch(
                "SELECT partner_id, currency FROM redemption_daily WHERE partner_id = ANY($1::text[])",
                [single, mixed],
            )
        }

    assert currencies == {(single, "EUR"), (mixed, "")}
