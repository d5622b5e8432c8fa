"""The storefront saga end to end over HTTP, the real broker and Postgres; the test plays the wallet
and the order service by answering on their topics."""

from __future__ import annotations

import json
import uuid
from typing import Any

from chassis.testing import read_topic, wait_until
from contracts.orders import OrderState
from contracts.topics import Topics
from services.redemption.tests.integration.conftest import (
    RunningService,
    order_changes,
    requests_for,
    wait_for_requests,
    wallet_records,
    wallet_rejects,
)


async def _reward(service: RunningService, *, points: str = "500", stock: int | None = None) -> str:
    body: dict[str, Any] = {
        "name": "Coffee voucher",
        "campaign_id": "camp-coffee",
        "points_price": points,
        "amount": "5.00",
        "currency": "EUR",
    }
    if stock is not None:
        body["stock"] = stock
    response = await service.client.post("/v1/rewards", json=body, headers=service.auth("admin", "alice"))
    assert response.status_code == 201, response.text
    return str(response.json()["reward_id"])


async def _redeem(service: RunningService, member: str, reward_id: str, **extra: Any) -> dict[str, Any]:
    response = await service.client.post(
        "/v1/storefront/redemptions",
        json={"reward_id": reward_id, "email": "m@example.com", "channel": "email", **extra},
        headers=service.auth("member", member),
    )
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


async def _a_member_redeems_a_reward(service: RunningService) -> tuple[str, str]:
    """A new member starts redeeming a new reward: the member and the redemption id."""
    member = f"m-{uuid.uuid4().hex[:6]}"
    return member, (await _redeem(service, member, await _reward(service)))["redemption_id"]


async def _status_becomes(service: RunningService, member: str, rid: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        response = await service.client.get(
            f"/v1/storefront/redemptions/{rid}", headers=service.auth("member", member)
        )
        seen.update(response.json())
        return bool(seen.get("status") == status)

    await wait_until(reached, timeout=60, interval=0.2, what=f"redemption {rid} {status}")
    return seen


async def test_a_redemption_debits_points_orders_the_voucher_and_completes(service: RunningService) -> None:
    bootstrap = service.bootstrap
    reward = await _reward(service)
    member = f"m-{uuid.uuid4().hex[:6]}"
    redemption = await _redeem(service, member, reward)
    rid = redemption["redemption_id"]
    assert redemption["status"] == "debit_requested"

    [debit] = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid)
    assert debit["data"]["amount"] == "500"
    assert debit["data"]["entry_type"] == "redemption"
    await wallet_records(bootstrap, debit)

    [create] = await wait_for_requests(bootstrap, Topics.ORDER_CREATE_REQUESTED, rid)
    assert create["data"]["idempotency_key"] == f"redemption:{rid}:order"
    assert create["data"]["email"] == "m@example.com"
    assert create["data"]["campaign_id"] == "camp-coffee"
    order_id = uuid.uuid4()
    await order_changes(bootstrap, create, order_id, OrderState.PENDING)
    await _status_becomes(service, member, rid, "order_pending")
    await order_changes(bootstrap, create, order_id, OrderState.COMPLETED, previous=OrderState.PENDING)

    done = await _status_becomes(service, member, rid, "completed")
    assert done["order_id"] == str(order_id)
    assert done["charged"] is True
    assert done["refunded"] is False
    assert [h["to_state"] for h in done["history"]] == [
        "debit_requested",
        "order_requested",
        "order_pending",
        "completed",
    ]
    async with service.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT contact FROM storefront_redemptions WHERE redemption_id = $1", uuid.UUID(rid)
            )
            is None
        )


async def test_a_rejected_debit_fails_with_the_reason_and_orders_nothing(service: RunningService) -> None:
    bootstrap = service.bootstrap
    reward = await _reward(service, stock=1)
    member = f"m-{uuid.uuid4().hex[:6]}"
    rid = (await _redeem(service, member, reward))["redemption_id"]
    [debit] = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid)

    await wallet_rejects(bootstrap, debit, "insufficient_points")

    failed = await _status_becomes(service, member, rid, "failed")
    assert failed["reason"] == "insufficient_points"
    assert failed["charged"] is False
    assert await requests_for(bootstrap, Topics.ORDER_CREATE_REQUESTED, rid) == []
    # The unit reserved for it is available again.
    listing = await service.client.get("/v1/rewards", headers=service.auth("member", member))
    assert reward in [r["reward_id"] for r in listing.json()["items"]]


