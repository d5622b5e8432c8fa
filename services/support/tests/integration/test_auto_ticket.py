"""A final delivery failure opens one missing-delivery ticket per order, however often it arrives."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from chassis.testing import delivery_outcome, order_state_changed, produce, read_topic, wait_until
from contracts.orders import FulfilmentStatus, OrderSource, OrderState
from contracts.topics import Topics
from services.support.tests.integration.conftest import Support


def _failure(order_id: uuid.UUID, delivery_id: uuid.UUID, attempt: int, *, final: bool) -> Any:
    return delivery_outcome(order_id, attempt, ok=False, final=final, delivery_id=delivery_id)


async def _publish_pending_order(
    support: Support, order_id: uuid.UUID, status: FulfilmentStatus, **fields: Any
) -> None:
    data = order_state_changed(order_id, OrderState.PENDING, fulfilment_status=status, **fields)
    await support.publish(Topics.ORDER_STATE_CHANGED, str(order_id), data)


async def _attempts(support: Support, order_id: uuid.UUID) -> int:
    rows = await support.fetch("SELECT count(*) AS n FROM delivery_attempts WHERE order_id = $1", order_id)
    return rows[0]["n"]


async def test_a_final_failure_redelivered_and_repeated_opens_exactly_one_ticket(support: Support):
    order_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    booking_id = f"BK-{uuid.uuid4().hex[:10].upper()}"
    await _publish_pending_order(
        support, order_id, FulfilmentStatus.DELIVERING, booking_id=booking_id, member_id="member-auto-1"
    )
    await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, delivery_id, 1, final=False)
    )
    final = await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, delivery_id, 2, final=True)
    )
    # The broker hands the same event over again (a consumer crashed before committing its offset).
    await produce(support.bootstrap, Topics.DELIVERY_FAILED, [(str(order_id).encode(), final.to_bytes())])
    # A resend later fails for good too: a new event, same order.
    await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, uuid.uuid4(), 1, final=True)
    )

    await wait_until(lambda: _seen(support, order_id, 3), timeout=60, what="three delivery attempts recorded")

    tickets = await support.client.get(
        "/v1/tickets", params={"order_id": str(order_id)}, headers=support.token("support_agent", "alice")
    )
    items = tickets.json()["items"]
    assert len(items) == 1
    ticket = items[0]
    assert ticket["category"] == "missing_delivery"
    assert ticket["origin"] == "delivery_failed"
    assert ticket["priority"] == "high"
    assert ticket["member_id"] == "member-auto-1"
    assert ticket["booking_id"] == booking_id
    assert ticket["opened_by"] == "system:delivery-monitor"

    detail = await support.client.get(
        f"/v1/tickets/{ticket['ticket_id']}", headers=support.token("support_agent", "alice")
    )
    assert [e["kind"] for e in detail.json()["timeline"]] == ["created", "delivery_failed_again"]

    # The member sees the ticket among their own.
    mine = await support.client.get("/v1/tickets", headers=support.token("member", "member-auto-1"))
    assert [t["ticket_id"] for t in mine.json()["items"]] == [ticket["ticket_id"]]

    # The database itself refuses a second automatic ticket for the order.
    conn = await asyncpg.connect(support.db.dsn, server_settings={"search_path": support.db.schema})
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO tickets (ticket_id, category, order_id, description, priority, sla_priority,"
                " origin, opened_by, opened_at, updated_at, fr_target_s, res_target_s)"
                " VALUES ('TK-DUPLICATE', 'missing_delivery', $1, 'again', 'high', 'high', 'delivery_failed',"
                " 'x', now(), now(), 60, 60)",
                order_id,
            )
    finally:
        await conn.close()


async def _seen(support: Support, order_id: uuid.UUID, attempts: int) -> bool:
    if await _attempts(support, order_id) < attempts:
        return False
    # Order and delivery events come on different topics, so either may be handled first.
    rows = await support.fetch(
        "SELECT count(*) AS n FROM ticket_events e JOIN tickets t USING (ticket_id)"
        " WHERE t.order_id = $1 AND e.kind = 'delivery_failed_again' AND t.member_id IS NOT NULL",
        order_id,
    )
    return rows[0]["n"] >= 1


async def test_a_failure_seen_before_the_order_still_gets_its_member_later(support: Support):
    order_id = uuid.uuid4()
    await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, uuid.uuid4(), 3, final=True)
    )
    await wait_until(lambda: _has_ticket(support, order_id), timeout=60, what="the automatic ticket")
    await _publish_pending_order(
        support,
        order_id,
        FulfilmentStatus.DELIVERY_FAILED,
        booking_id="BK-LATECOMER",
        member_id="member-late",
        source=OrderSource.API,
    )

    async def member_attached() -> bool:
        rows = await support.fetch("SELECT member_id FROM tickets WHERE order_id = $1", order_id)
        return rows[0]["member_id"] == "member-late"

    await wait_until(member_attached, timeout=60, what="the member attached to the ticket")


async def _has_ticket(support: Support, order_id: uuid.UUID) -> bool:
    return bool(await support.fetch("SELECT 1 FROM tickets WHERE order_id = $1", order_id))


async def test_a_failure_event_breaking_its_contract_is_dead_lettered_and_opens_nothing(support: Support):
    order_id = uuid.uuid4()
    broken = {
        "event_id": str(uuid.uuid4()),
        "event_type": "delivery.failed",
        "schema_version": 1,
        "occurred_at": "2026-11-23T09:00:00Z",
        "producer": "delivery",
        "correlation_id": "c-1",
        "data": {"order_id": str(order_id), "attempt": 0, "final": True},
    }
    await produce(
        support.bootstrap, Topics.DELIVERY_FAILED, [(str(order_id).encode(), json.dumps(broken).encode())]
    )
    consumer = f"orchard.{support.settings.service_name}.delivery-failed"

    async def dead_lettered() -> bool:
        for record in await read_topic(support.bootstrap, Topics.DELIVERY_FAILED.dlq):
            headers = dict(record.headers or ())
            if (
                record.key == str(order_id).encode()
                and headers.get("x-orchard-dlq-consumer") == consumer.encode()
            ):
                return (
                    b"attempt" in headers["x-orchard-dlq-error"] or b"data." in headers["x-orchard-dlq-error"]
                )
        return False

    await wait_until(dead_lettered, timeout=60, what="the broken event on delivery.failed.dlq")
    assert not await _has_ticket(support, order_id)
    assert await _attempts(support, order_id) == 0


async def test_a_new_final_failure_reopens_the_resolved_ticket(support: Support):
    order_id = uuid.uuid4()
    await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, uuid.uuid4(), 3, final=True)
    )
    await wait_until(lambda: _has_ticket(support, order_id), timeout=60, what="the automatic ticket")
    agent = support.token("support_agent", "alice")
    ticket_id = (await support.fetch("SELECT ticket_id FROM tickets WHERE order_id = $1", order_id))[0][
        "ticket_id"
    ]
    resolved = await support.client.post(
        f"/v1/tickets/{ticket_id}/transitions", json={"to": "resolved", "note": "resent"}, headers=agent
    )
    assert resolved.status_code == 200

    await support.publish(
        Topics.DELIVERY_FAILED, str(order_id), _failure(order_id, uuid.uuid4(), 1, final=True)
    )

    async def reopened() -> bool:
        rows = await support.fetch("SELECT state FROM tickets WHERE ticket_id = $1", ticket_id)
        return rows[0]["state"] == "open"

    await wait_until(reopened, timeout=60, what="the ticket reopened")
    timeline = (await support.client.get(f"/v1/tickets/{ticket_id}", headers=agent)).json()["timeline"]
    assert [(e["kind"], e["actor"]) for e in timeline][-2:] == [
        ("delivery_failed_again", "system:delivery-monitor"),
        ("reopened", "system:delivery-monitor"),
    ]
