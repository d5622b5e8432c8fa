"""A transactions export is cut off once it runs past the download timeout, its query with it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import httpx
import pytest

from chassis.stuck_downloads import cut_off_while_locked

from .conftest import running_wallet


@pytest.mark.parametrize("format", ["csv", "jsonl"])
async def test_an_export_stuck_in_the_database_is_cut_off_after_the_download_timeout(
    service_db, kafka_bootstrap, wallet_topics, clock, format
):
    async with running_wallet(
        service_db, kafka_bootstrap, clock, f"t{uuid.uuid4().hex[:10]}", ORCHARD_HTTP_DOWNLOAD_TIMEOUT_S=1
    ) as wallet:

        def export() -> Awaitable[httpx.Response]:
            return wallet.http.get(
                "/v1/wallet/transactions", params={"format": format}, headers=wallet.auth("finance")
            )

        await cut_off_while_locked(wallet.runtime.pool, "ledger_entries", "%FROM ledger_entries e%", export)
        answer = await export()
        assert answer.status_code == 200
