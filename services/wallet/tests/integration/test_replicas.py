"""Two wallet replicas on one database: Kafka debits and HTTP reversals for one member, all at once."""

from __future__ import annotations

import asyncio
import json

from chassis.testing import read_topic, wait_until
from contracts.topics import Topics
from services.wallet.member_audit import verify_member_audit
from services.wallet.tests.integration.test_points_flow import debit_request, member_id, send


async def test_debits_and_reversals_on_two_replicas_never_overdraw_and_each_request_is_answered_once(
    two_replicas,
):
    first, second = two_replicas
    member = member_id()
    url = f"/v1/members/{member}/adjustments"
    credits = []
    for i in range(20):  # 20 credits of 50 = 1000 points, posted through both replicas
        replica = (first, second)[i % 2]
        response = await replica.http.post(
            url, json={"amount": "50", "reason_code": "seed", "reason": "seed"}, headers=replica.auth("admin")
        )
        assert response.status_code == 201
        credits.append(response.json()["entry_id"])
    debits = [debit_request(member, 50) for _ in range(30)]  # 1500 points asked for on Kafka

    async def reverse(i: int, entry_id: str) -> int:
        replica = (first, second)[i % 2]
        body = {
            "entry_type": "reversal",
            "reverses_entry_id": entry_id,
            "reason_code": "fix",
            "reason": "race",
        }
        response = await replica.http.post(url, json=body, headers=replica.auth("finance"))
        return response.status_code

    sending = asyncio.create_task(send(first.bootstrap, *debits, key=member))
    statuses = await asyncio.gather(*(reverse(i, e) for i, e in enumerate(credits)))
    await sending

    keys = {d.data.idempotency_key for d in debits}

    async def answers() -> list[dict]:
        found = []
        for topic in (Topics.WALLET_TRANSACTION_RECORDED, Topics.WALLET_DEBIT_REJECTED):
            for record in await read_topic(first.bootstrap, topic):
                data = json.loads(record.value)["data"]
                if data["idempotency_key"] in keys:
                    found.append(data)
        return found

    async def all_answered() -> bool:
        return len(await answers()) >= len(debits)

    await wait_until(all_answered, timeout=60, what="an answer to every debit")
    answered = await answers()
    recorded = [a for a in answered if "entry_id" in a]
    assert sorted(a["idempotency_key"] for a in answered) == sorted(keys)  # each exactly once
    assert {a["reason"] for a in answered if "reason" in a} <= {"insufficient_points"}
    assert set(statuses) <= {201, 409}
    reversals = statuses.count(201)
    assert (len(recorded) + reversals) * 50 <= 1000
    pool = first.runtime.pool
    balance = await pool.fetchval("SELECT balance FROM wallets WHERE member_id = $1", member)
    assert balance == 1000 - 50 * (len(recorded) + reversals)
    assert (
        await pool.fetchval("SELECT min(balance_after) FROM ledger_entries WHERE member_id = $1", member) >= 0
    )
    async with pool.acquire() as conn:
        assert (await verify_member_audit(conn, member)).ok