async def test_a_cancelled_order_refunds_the_points_once_linked_to_the_debit(service: RunningService) -> None:
    bootstrap = service.bootstrap
    member, rid = await _a_member_redeems_a_reward(service)
    [debit] = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid)
    debit_entry = await wallet_records(bootstrap, debit)
    # A redelivered answer changes nothing.
    await wallet_records(bootstrap, debit, entry_id=debit_entry)
    [create] = await wait_for_requests(bootstrap, Topics.ORDER_CREATE_REQUESTED, rid)
    order_id = uuid.uuid4()
    await order_changes(bootstrap, create, order_id, OrderState.PENDING)
    await order_changes(
        bootstrap, create, order_id, OrderState.CANCELLED, previous=OrderState.PENDING, reason="out of stock"
    )

    [refund] = await wait_for_requests(bootstrap, Topics.WALLET_CREDIT_REQUESTED, rid)
    assert refund["data"]["entry_type"] == "refund"
    assert refund["data"]["amount"] == "500"
    assert refund["data"]["idempotency_key"] == f"redemption:{rid}:refund"
    assert refund["data"]["reference"]["external_ref"] == debit["data"]["idempotency_key"]
    assert refund["data"]["reference"]["order_id"] == str(order_id)
    refund_entry = await wallet_records(bootstrap, refund)
    await wallet_records(bootstrap, refund, entry_id=refund_entry)

    refunded = await _status_becomes(service, member, rid, "refunded")
    assert refunded["reason"] == "out of stock"
    async with service.pool.acquire() as conn:
        entries = await conn.fetch(
            "SELECT kind, entry_id FROM storefront_wallet_entries WHERE redemption_id = $1 ORDER BY kind",
            uuid.UUID(rid),
        )
    assert [(e["kind"], e["entry_id"]) for e in entries] == [("debit", debit_entry), ("refund", refund_entry)]


async def test_an_unanswered_step_is_asked_again_with_the_same_idempotency_key(
    service: RunningService,
) -> None:
    bootstrap = service.bootstrap
    _, rid = await _a_member_redeems_a_reward(service)
    async with service.pool.acquire() as conn:
        await conn.execute(
            "UPDATE storefront_redemptions SET next_attempt_at = now() WHERE redemption_id = $1",
            uuid.UUID(rid),
        )

    debits = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid, count=2)

    assert {d["data"]["idempotency_key"] for d in debits} == {f"redemption:{rid}:debit"}
    assert len({d["event_id"] for d in debits}) == len(debits)


async def test_a_member_sees_only_their_own_redemptions_and_a_repeated_request_is_one_redemption(
    service: RunningService,
) -> None:
    reward = await _reward(service)
    member = f"m-{uuid.uuid4().hex[:6]}"
    first = await _redeem(service, member, reward, idempotency_key="tap-1")
    again = await _redeem(service, member, reward, idempotency_key="tap-1")
    assert again["redemption_id"] == first["redemption_id"]

    other = await service.client.get(
        f"/v1/storefront/redemptions/{first['redemption_id']}", headers=service.auth("member", "someone-else")
    )
    assert other.status_code == 404
    staff = await service.client.get(
        f"/v1/storefront/redemptions/{first['redemption_id']}", headers=service.auth("support_agent", "s1")
    )
    assert staff.status_code == 200


async def test_an_unknown_or_sold_out_reward_is_refused_and_changes_nothing(service: RunningService) -> None:
    reward = await _reward(service, stock=0)
    member = f"m-{uuid.uuid4().hex[:6]}"
    headers = service.auth("member", member)
    sold_out = await service.client.post(
        "/v1/storefront/redemptions", json={"reward_id": reward}, headers=headers
    )
    unknown = await service.client.post(
        "/v1/storefront/redemptions", json={"reward_id": "nope"}, headers=headers
    )
    bad = await service.client.post("/v1/storefront/redemptions", json={}, headers=headers)

    assert sold_out.status_code == 409
    assert sold_out.json()["code"] == "reward_unavailable"
    assert unknown.status_code == 404
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.reward_id"
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM storefront_redemptions") == 0


