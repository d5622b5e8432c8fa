"""Once a month has ended, its reconciliation goes to every address of the finance distribution list
through delivery's message topic, once, with figures that match the month-end report."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from chassis.testing import read_topic, wait_until
from contracts.topics import Topics

from .conftest import running_wallet
from .test_finance_reports import award, caught_up, no_due_lots


async def reconciliations(bootstrap: str, addresses: set[str]) -> list[dict[str, Any]]:
    found = []
    for record in await read_topic(bootstrap, Topics.DELIVERY_MESSAGE_REQUESTED):
        data = json.loads(record.value)["data"]
        if data.get("template") == "monthly_reconciliation" and data.get("email") in addresses:
            found.append(data)
    return found


async def test_the_month_just_ended_is_mailed_once_to_each_finance_address(
    service_db, kafka_bootstrap, wallet_topics, clock
) -> None:
    run = uuid.uuid4().hex[:8]
    addresses = {f"finance-{run}@example.com", f"controller-{run}@example.com"}
    async with running_wallet(
        service_db,
        kafka_bootstrap,
        clock,
        f"t{run}",
        ORCHARD_WALLET_FINANCE_REPORT_EMAILS=", ".join(sorted(addresses)),
        ORCHARD_WALLET_RECONCILIATION_INTERVAL=0.2,
    ) as wallet:
        await caught_up(wallet)
        wallet.clock.set(datetime(2029, 12, 1, tzinfo=UTC))
        await wait_until(lambda: no_due_lots(wallet), what="the backlog's lots expired")
        wallet.clock.set(datetime(2030, 2, 10, 12, tzinfo=UTC))
        await award(wallet, f"recon-{run}", f"spring-{run}", 70)
        february = (
            await wallet.http.get(
                "/v1/wallet/reports/month-end", params={"month": "2030-02"}, headers=wallet.auth("finance")
            )
        ).json()

        wallet.clock.set(datetime(2030, 3, 1, 0, 0, 5, tzinfo=UTC))

        async def sent() -> bool:
            return any(
                m["params"]["month"] == "2030-02" for m in await reconciliations(wallet.bootstrap, addresses)
            )

        await wait_until(sent, what="the February reconciliation published")
        messages = [
            m for m in await reconciliations(wallet.bootstrap, addresses) if m["params"]["month"] == "2030-02"
        ]
        claimed = await wallet.runtime.pool.fetch(
            "SELECT month, recipients FROM reconciliation_reports WHERE month = '2030-02'"
        )

    assert sorted(m["email"] for m in messages) == sorted(addresses)
    assert len({m["message_id"] for m in messages}) == 2
    assert [(r["month"], r["recipients"]) for r in claimed] == [("2030-02", 2)]
    params = messages[0]["params"]
    assert params["earned"] == february["earned"] == "70"
    assert (params["opening_points"], params["closing_points"]) == (
        february["opening_points"],
        february["closing_points"],
    )
    assert params["reconciles"] == "yes"
    assert messages[0]["channel"] == "email"
