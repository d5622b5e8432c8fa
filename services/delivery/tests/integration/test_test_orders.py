"""A UAT test order's voucher goes out through the normal channels, marked as a test."""

from __future__ import annotations

import uuid

from contracts.values import Channel

from .conftest import request_for, voucher_for


async def test_a_test_orders_voucher_is_sent_once_through_its_channel_marked_as_a_test(delivery_service):
    service = await delivery_service()
    test_order, sms_order, real_order = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    await service.publish(request_for(test_order).model_copy(update={"test": True}))
    await service.publish(voucher_for(test_order, code="ORCH-TEST-0001"))
    await service.publish(
        request_for(sms_order, channel=Channel.SMS, phone="+447700900123").model_copy(update={"test": True})
    )
    await service.publish(voucher_for(sms_order, code="ORCH-TEST-0002"))
    await service.publish(request_for(real_order))
    await service.publish(voucher_for(real_order, code="ORCH-REAL-0003"))

    test_row = await service.wait_status(test_order, "sent")
    sms_row = await service.wait_status(sms_order, "sent")
    real_row = await service.wait_status(real_order, "sent")
    [email] = [m for m in service.smtp.messages() if str(test_row["delivery_id"]) in m["Message-ID"]]
    [real] = [m for m in service.smtp.messages() if str(real_row["delivery_id"]) in m["Message-ID"]]
    [sms] = [
        m for m in service.provider.messages() if m["idempotency_key"].startswith(str(sms_row["delivery_id"]))
    ]
    assert email["Subject"].startswith("[TEST] ")
    assert email.get_body(("plain",)).get_content().startswith("[TEST] ")
    assert "ORCH-TEST-0001" in email.get_body(("plain",)).get_content()
    assert sms["body"].startswith("[TEST] ")
    assert "ORCH-TEST-0002" in sms["body"]
    assert not real["Subject"].startswith("[TEST]")
    assert (test_row["test"], real_row["test"]) == (True, False)
    await service.wait_events("delivery.succeeded", test_order, 1)
