"""The portal follows the codes: `voucher.status_changed` shows the order's code partly redeemed,
redeemed, expired or extended, and after a recovery the replacement code's mask with the code it
replaced."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.testing import order_state_changed, voucher_issued, voucher_status_changed, wait_until
from contracts.orders import FulfilmentStatus, OrderState
from contracts.topics import Topics
from contracts.vouchers import CodeStatus
from services.support.tests.integration.conftest import Support

EXPIRES = datetime(2027, 12, 31, tzinfo=UTC)


async def _issue(support: Support, order_id: uuid.UUID, code_id: uuid.UUID, mask: str) -> None:
    data = voucher_issued(
        order_id, code_id, mask=mask, campaign_id="camp-portal", face_value="25.00", expires_at=EXPIRES
    )
    await support.publish(Topics.VOUCHER_ISSUED, str(order_id), data)


async def _status(
    support: Support,
    order_id: uuid.UUID,
    code_id: uuid.UUID,
    new: CodeStatus,
    previous: CodeStatus,
    *,
    remaining: str = "25.00",
    expires_at: datetime = EXPIRES,
    reason: str | None = None,
) -> None:
    data = voucher_status_changed(
        order_id,
        code_id,
        new,
        campaign_id="camp-portal",
        previous_status=previous,
        reason=reason,
        expires_at=expires_at,
        remaining_value=remaining,
    )
    await support.publish(Topics.VOUCHER_STATUS_CHANGED, str(code_id), data)


async def _order_with_code(support: Support, code_id: uuid.UUID, mask: str) -> uuid.UUID:
    order_id = uuid.uuid4()
    data = order_state_changed(
        order_id,
        OrderState.PENDING,
        member_id="member-codes-1",
        campaign_id="camp-portal",
        fulfilment_status=FulfilmentStatus.DELIVERING,
    )
    await support.publish(Topics.ORDER_STATE_CHANGED, str(order_id), data)
    await _issue(support, order_id, code_id, mask)
    return order_id


async def _voucher_until(support: Support, order_id: uuid.UUID, what: str, **expected: Any) -> dict[str, Any]:
    agent = support.token("support_agent", "alice")

    async def view() -> dict[str, Any]:
        response = await support.client.get(f"/v1/portal/orders/{order_id}", headers=agent)
        return dict(response.json()) if response.status_code == 200 else {}

    async def shown() -> bool:
        voucher = (await view()).get("voucher") or {}
        return all(voucher.get(k) == v for k, v in expected.items())

    await wait_until(shown, timeout=60, interval=0.3, what=what)
    return await view()


async def test_an_agent_sees_the_code_partly_redeemed_redeemed_and_each_change_in_the_timeline(
    support: Support,
):
    code = uuid.uuid4()
    order_id = await _order_with_code(support, code, "P4RT")
    await _voucher_until(support, order_id, "code issued", status="issued", masked_code="****-****-P4RT")
    await _status(support, order_id, code, CodeStatus.PARTIALLY_REDEEMED, CodeStatus.ISSUED, remaining="5.00")
    partly = await _voucher_until(support, order_id, "partly redeemed", status="partially_redeemed")
    assert partly["voucher"]["remaining_value"] == "5.00"
    await _status(support, order_id, code, CodeStatus.REDEEMED, CodeStatus.PARTIALLY_REDEEMED, remaining="0")
    view = await _voucher_until(support, order_id, "redeemed", status="redeemed", remaining_value="0.00")
    changes = [e for e in view["timeline"] if e["kind"] == "code_status_changed"]
    assert [(e["previous_status"], e["status"]) for e in changes] == [
        ("issued", "partially_redeemed"),
        ("partially_redeemed", "redeemed"),
    ]


async def test_an_agent_sees_an_expired_code_and_its_new_expiry_after_an_extension(support: Support):
    code = uuid.uuid4()
    order_id = await _order_with_code(support, code, "EXP1")
    lapsed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    await _status(support, order_id, code, CodeStatus.EXPIRED, CodeStatus.ISSUED, expires_at=lapsed)
    await _voucher_until(support, order_id, "expired", status="expired")
    later = lapsed + timedelta(days=60)
    await _status(
        support, order_id, code, CodeStatus.ISSUED, CodeStatus.EXPIRED, expires_at=later, reason="goodwill"
    )
    view = await _voucher_until(support, order_id, "extended", status="issued")
    assert datetime.fromisoformat(view["voucher"]["expires_at"]) == later


async def test_after_a_recovery_the_order_shows_the_replacement_codes_mask_and_the_replaced_code(
    support: Support,
):
    old, new = uuid.uuid4(), uuid.uuid4()
    order_id = await _order_with_code(support, old, "OLD1")
    await _voucher_until(support, order_id, "first code", masked_code="****-****-OLD1")
    await _status(support, order_id, old, CodeStatus.RECOVERED, CodeStatus.ISSUED, reason="wrong address")
    await _issue(support, order_id, new, "NEW2")
    view = await _voucher_until(
        support, order_id, "replacement", masked_code="****-****-NEW2", status="issued"
    )
    assert view["voucher"]["code_id"] == str(new)

    async def old_retired() -> bool:
        agent = support.token("support_agent", "alice")
        voucher = (await support.client.get(f"/v1/portal/orders/{order_id}", headers=agent)).json()["voucher"]
        return voucher["replaced_codes"] == [
            {"code_id": str(old), "masked_code": "****-****-OLD1", "status": "recovered"}
        ]

    await wait_until(old_retired, timeout=60, interval=0.3, what="the replaced code listed")
