"""The database, not only the code, keeps one code per order: two issuers racing on one order."""

from __future__ import annotations

import asyncio
import uuid

from chassis.errors import TransientError
from services.voucher import campaigns, codes, issuance
from services.voucher.api_campaigns import CampaignCreate, _domain_fields
from services.voucher.service import build_vault
from services.voucher.settings import VoucherSettings


async def test_two_issuers_racing_on_one_order_leave_exactly_one_issuance(pool):
    vault = build_vault(VoucherSettings())
    async with pool.acquire() as conn, conn.transaction():
        body = CampaignCreate.model_validate(
            {"campaign_id": "race", "name": "Race", "face_value": "10.00", "currency": "EUR"}
        )
        await campaigns.create(
            conn,
            _domain_fields(
                body.model_dump(exclude={"expiry_policy"}) | {"expiry_policy": body.expiry_policy}
            ),
            actor="test",
        )
        await codes.generate(conn, vault, "race", count=20, length=10, prefix="", test=False, actor="test")
    outcomes: list[str] = []
    for _ in range(10):
        order = issuance.OrderRequest(uuid.uuid4(), "race", "member-1", None, "test")
        start = asyncio.Event()

        async def attempt(order: issuance.OrderRequest = order, start: asyncio.Event = start) -> str:
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await start.wait()
                        await issuance.issue(conn, vault, order)
                        await asyncio.sleep(0.05)  # both transactions open at once
                except TransientError:
                    return "retry"
                return "ok"

        tasks = [asyncio.create_task(attempt()) for _ in range(2)]
        await asyncio.sleep(0.05)
        start.set()
        outcomes += await asyncio.gather(*tasks)
        issued = await pool.fetch("SELECT code_id FROM issuances WHERE order_id = $1", order.order_id)
        assert len(issued) == 1
        holders = await pool.fetchval("SELECT count(*) FROM codes WHERE order_id = $1", order.order_id)
        assert holders == 1
    assert outcomes.count("retry") == 10  # the loser of every race was stopped by a unique index
    assert await pool.fetchval("SELECT count(*) FROM codes WHERE status = 'issued'") == 10
