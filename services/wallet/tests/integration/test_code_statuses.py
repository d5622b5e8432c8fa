"""The member dashboard follows the codes: `voucher.status_changed` shows the order's code partly
redeemed, redeemed, expired or extended, and a recovery's replacement code shows with its mask while
the code it replaced is listed as such."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chassis.testing import voucher_issued, voucher_status_changed, wait_until
from contracts.delivery import DeliverySucceeded
from contracts.orders import FulfilmentStatus, OrderState
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import CodeStatus
from services.wallet.tests.integration.test_dashboard_and_audit import order_event
from services.wallet.tests.integration.test_points_flow import member_id, publish, send
from services.wallet.tests.support import event

EXPIRES = datetime(2027, 3, 31, 23, 59, tzinfo=UTC)


def issued(order_id: uuid.UUID, code_id: uuid.UUID, mask: str) -> Any:
    data = voucher_issued(
        order_id, code_id, mask=mask, campaign_id="spring-thanks", face_value="25.00", expires_at=EXPIRES
    )
    return event(Topics.VOUCHER_ISSUED, data, producer="voucher")


def status(
    order_id: uuid.UUID | None,
    code_id: uuid.UUID,
    new: CodeStatus,
    previous: CodeStatus,
    *,
    remaining: str = "25.00",
    expires_at: datetime | None = EXPIRES,
    reason: str | None = None,
    test: bool = False,
) -> Any:
    data = voucher_status_changed(
        order_id,
        code_id,
        new,
        campaign_id="spring-thanks",
        previous_status=previous,
        reason=reason,
        expires_at=expires_at,
        remaining_value=Decimal(remaining),
        test=test,
    )
    return event(Topics.VOUCHER_STATUS_CHANGED, data, producer="voucher")


async def _order(wallet, member: str, order_id: uuid.UUID) -> dict[str, Any]:
    response = await wallet.http.get(f"/v1/members/{member}/history", headers=wallet.auth("member", member))
    assert response.status_code == 200, response.text
    return {o["order_id"]: o for o in response.json()["orders"]}.get(str(order_id), {})


async def _until(wallet, member: str, order_id: uuid.UUID, what: str, **expected: Any) -> dict[str, Any]:
    async def shown() -> bool:
        order = await _order(wallet, member, order_id)
        return all(order.get(k) == v for k, v in expected.items())

    await wait_until(shown, timeout=60, interval=0.3, what=what)
    return await _order(wallet, member, order_id)


async def _changed(wallet, member: str, order_id: uuid.UUID, change: Any, what: str, **expected: Any) -> Any:
    """Send a code's status change on its code's key, then wait until the order shows `expected`."""
    await send(wallet.bootstrap, change, key=str(change.data.code_id))
    return await _until(wallet, member, order_id, what, **expected)


async def _delivered_order(wallet, member: str, code_id: uuid.UUID, mask: str) -> uuid.UUID:
    order_id = uuid.uuid4()
    await send(
        wallet.bootstrap,
        order_event(
            member, order_id, OrderState.PENDING, None, fulfilment_status=FulfilmentStatus.DELIVERING
        ),
        key=member,
    )
    await send(wallet.bootstrap, issued(order_id, code_id, mask), key=str(order_id))
    delivered = DeliverySucceeded(
        order_id=order_id, delivery_id=uuid.uuid4(), channel=Channel.EMAIL, attempt=1
    )
    await publish(wallet.bootstrap, delivered, producer="delivery", key=str(order_id))
    await _until(
        wallet, member, order_id, "order delivered", delivery_status="delivered", code_status="issued"
    )
    return order_id


async def test_a_member_sees_the_code_partly_redeemed_then_redeemed(wallet):
    member, code = member_id(), uuid.uuid4()
    order_id = await _delivered_order(wallet, member, code, "2W8P")
    s = CodeStatus
    change = status(order_id, code, s.PARTIALLY_REDEEMED, s.ISSUED, remaining="15.00", reason="redeemed")
    partly = await _changed(
        wallet, member, order_id, change, "partly redeemed", code_status="partially_redeemed"
    )
    assert partly["code_remaining_value"] == "15.00"
    assert partly["masked_code"] == "****-****-2W8P"

    change = status(order_id, code, s.REDEEMED, s.PARTIALLY_REDEEMED, remaining="0", reason="redeemed")
    redeemed = await _changed(wallet, member, order_id, change, "redeemed", code_status="redeemed")
    assert redeemed["code_remaining_value"] == "0"


async def test_a_member_sees_the_code_expire_and_the_new_expiry_after_an_extension(wallet):
    member, code = member_id(), uuid.uuid4()
    order_id = await _delivered_order(wallet, member, code, "4T9K")
    assert (await _order(wallet, member, order_id))["code_expires_at"] == EXPIRES.isoformat()
    lapsed = datetime.now(UTC) - timedelta(minutes=1)
    change = status(
        order_id, code, CodeStatus.EXPIRED, CodeStatus.ISSUED, expires_at=lapsed, reason="expired"
    )
    expired = await _changed(wallet, member, order_id, change, "expired", code_status="expired")
    assert expired["code_expires_at"] == lapsed.isoformat()

    later = lapsed + timedelta(days=90)
    change = status(
        order_id, code, CodeStatus.ISSUED, CodeStatus.EXPIRED, expires_at=later, reason="goodwill"
    )
    extended = await _changed(wallet, member, order_id, change, "extended", code_expires_at=later.isoformat())
    assert extended["code_status"] == "issued"


async def test_after_a_recovery_the_order_shows_the_replacement_codes_mask_and_the_replaced_code(wallet):
    member, old, new = member_id(), uuid.uuid4(), uuid.uuid4()
    order_id = await _delivered_order(wallet, member, old, "OLD1")
    # The retired code's status and the replacement's issue travel on different topics, in any order.
    await send(wallet.bootstrap, issued(order_id, new, "NEW2"), key=str(order_id))
    await send(
        wallet.bootstrap,
        status(order_id, old, CodeStatus.RECOVERED, CodeStatus.ISSUED, reason="delivered to a wrong address"),
        key=str(old),
    )
    await send(wallet.bootstrap, status(order_id, new, CodeStatus.ISSUED, CodeStatus.AVAILABLE), key=str(new))

    async def replaced() -> bool:
        return bool((await _order(wallet, member, order_id)).get("replaced_codes"))

    await wait_until(replaced, timeout=60, interval=0.3, what="replacement shown")
    order = await _until(wallet, member, order_id, "replacement issued", code_status="issued")
    assert order["masked_code"] == "****-****-NEW2"
    assert order["reveal"]["path"] == f"/v1/codes/{new}/reveal"
    assert [(c["code_id"], c["masked_code"]) for c in order["replaced_codes"]] == [
        (str(old), "****-****-OLD1")
    ]
    await wait_until(
        lambda: _replaced_status(wallet, member, order_id, "recovered"), timeout=60, what="old code retired"
    )


async def _replaced_status(wallet, member: str, order_id: uuid.UUID, expected: str) -> bool:
    order = await _order(wallet, member, order_id)
    return [c["status"] for c in order["replaced_codes"]] == [expected]


async def test_test_codes_and_codes_back_in_the_pool_reach_no_dashboard(wallet):
    member, code = member_id(), uuid.uuid4()
    order_id = await _delivered_order(wallet, member, code, "T3ST")
    await send(
        wallet.bootstrap,
        status(order_id, code, CodeStatus.REDEEMED, CodeStatus.ISSUED, remaining="0", test=True),
        status(None, code, CodeStatus.AVAILABLE, CodeStatus.RECOVERED),
        key=str(code),
    )
    marker = uuid.uuid4()
    await send(
        wallet.bootstrap, status(order_id, marker, CodeStatus.ISSUED, CodeStatus.AVAILABLE), key=str(code)
    )

    async def marker_seen() -> bool:
        return bool(
            await wallet.runtime.pool.fetchval("SELECT count(*) FROM reward_codes WHERE code_id = $1", marker)
        )

    await wait_until(marker_seen, timeout=60, what="later event on the same key applied")
    assert (await _order(wallet, member, order_id))["code_status"] == "issued"
    rows = await wallet.runtime.pool.fetchval("SELECT count(*) FROM reward_codes WHERE code_id = $1", code)
    assert rows == 1
