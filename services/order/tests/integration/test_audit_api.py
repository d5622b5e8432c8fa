"""The order service's audit API shows orders placed and cancelled by people, and a tampered entry."""

from __future__ import annotations

from chassis.testing import audit_trail, audit_verification, tamper_audit_log
from deploy.testing import ServiceDb

from .conftest import OrderService, voucher_record


async def test_placed_and_cancelled_orders_appear_in_the_audit_log_and_the_chain_verifies(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    placed = await order_service.http.post(
        "/v1/orders", json=voucher_record(campaign), headers=order_service.auth("ops")
    )
    order_id = placed.json()["order_id"]
    cancelled = await order_service.http.post(
        f"/v1/orders/{order_id}/cancel",
        json={"reason": "duplicate award"},
        headers=order_service.auth("admin"),
    )
    assert cancelled.status_code == 200, cancelled.text

    trail = await audit_trail(
        order_service.http, order_service.auth("auditor"), subject_type="order", subject_id=order_id
    )

    assert [e["action"] for e in trail] == ["order.placed", "order.cancelled"]
    assert trail[1]["details"]["reason"] == "duplicate award"
    assert await audit_verification(order_service.http, order_service.auth("admin")) == {
        "ok": True,
        "entries": 2,
        "first_broken_seq": None,
    }


async def test_an_entry_edited_in_postgres_is_reported_as_the_first_broken(
    order_service: OrderService, service_db: ServiceDb
) -> None:
    campaign = await order_service.campaign()
    for _ in range(3):
        placed = await order_service.http.post(
            "/v1/orders", json=voucher_record(campaign), headers=order_service.auth("ops")
        )
        assert placed.status_code == 201, placed.text
    await tamper_audit_log(
        service_db.admin_dsn,
        service_db.schema,
        """UPDATE audit_log SET details = '{"external_ref": "forged"}' WHERE seq = 2""",
    )

    assert await audit_verification(order_service.http, order_service.auth("auditor")) == {
        "ok": False,
        "entries": 1,
        "first_broken_seq": 2,
    }


async def test_other_roles_may_not_read_the_audit_log(order_service: OrderService) -> None:
    for role in ("ops", "finance", "support_agent", "member"):
        for path in ("/v1/audit", "/v1/audit/verify"):
            response = await order_service.http.get(path, headers=order_service.auth(role))
            assert response.status_code == 403, (role, path)