async def test_an_order_that_never_appears_is_given_up_refunded_and_cancelled_if_it_shows_up_late(
    service: RunningService,
) -> None:
    bootstrap = service.bootstrap
    member, rid = await _a_member_redeems_a_reward(service)
    [debit] = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid)
    await wallet_records(bootstrap, debit)
    [create] = await wait_for_requests(bootstrap, Topics.ORDER_CREATE_REQUESTED, rid)
    await _status_becomes(service, member, rid, "order_requested")
    max_attempts = service.runtime.settings.saga_max_order_attempts  # type: ignore[attr-defined]
    async with service.pool.acquire() as conn:
        await conn.execute(
            "UPDATE storefront_redemptions SET attempts = $2, next_attempt_at = now()"
            " WHERE redemption_id = $1",
            uuid.UUID(rid),
            max_attempts,
        )

    [refund] = await wait_for_requests(bootstrap, Topics.WALLET_CREDIT_REQUESTED, rid)
    gave_up = await _status_becomes(service, member, rid, "refund_requested")
    assert gave_up["reason"] == "order_not_created"
    late_order = uuid.uuid4()
    await order_changes(bootstrap, create, late_order, OrderState.PENDING)

    async def cancel_asked() -> bool:
        for record in await read_topic(bootstrap, Topics.ORDER_CANCEL_REQUESTED):
            if json.loads(record.value)["data"]["order_id"] == str(late_order):
                return True
        return False

    await wait_until(cancel_asked, timeout=60, interval=0.3, what="late order cancelled")
    await wallet_records(bootstrap, refund)
    refunded = await _status_becomes(service, member, rid, "refunded")
    assert refunded["charged"] is True
    assert refunded["refunded"] is True


async def test_a_storefront_order_completes_amid_a_batch_of_orders_no_saga_waits_for(
    service: RunningService,
) -> None:
    """Most `order.state_changed` events are IPA orders: the batch passes over them and still applies
    the storefront order's change, found by its order id alone."""
    from chassis.testing import produce
    from contracts.envelope import Envelope
    from contracts.orders import FulfilmentStatus, OrderSource, OrderStateChanged

    bootstrap = service.bootstrap
    member, rid = await _a_member_redeems_a_reward(service)
    [debit] = await wait_for_requests(bootstrap, Topics.WALLET_DEBIT_REQUESTED, rid)
    await wallet_records(bootstrap, debit)
    [create] = await wait_for_requests(bootstrap, Topics.ORDER_CREATE_REQUESTED, rid)
    order_id = uuid.uuid4()
    await order_changes(bootstrap, create, order_id, OrderState.PENDING)
    await _status_becomes(service, member, rid, "order_pending")

    def change(
        oid: uuid.UUID, state: OrderState, previous: OrderState | None, source: OrderSource = OrderSource.IPA
    ) -> tuple[bytes, bytes]:
        pending = state is OrderState.PENDING
        data = OrderStateChanged(
            order_id=oid,
            booking_id=f"BK-{oid.hex[:10].upper()}",
            member_id=member,
            campaign_id="camp-coffee",
            source=source,
            state=state,
            previous_state=previous,
            fulfilment_status=FulfilmentStatus.AWAITING_VOUCHER if pending else None,
        )
        envelope = Envelope.new(event_type=Topics.ORDER_STATE_CHANGED, producer="order", data=data)
        return str(oid).encode(), envelope.to_bytes()

    others = [uuid.uuid4() for _ in range(20)]
    messages = [change(o, OrderState.PENDING, None) for o in others[:10]]
    # names no redemption: found by its order id
    messages.append(change(order_id, OrderState.COMPLETED, OrderState.PENDING, OrderSource.STOREFRONT))
    messages += [change(o, OrderState.COMPLETED, OrderState.PENDING) for o in others[10:]]
    await produce(bootstrap, Topics.ORDER_STATE_CHANGED, messages)

    done = await _status_becomes(service, member, rid, "completed")
    assert done["order_id"] == str(order_id)
    async with service.pool.acquire() as conn:
        sagas = await conn.fetchval(
            "SELECT count(*) FROM storefront_redemptions WHERE order_id = ANY($1::uuid[])", others
        )
    assert sagas == 0
