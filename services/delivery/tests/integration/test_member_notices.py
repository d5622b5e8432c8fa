"""Member notifications against the real broker, database and local sinks: each kind gives exactly one
message, an opt-out suppresses it, and the member's preferred channel carries it."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

from chassis.testing import produce, wait_until
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope, EventData
from contracts.members import MemberUpserted, NotificationKind
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import for_payload
from contracts.values import Channel
from contracts.vouchers import CodeStatus, VoucherStatusChanged
from contracts.wallet import Direction, EntryType, WalletTransactionRecorded
from services.delivery.members.notices import notice_id

from .conftest import DeliveryService, request_for, voucher_for


async def _member(service: DeliveryService, **details: Any) -> str:
    member_id = f"m-{uuid.uuid4().hex[:12]}"
    entry = {"email": f"{member_id}@example.com", **details}
    await service.publish(MemberUpserted(member_id=member_id, name="Kim", **entry))

    async def listed() -> bool:
        return bool(
            await service.pool.fetchval("SELECT listed FROM member_contacts WHERE member_id = $1", member_id)
        )

    await wait_until(listed, timeout=30, what=f"{member_id} in the directory")
    return member_id


def _mails(service: DeliveryService, member_id: str) -> list[Any]:
    return [m for m in service.smtp.messages() if f"{member_id}@example.com" in str(m["To"])]


async def _one_mail(service: DeliveryService, member_id: str) -> Any:
    await wait_until(
        lambda: _async(bool(_mails(service, member_id))), timeout=30, what=f"a message to {member_id}"
    )
    (mail,) = _mails(service, member_id)
    return mail


async def _async(value: bool) -> bool:
    return value


async def _handled(service: DeliveryService, consumer: str, env: Envelope[Any]) -> None:
    async def done() -> bool:
        found = await service.pool.fetchval(
            "SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2", consumer, env.event_id
        )
        return found is not None

    await wait_until(done, timeout=30, what=f"{consumer} to handle {env.event_id}")


async def _publish_twice(service: DeliveryService, data: EventData) -> Envelope[Any]:
    """The same event delivered twice, as at-least-once consumption may."""
    spec = for_payload(data)
    env = Envelope.new(event_type=spec.name, producer="test", data=data)
    key = spec.key_of(data).encode()
    await produce(service.bootstrap, spec.name, [(key, env.to_bytes()), (key, env.to_bytes())])
    return env


def _credit(member_id: str, points: int = 250) -> WalletTransactionRecorded:
    return WalletTransactionRecorded(
        entry_id=uuid.uuid4(),
        member_id=member_id,
        entry_type=EntryType.MILESTONE_AWARD,
        direction=Direction.CREDIT,
        amount=points,
        balance_after=points + 1000,
        idempotency_key=f"award:{uuid.uuid4()}",
    )


def _order_change(member_id: str, state: OrderState, status: FulfilmentStatus | None) -> OrderStateChanged:
    order_id = uuid.uuid4()
    return OrderStateChanged(
        order_id=order_id,
        booking_id=f"BK-{order_id.hex[:10].upper()}",
        member_id=member_id,
        campaign_id="camp-1",
        source=OrderSource.IPA,
        state=state,
        previous_state=OrderState.PENDING if state is not OrderState.PENDING else None,
        fulfilment_status=status,
        reason="policy change" if state is OrderState.CANCELLED else "out_of_stock",
    )


async def test_credited_points_give_exactly_one_message_even_when_the_event_comes_twice(delivery_service):
    service = await delivery_service()
    member_id = await _member(service)

    env = await _publish_twice(service, _credit(member_id, 250))

    await _handled(service, "member-notices-wallet", env)
    mail = await _one_mail(service, member_id)
    assert "250 points" in mail["Subject"]
    assert "1250 points" in mail.get_body(preferencelist=("plain",)).get_content()


async def test_an_opted_out_member_gets_no_message_of_that_kind_but_still_gets_others(delivery_service):
    service = await delivery_service()
    member_id = await _member(service, opted_out=[NotificationKind.POINTS_CREDITED])

    credited = await service.publish(_credit(member_id))
    await _handled(service, "member-notices-wallet", credited)
    cancelled = _order_change(member_id, OrderState.CANCELLED, None)
    await service.publish(cancelled)

    mail = await _one_mail(service, member_id)
    assert cancelled.booking_id in mail["Subject"]
    skipped = notice_id(NotificationKind.POINTS_CREDITED, credited.data.entry_id)
    assert await service.pool.fetchval("SELECT 1 FROM deliveries WHERE message_id = $1", skipped) is None


async def test_a_cancelled_order_is_told_by_the_preferred_channel(delivery_service):
    service = await delivery_service()
    member_id = await _member(service, phone="+447700900555", preferred_channel=Channel.SMS)
    cancelled = _order_change(member_id, OrderState.CANCELLED, None)

    await _publish_twice(service, cancelled)

    def texts() -> list[dict[str, Any]]:
        return [m for m in service.provider.messages() if m.get("to") == "+447700900555"]

    await wait_until(lambda: _async(bool(texts())), timeout=30, what="the cancellation by SMS")
    (text,) = texts()
    assert cancelled.booking_id in text["body"]
    assert _mails(service, member_id) == []


async def test_an_order_put_on_hold_gives_one_message(delivery_service):
    service = await delivery_service()
    member_id = await _member(service)
    held = _order_change(member_id, OrderState.PENDING, FulfilmentStatus.ON_HOLD)
    delivering = _order_change(member_id, OrderState.PENDING, FulfilmentStatus.DELIVERING)

    await service.publish(delivering)
    await service.publish(held)

    mail = await _one_mail(service, member_id)
    assert "on hold" in mail["Subject"]
    assert held.booking_id in mail["Subject"]


async def test_an_extended_expiry_is_told_once_with_the_masked_code_never_the_code(delivery_service):
    service = await delivery_service()
    member_id = await _member(service)
    order_id = uuid.uuid4()
    request = request_for(order_id, email=f"{member_id}@example.com").model_copy(
        update={"member_id": member_id}
    )
    voucher = voucher_for(order_id, code="ORCH-EXTN-0001")
    await service.publish(request)
    await service.publish(voucher)
    await service.wait_status(order_id, "sent")
    assert voucher.expires_at is not None
    later = (voucher.expires_at + timedelta(days=30)).astimezone(UTC)
    extended = VoucherStatusChanged(
        code_id=voucher.code_id,
        campaign_id="camp-1",
        order_id=order_id,
        status=CodeStatus.ISSUED,
        previous_status=CodeStatus.ISSUED,
        reason="goodwill",
        expires_at=later,
        remaining_value=voucher.face_value,
    )

    first = await service.publish(extended)
    await _handled(service, "member-notices-vouchers", first)
    again = await service.publish(extended)
    await _handled(service, "member-notices-vouchers", again)

    async def two_mails() -> bool:
        return len(_mails(service, member_id)) >= 2

    await wait_until(two_mails, timeout=30, what="the voucher and the extension notice")
    notices = [m for m in _mails(service, member_id) if "now expires" in m["Subject"]]
    assert len(notices) == 1
    assert later.date().isoformat() in notices[0]["Subject"]
    body = notices[0].get_body(preferencelist=("plain",)).get_content()
    assert voucher.masked_code in body
    assert "ORCH-EXTN-0001" not in body
    count = await service.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE member_id = $1 AND template = 'expiry_extended'", member_id
    )
    assert count == 1


async def test_a_requested_notice_follows_the_directory(delivery_service):
    """How the wallet (points about to expire) and support (ticket updates) ask for a notice."""
    service = await delivery_service()
    member_id = await _member(service, phone="+447700900556", preferred_channel=Channel.WHATSAPP)
    opted_out = await _member(service, opted_out=[NotificationKind.POINTS_EXPIRING])

    def expiring(member: str) -> DeliveryMessageRequested:
        return DeliveryMessageRequested(
            message_id=notice_id(NotificationKind.POINTS_EXPIRING, member, "2027-01-31"),
            member_id=member,
            channel=Channel.EMAIL,
            template=NotificationKind.POINTS_EXPIRING.value,
            notice=NotificationKind.POINTS_EXPIRING,
            params={"points": "400", "expires_on": "2027-01-31", "days_left": "10"},
        )

    skipped = await service.publish(expiring(opted_out))
    await _publish_twice(service, expiring(member_id))
    await _handled(service, "delivery-messages", skipped)

    def whatsapps() -> list[dict[str, Any]]:
        return [m for m in service.provider.messages() if "+447700900556" in m.get("to", "")]

    await wait_until(lambda: _async(bool(whatsapps())), timeout=30, what="the expiry warning by WhatsApp")
    (message,) = whatsapps()
    assert "400" in message["body"]
    assert _mails(service, member_id) == []
    assert await service.pool.fetchval("SELECT count(*) FROM deliveries WHERE member_id = $1", opted_out) == 0


async def test_a_ticket_update_from_support_gives_one_message(delivery_service):
    service = await delivery_service()
    member_id = await _member(service)
    kind = NotificationKind.TICKET_UPDATED
    update = DeliveryMessageRequested(
        message_id=uuid.uuid4(),
        member_id=member_id,
        channel=Channel.EMAIL,
        template=kind.value,
        notice=kind,
        ticket_id="T-4242",
        params={"ticket_id": "T-4242", "status": "in progress", "message": "We asked the partner."},
    )

    await _publish_twice(service, update)

    mail = await _one_mail(service, member_id)
    assert "T-4242" in mail["Subject"]
    assert "We asked the partner." in mail.get_body(preferencelist=("plain",)).get_content()


async def test_a_test_orders_hold_tells_its_member_nothing(delivery_service):
    service = await delivery_service()
    member_id = await _member(service)
    held = _order_change(member_id, OrderState.PENDING, FulfilmentStatus.ON_HOLD).model_copy(
        update={"test": True}
    )
    # A later change of the same order (same key: read after the hold) that is told, as a marker.
    cancelled = held.model_copy(
        update={"test": False, "state": OrderState.CANCELLED, "fulfilment_status": None}
    )

    await service.publish(held)
    await service.publish(cancelled)

    mail = await _one_mail(service, member_id)
    assert "on hold" not in mail["Subject"]
    assert cancelled.booking_id in mail["Subject"]
