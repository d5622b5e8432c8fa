import uuid
from dataclasses import dataclass

import httpx

from chassis.testing import wait_until
from contracts.values import Channel
from services.delivery import repository
from services.delivery.channels import Outgoing, SendResult
from services.delivery.sending import message_id
from services.delivery.templates import Rendered

from .conftest import DeliveryService, request_for, voucher_for


async def _tell_provider(service, to: str, mode: str, times: int) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{service.provider.base_url}/_control/failures", json={"to": to, "mode": mode, "times": times}
        )
        answer.raise_for_status()


async def test_transient_failures_are_retried_with_backoff_until_the_provider_accepts(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    await _tell_provider(service, "+447700900201", "server_error", 1)
    await _tell_provider(service, "+447700900201", "rate_limited", 1)
    await service.join(order_id, channel=Channel.SMS, phone="+447700900201")

    # the control endpoint keeps one rule per number: the 429 replaced the 500
    attempts = await service.attempts(order_id)
    assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["reason_code"] == "rate_limited"
    assert attempts[0]["retryable"] is True
    assert attempts[1]["started_at"] > attempts[0]["finished_at"]
    [failed] = await service.wait_events("delivery.failed", order_id, 1)
    assert failed["data"]["retryable"] is True
    assert failed["data"]["final"] is False
    assert len([m for m in service.provider.messages() if m["to"] == "+447700900201"]) == 1


async def test_a_transient_failure_that_never_clears_becomes_final_after_the_attempt_limit(delivery_service):
    service = await delivery_service(ORCHARD_DELIVERY_MAX_ATTEMPTS=3)
    order_id = uuid.uuid4()
    row = await service.join(order_id, "failed", channel=Channel.SMS, phone="+15005550500")

    events = await service.wait_events("delivery.failed", order_id, 3)
    assert [(e["data"]["attempt"], e["data"]["final"]) for e in events] == [(1, False), (2, False), (3, True)]
    assert all(e["data"]["reason_code"] == "provider_error" and e["data"]["retryable"] for e in events)
    assert row["last_reason_code"] == "provider_error"


async def test_a_provider_timeout_is_a_transient_failure(delivery_service):
    service = await delivery_service(
        ORCHARD_DELIVERY_MAX_ATTEMPTS=2, ORCHARD_DELIVERY_PROVIDER_TIMEOUT=0.3, provider_delay_s=1
    )
    order_id = uuid.uuid4()
    await service.join(order_id, "failed", channel=Channel.SMS, phone="+15005550408")

    attempts = await service.attempts(order_id)
    assert [(a["reason_code"], a["retryable"]) for a in attempts] == [("provider_timeout", True)] * 2


async def test_an_invalid_number_stops_at_once_with_a_final_failure(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    row = await service.join(order_id, "failed", channel=Channel.SMS, phone="+15005550001")

    [failed] = await service.wait_events("delivery.failed", order_id, 1)
    assert failed["data"]["reason_code"] == "invalid_number"
    assert failed["data"]["retryable"] is False
    assert failed["data"]["final"] is True
    assert len(await service.attempts(order_id)) == 1
    assert row["fallback_trail"] == "[]"


async def test_a_hard_bounce_stops_at_once(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    await service.join(order_id, "failed", email="bounce.ann@example.com")

    [attempt] = await service.attempts(order_id)
    assert attempt["reason_code"] == "bounced"
    assert attempt["provider_response"].startswith("SMTP 550")


async def test_an_unreachable_whatsapp_account_falls_back_to_sms_when_the_campaign_allows_it(
    delivery_service,
):
    service = await delivery_service()
    answer = await service.http.put(
        "/v1/delivery/campaigns/camp-fallback", json={"fallback_allowed": True}, headers=service.token("ops")
    )
    assert answer.status_code == 200
    order_id = uuid.uuid4()
    await service.publish(
        request_for(order_id, channel=Channel.WHATSAPP, phone="+15005550002", campaign_id="camp-fallback")
    )
    await service.publish(voucher_for(order_id, campaign_id="camp-fallback"))

    row = await service.wait_status(order_id, "sent")

    attempts = await service.attempts(order_id)
    assert [(a["channel"], a["outcome"], a["reason_code"]) for a in attempts] == [
        ("whatsapp", "failed", "whatsapp_unreachable"),
        ("sms", "succeeded", None),
    ]
    [step] = __import__("json").loads(row["fallback_trail"])
    assert (step["from"], step["to"], step["reason_code"]) == ("whatsapp", "sms", "whatsapp_unreachable")
    [failed] = await service.wait_events("delivery.failed", order_id, 1)
    assert failed["data"]["final"] is False
    [succeeded] = await service.wait_events("delivery.succeeded", order_id, 1)
    assert succeeded["data"]["channel"] == "sms"


async def test_without_the_campaigns_consent_a_permanent_failure_does_not_fall_back(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    await service.join(order_id, "failed", channel=Channel.WHATSAPP, phone="+15005550002")

    assert [a["channel"] for a in await service.attempts(order_id)] == ["whatsapp"]


async def test_an_attempt_cut_off_by_a_crash_is_flagged_unknown_and_its_retry_is_not_sent_twice(
    delivery_service,
):
    service, lapsed = await _lapsed_sms(delivery_service, "+447700900777")
    await _send_again(service, lapsed)

    attempts = await service.attempts(lapsed.order_id)
    assert [(a["outcome"], a["idempotency_key"]) for a in attempts] == [
        ("unknown", lapsed.key),
        ("succeeded", lapsed.key),
    ]
    assert attempts[1]["provider_message_id"] == lapsed.sent.provider_message_id
    assert len([m for m in service.provider.messages() if m["to"] == "+447700900777"]) == 1


@dataclass(frozen=True)
class Lapsed:
    """An SMS delivery whose attempt was sent and never recorded: its worker died or froze."""

    order_id: uuid.UUID
    delivery_id: uuid.UUID
    key: str
    """The attempt's idempotency key."""
    sent: SendResult


async def _lapsed_sms(delivery_service, phone: str) -> tuple[DeliveryService, Lapsed]:
    """A service whose SMS rounds the test runs itself and whose leases last half a second, and one of
    its deliveries a worker claimed and the provider took, then the worker died or froze past its lease
    before recording the outcome: the recovery job flags the attempt `unknown` and queues the delivery
    again."""
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0, ORCHARD_DELIVERY_LEASE=0.5)
    order_id = uuid.uuid4()
    row = await service.join(order_id, "queued", channel=Channel.SMS, phone=phone)
    async with service.pool.acquire() as conn:
        [claimed] = await repository.claim_due(conn, Channel.SMS, lease_s=0.5)
    key = repository.idempotency_key(row["delivery_id"], claimed["send_round"], "sms")
    outgoing = Outgoing(
        Channel.SMS, phone, "Ann", Rendered("code ORCH"), message_id(row["delivery_id"], 1, "sms", "x")
    )
    result = await service.engine.senders[Channel.SMS].send(outgoing, idempotency_key=key)
    assert result.ok

    async def flagged() -> bool:
        attempts = await service.attempts(order_id)
        return bool(attempts) and attempts[0]["outcome"] == "unknown"

    await wait_until(flagged, what="the recovery job to flag the attempt")
    return service, Lapsed(order_id, row["delivery_id"], key, result)


async def _send_again(service: DeliveryService, lapsed: Lapsed) -> None:
    """One SMS round sends the lapsed delivery again."""
    assert await service.engine.run_once(Channel.SMS)
    await service.wait_status(lapsed.order_id, "sent")


async def test_a_frozen_worker_recording_its_success_after_the_resend_records_a_repeat_not_a_second_success(
    delivery_service,
):
    service, lapsed = await _lapsed_sms(delivery_service, "+447700900778")
    await _send_again(service, lapsed)

    async with service.pool.acquire() as conn, conn.transaction():
        assert await repository.record_success(conn, lapsed.delivery_id, 1, lapsed.sent) is False

    attempts = await service.attempts(lapsed.order_id)
    assert [a["outcome"] for a in attempts] == ["repeat", "succeeded"]
    assert (
        attempts[0]["provider_message_id"]
        == attempts[1]["provider_message_id"]
        == lapsed.sent.provider_message_id
    )
    assert (await service.delivery(lapsed.order_id))["status"] == "sent"


async def test_a_frozen_worker_recording_its_success_first_sends_the_delivery_and_the_resend_is_a_repeat(
    delivery_service,
):
    service, lapsed = await _lapsed_sms(delivery_service, "+447700900779")
    async with service.pool.acquire() as conn:
        [reclaimed] = await repository.claim_due(conn, Channel.SMS, lease_s=5)  # another worker, attempt 2
        async with conn.transaction():
            assert await repository.record_success(conn, lapsed.delivery_id, 1, lapsed.sent) is True
    row = await service.wait_status(lapsed.order_id, "sent")
    assert row["lease_until"] is None

    # the other worker's send of the same message (same key) comes back as the provider's repeat
    async with service.pool.acquire() as conn, conn.transaction():
        assert (
            await repository.record_success(conn, lapsed.delivery_id, reclaimed["attempts"], lapsed.sent)
            is False
        )
    attempts = await service.attempts(lapsed.order_id)
    assert [a["outcome"] for a in attempts] == ["succeeded", "repeat"]
    assert (await service.delivery(lapsed.order_id))["status"] == "sent"
    assert len([m for m in service.provider.messages() if m["to"] == "+447700900779"]) == 1
