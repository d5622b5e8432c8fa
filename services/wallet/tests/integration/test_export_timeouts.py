"""A transactions export is cut off once it runs past the download timeout, its query with it."""

from __future__ import annotations

import uuid

import pytest

from chassis.http import DownloadTimedOut
from chassis.testing import wait_until

from .conftest import running_wallet


@pytest.mark.parametrize("format", ["csv", "jsonl"])
async def test_an_export_stuck_in_the_database_is_cut_off_after_the_download_timeout(
    service_db, kafka_bootstrap, wallet_topics, clock, format
):
    async with running_wallet(
        service_db, kafka_bootstrap, clock, f"t{uuid.uuid4().hex[:10]}", ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S=1
    ) as wallet:
        pool = wallet.runtime.pool
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DownloadTimedOut):
                await wallet.http.get(
                    "/v1/wallet/transactions", params={"format": format}, headers=wallet.auth("finance")
                )

            async def query_gone() -> bool:
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%FROM ledger_entries e%'"
                )
                return bool(waiting == 0)

            await wait_until(query_gone, timeout=30, what="the export's query ended")
        answer = await wallet.http.get(
            "/v1/wallet/transactions", params={"format": format}, headers=wallet.auth("finance")
        )
        assert answer.status_code == 200
