import uuid

from contracts.orders import OrderState
from contracts.values import Channel

from .conftest import request_for, settle, state_changed, voucher_for


async def test_voucher_is_emailed_once_with_text_and_html_parts_when_the_request_comes_first(
    delivery_service,
):
    service = await delivery_service()
    order_id = uuid.uuid4()

    row = await service.join(order_id, voucher=voucher_for(order_id, code="ORCH-AAAA-1111"))
    [message] = [m for m in service.smtp.messages() if str(row["delivery_id"]) in m["Message-ID"]]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "ORCH-AAAA-1111" in text
    assert "ORCH-AAAA-1111" in html
    assert row["booking_id"] in text
    assert "25.00 EUR" in message["Subject"]
    assert message["To"].endswith("<ann@example.com>")
    [succeeded] = await service.wait_events("delivery.succeeded", order_id, 1)
    assert succeeded["data"]["channel"] == "email"
    assert succeeded["data"]["attempt"] == 1
    [attempt] = await service.attempts(order_id)
    assert attempt["outcome"] == "succeeded"


async def test_voucher_is_sent_by_sms_when_the_code_arrives_before_the_request(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()

    await service.publish(voucher_for(order_id, code="ORCH-BBBB-2222"))
    await service.publish(request_for(order_id, channel=Channel.SMS, phone="+447700900123", locale="fr"))

    row = await service.wait_status(order_id, "sent")
    [message] = [
        m for m in service.provider.messages() if m["idempotency_key"].startswith(str(row["delivery_id"]))
    ]
    assert message["to"] == "+447700900123"
    assert message["channel"] == "sms"
    assert "ORCH-BBBB-2222" in message["body"]
    assert message["body"].startswith("Votre bon")


async def test_the_held_code_is_encrypted_at_rest(delivery_service):
    service = await delivery_service(ORCHARD_DELIVERY_EMAIL_WORKERS=0)
    order_id = uuid.uuid4()

    await service.publish(voucher_for(order_id, code="ORCH-SECRET-9999"))
    await service.publish(request_for(order_id))

    row = await service.wait_status(order_id, "queued")
    assert b"ORCH-SECRET-9999" not in bytes(row["code_ciphertext"])
    assert service.engine.vault.open(bytes(row["code_ciphertext"])).get_secret_value() == "ORCH-SECRET-9999"


async def test_an_order_cancelled_before_its_code_arrives_is_never_sent_and_its_code_is_dropped(
    delivery_service,
):
    service = await delivery_service()
    order_id = uuid.uuid4()

    await service.publish(request_for(order_id))
    await service.publish(state_changed(order_id, OrderState.CANCELLED, reason="eligibility"))
    await service.wait_status(order_id, "cancelled")
    await service.publish(voucher_for(order_id))

    async def voucher_recorded() -> bool:
        row = await service.delivery(order_id)
        return bool(row and row["has_voucher"])

    from chassis.testing import wait_until

    await wait_until(voucher_recorded, what="the voucher to be recorded")
    await settle()
    row = await service.delivery(order_id)
    assert row["status"] == "cancelled"
    assert row["code_ciphertext"] is None
    assert await service.attempts(order_id) == []
    assert not [m for m in service.smtp.messages() if str(row["delivery_id"]) in m["Message-ID"]]


async def test_an_order_cancelled_before_anything_else_arrives_is_never_sent(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()

    await service.publish(state_changed(order_id, OrderState.CANCELLED))
    await service.wait_status(order_id, "cancelled")
    await service.publish(voucher_for(order_id))
    await service.publish(request_for(order_id))

    async def both_recorded() -> bool:
        row = await service.delivery(order_id)
        return bool(row and row["has_voucher"] and row["has_request"])

    from chassis.testing import wait_until

    await wait_until(both_recorded, what="both halves to be recorded")
    await settle()
    row = await service.delivery(order_id)
    assert row["status"] == "cancelled"
    assert await service.attempts(order_id) == []


async def test_a_cancellation_during_a_failing_send_does_not_wait_for_it_and_stops_every_later_attempt(
    delivery_service,
):
    service = await delivery_service(provider_delay_s=1.5, ORCHARD_DELIVERY_PROVIDER_TIMEOUT=5.0)
    order_id = uuid.uuid4()
    await service.publish(request_for(order_id, channel=Channel.SMS, phone="+15005550408"))
    await service.publish(voucher_for(order_id))

    async def sending() -> bool:
        return len(await service.attempts(order_id)) == 1

    from chassis.testing import wait_until

    await wait_until(sending, interval=0.02, what="the first attempt to start")
    await service.publish(state_changed(order_id, OrderState.CANCELLED))

    # The cancellation commits while the provider still holds the send (no row lock to wait for) ...
    row = await service.wait_status(order_id, "cancelled", timeout=1.0)
    assert [a["outcome"] for a in await service.attempts(order_id)] == ["in_flight"]

    # ... and the failure recorded afterwards schedules nothing: no retry, no later attempt.
    async def recorded() -> bool:
        return [a["outcome"] for a in await service.attempts(order_id)] == ["failed"]

    await wait_until(recorded, what="the failed attempt to be recorded")
    await settle(1.0)
    row = await service.delivery(order_id)
    assert (row["status"], row["next_attempt_at"], row["lease_until"]) == ("cancelled", None, None)
    attempts = await service.attempts(order_id)
    assert [a["outcome"] for a in attempts] == ["failed"]
    assert attempts[0]["reason_code"] == "provider_error"
    assert row["code_ciphertext"] is None
    assert not [m for m in service.provider.messages() if m["to"] == "+15005550408"]


async def test_a_requested_message_goes_to_the_members_latest_contact_once_and_publishes_no_order_event(
    delivery_service,
):
    from contracts.delivery import DeliveryMessageRequested

    service = await delivery_service()
    order_id, message_id = uuid.uuid4(), uuid.uuid4()
    await service.publish(request_for(order_id, channel=Channel.SMS, phone="+447700900321"))
    await service.wait_status(order_id, "waiting")
    message = DeliveryMessageRequested(
        message_id=message_id,
        member_id="m-1",
        channel=Channel.SMS,
        template="offer_one_time_code",
        params={"code": "482913", "offer_title": "Coffee at Bean & Co", "expires_in_minutes": "10"},
    )
    await service.publish(message)
    await service.publish(message)

    async def sent() -> bool:
        row = await service.pool.fetchrow("SELECT status FROM deliveries WHERE message_id = $1", message_id)
        return row is not None and row["status"] == "sent"

    from chassis.testing import wait_until

    await wait_until(sent, what="the one-time code message")
    [saved] = [m for m in service.provider.messages() if "482913" in m["body"]]
    assert saved["to"] == "+447700900321"
    assert "Coffee at Bean & Co" in saved["body"]
    row = await service.pool.fetchrow("SELECT * FROM deliveries WHERE message_id = $1", message_id)
    assert b"482913" not in bytes(row["code_ciphertext"])
    assert row["order_id"] is None


async def test_a_message_with_an_unknown_template_fails_for_good(delivery_service):
    from contracts.delivery import DeliveryMessageRequested

    service = await delivery_service()
    message_id = uuid.uuid4()
    await service.publish(
        DeliveryMessageRequested(
            message_id=message_id,
            member_id="m-unknown",
            channel=Channel.EMAIL,
            template="no_such_template",
            email="zoe@example.com",
        )
    )

    async def failed() -> bool:
        row = await service.pool.fetchrow("SELECT status FROM deliveries WHERE message_id = $1", message_id)
        return row is not None and row["status"] == "failed"

    from chassis.testing import wait_until

    await wait_until(failed, what="the message to fail")
    row = await service.pool.fetchrow("SELECT * FROM deliveries WHERE message_id = $1", message_id)
    assert row["last_reason_code"] == "template_error"
