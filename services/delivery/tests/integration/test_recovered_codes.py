"""A recovered code leaves delivery: a fresh code for the same order is sent in a new round and the old
ciphertext is dropped; a code its order no longer holds is never sent again, not even by a resend."""

from __future__ import annotations

import uuid
from decimal import Decimal

from chassis.testing import wait_until
from contracts.vouchers import CodeStatus, VoucherIssued, VoucherStatusChanged

from .conftest import request_for, voucher_for


def _sent_codes(service, delivery_id: uuid.UUID) -> list[str]:
    return [
        str(m.get_body(("plain",)).get_content())
        for m in service.smtp.messages()
        if str(delivery_id) in m["Message-ID"]
    ]


def _left(voucher: VoucherIssued, status: CodeStatus) -> VoucherStatusChanged:
    return VoucherStatusChanged(
        code_id=voucher.code_id,
        campaign_id=voucher.campaign_id,
        order_id=voucher.order_id,
        status=status,
        previous_status=CodeStatus.ISSUED,
        reason="member says it was stolen",
        remaining_value=Decimal("25.00"),
    )


async def test_a_fresh_code_for_a_delivered_order_is_sent_in_a_new_round_and_the_old_one_dropped(
    delivery_service,
):
    service = await delivery_service()
    order_id = uuid.uuid4()
    old = voucher_for(order_id, code="ORCH-OLDC-0001")
    first = await service.join(order_id, voucher=old)

    await service.publish(_left(old, CodeStatus.VOID))
    fresh = voucher_for(order_id, code="ORCH-NEWC-0002")
    await service.publish(fresh)

    async def second_round_sent() -> bool:
        row = await service.delivery(order_id)
        return row is not None and row["send_round"] == first["send_round"] + 1 and row["status"] == "sent"

    await wait_until(second_round_sent, what="the fresh code to be sent in a new round")
    row = await service.delivery(order_id)
    assert row["code_id"] == fresh.code_id
    assert row["masked_code"] == "****-****-0002"
    texts = _sent_codes(service, row["delivery_id"])
    assert len(texts) == 2
    assert "ORCH-OLDC-0001" in texts[0] or "ORCH-OLDC-0001" in texts[1]
    assert sum("ORCH-NEWC-0002" in t for t in texts) == 1
    held = service.engine.vault.open(bytes(row["code_ciphertext"])).get_secret_value()
    assert held == "ORCH-NEWC-0002"


async def test_a_code_its_order_no_longer_holds_is_dropped_and_a_resend_is_refused(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    voucher = voucher_for(order_id, code="ORCH-GONE-0001")
    row = await service.join(order_id, voucher=voucher)

    await service.publish(_left(voucher, CodeStatus.RECOVERED))

    async def dropped() -> bool:
        current = await service.delivery(order_id)
        return current is not None and current["code_ciphertext"] is None

    await wait_until(dropped, what="the recovered code's ciphertext to be dropped")
    resend = await service.http.post(
        f"/v1/deliveries/{row['delivery_id']}/resend", headers=service.token("ops")
    )
    assert resend.status_code == 409, resend.text
    assert len(_sent_codes(service, row["delivery_id"])) == 1


async def test_a_status_of_another_code_leaves_the_held_code_alone(delivery_service):
    service = await delivery_service(ORCHARD_DELIVERY_EMAIL_WORKERS=0)
    order_id = uuid.uuid4()
    await service.publish(voucher_for(order_id, code="ORCH-KEEP-0001"))
    await service.publish(request_for(order_id))
    await service.wait_status(order_id, "queued")
    stranger = voucher_for(order_id, code="ORCH-ELSE-0002")
    sent = await service.publish(_left(stranger, CodeStatus.VOID))

    async def handled() -> bool:
        return bool(
            await service.pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", sent.event_id)
        )

    await wait_until(handled, what="the other code's status to be handled")
    row = await service.delivery(order_id)
    assert row["code_ciphertext"] is not None
