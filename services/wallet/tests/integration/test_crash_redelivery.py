"""The real wallet process killed with SIGKILL mid-stream and started again: every debit is applied
exactly once, whatever Kafka redelivers after the crash."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from chassis.service_process import ServiceProcess
from chassis.testing import read_topic, wait_until
from contracts.topics import Topics
from deploy.infra.net import free_port
from services.wallet.tests.integration.test_points_flow import debit_request, ipa_points, member_id, send
from services.wallet.tests.support import event

pytestmark = pytest.mark.fault


async def test_a_crashed_wallet_applies_every_debit_exactly_once_after_restart(
    service_db, kafka_bootstrap, wallet_topics, tmp_path
):
    wallet = ServiceProcess(
        "services.wallet", service_db, kafka_bootstrap, free_port(), tmp_path / "wallet.log"
    )
    member = member_id()
    debits = [debit_request(member, 10) for _ in range(300)]
    conn = await asyncpg.connect(service_db.dsn, server_settings={"search_path": service_db.schema})
    try:
        await asyncio.to_thread(wallet.start)

        async def entries() -> int:
            return await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE member_id = $1", member)

        await send(kafka_bootstrap, ipa_points(member, "100000"), key=member)

        async def credited() -> bool:
            return await entries() == 1

        await wait_until(credited, timeout=60, what="the credit")  # credits and debits are separate topics
        # The first third, each twice (a plain redelivery); the process is killed the moment they are
        # applied, before or after it commits its Kafka offsets, so Kafka may deliver them all again.
        first, rest = debits[:100], debits[100:]
        await send(kafka_bootstrap, *[d for debit in first for d in (debit, debit)], key=member)

        async def first_applied() -> bool:
            return await entries() >= 101

        await wait_until(first_applied, timeout=60, interval=0.01, what="the first debits")
        wallet.kill()
        killed_at = await entries()
        # While it is down: the rest, and the saga retrying 50 of the first (new events, same keys).
        retries = [event(Topics.WALLET_DEBIT_REQUESTED, d.data, producer="redemption") for d in first[:50]]
        await send(kafka_bootstrap, *rest, *retries, key=member)
        await asyncio.to_thread(wallet.start)

        async def all_applied() -> bool:
            return await entries() == 301

        await wait_until(
            all_applied, timeout=120, what=f"every debit after the restart; see {wallet.log_path}"
        )
        await asyncio.sleep(1)  # anything doubled would land now

        assert 101 <= killed_at < 301
        assert await entries() == 301
        keys = await conn.fetchval(
            "SELECT count(DISTINCT idempotency_key) FROM ledger_entries WHERE member_id = $1", member
        )
        assert keys == 301
        assert (
            await conn.fetchval("SELECT balance FROM wallets WHERE member_id = $1", member) == 100000 - 3000
        )

        async def all_answered() -> bool:
            records = await read_topic(kafka_bootstrap, Topics.WALLET_TRANSACTION_RECORDED)
            mine = [json.loads(r.value)["data"] for r in records if r.key == member.encode()]
            return len({m["idempotency_key"] for m in mine}) == 301

        await wait_until(all_answered, timeout=60, what="an answer for every entry")
        records = await read_topic(kafka_bootstrap, Topics.WALLET_TRANSACTION_RECORDED)
        answers: dict[str, set[str]] = {}
        for record in records:
            if record.key == member.encode():
                data = json.loads(record.value)["data"]
                answers.setdefault(data["idempotency_key"], set()).add(data["entry_id"])
        # An answer may be published twice after a crash (at-least-once), never for a second entry.
        assert all(len(entry_ids) == 1 for entry_ids in answers.values())
    finally:
        wallet.kill()
        await conn.close()
