"""Codes arrive sealed for this service: it opens them with its current or previous key, still reads
the clear version 1 events already on the topic, and dead-letters a code it cannot open."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from chassis.sealed_codes import CodeSealer, new_key_pair
from chassis.testing import produce, read_topic, wait_until
from contracts.envelope import Envelope
from contracts.topics import Topics
from contracts.vouchers import VoucherIssued, VoucherIssuedV1

from .conftest import request_for, voucher_for


def _sealed_voucher(order_id: uuid.UUID, code: str, public_key: str) -> VoucherIssued:
    code_id = uuid.uuid4()
    return VoucherIssued(
        order_id=order_id,
        campaign_id="camp-1",
        code_id=code_id,
        sealed_code=CodeSealer(public_key).seal(code, code_id),
        masked_code="****-****-" + code[-4:],
        face_value=Decimal("25.00"),
        currency="EUR",
    )


def _mailed(service: object, delivery_id: uuid.UUID) -> str:
    smtp = service.smtp  # type: ignore[attr-defined]
    [message] = [m for m in smtp.messages() if str(delivery_id) in m["Message-ID"]]
    return str(message.get_body(("plain",)).get_content())


async def test_a_sealed_code_is_opened_and_sent_to_its_recipient(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    row = await service.join(order_id, voucher=voucher_for(order_id, code="ORCH-SEAL-0001"))
    assert "ORCH-SEAL-0001" in _mailed(service, row["delivery_id"])


async def test_after_a_key_rotation_codes_sealed_under_either_key_are_sent(delivery_service):
    old_private, old_public = new_key_pair("k1")
    new_private, new_public = new_key_pair("k2")
    service = await delivery_service(
        ORCHARD_DELIVERY_SEAL_KEY=new_private, ORCHARD_DELIVERY_SEAL_PREVIOUS_KEY=old_private
    )
    before, after = uuid.uuid4(), uuid.uuid4()
    for order_id, code, public in (
        (before, "ORCH-OLDK-0001", old_public),
        (after, "ORCH-NEWK-0002", new_public),
    ):
        await service.publish(request_for(order_id))
        await service.publish(_sealed_voucher(order_id, code, public))
    sent_before = await service.wait_status(before, "sent")
    sent_after = await service.wait_status(after, "sent")
    assert "ORCH-OLDK-0001" in _mailed(service, sent_before["delivery_id"])
    assert "ORCH-NEWK-0002" in _mailed(service, sent_after["delivery_id"])


async def test_a_version_one_event_with_a_clear_code_still_on_the_topic_is_delivered(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    await service.publish(request_for(order_id))
    legacy = VoucherIssuedV1(
        order_id=order_id,
        campaign_id="camp-1",
        code_id=uuid.uuid4(),
        code="ORCH-LEGA-CY01",
        masked_code="****-****-CY01",
        face_value=Decimal("25.00"),
        currency="EUR",
    )
    env = Envelope.new(event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=legacy)
    assert env.schema_version == 1
    await produce(service.bootstrap, Topics.VOUCHER_ISSUED, [(str(order_id).encode(), env.to_bytes())])
    row = await service.wait_status(order_id, "sent")
    assert "ORCH-LEGA-CY01" in _mailed(service, row["delivery_id"])


async def test_a_code_sealed_for_another_key_is_dead_lettered_and_nothing_is_sent(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    _, stranger = new_key_pair("dev1")  # same key id as the dev key, another key pair
    await service.publish(request_for(order_id))
    sent = await service.publish(_sealed_voucher(order_id, "ORCH-LOST-0001", stranger))

    async def dead_lettered() -> bool:
        records = await read_topic(service.bootstrap, Topics.VOUCHER_ISSUED.dlq)
        return any(json.loads(r.value)["event_id"] == str(sent.event_id) for r in records)

    await wait_until(dead_lettered, what="the unopenable code to be dead-lettered", timeout=60)
    row = await service.delivery(order_id)
    assert row is not None
    assert row["status"] == "waiting"
    assert not row["has_voucher"]
