"""A code file is received whole before the service takes a database connection for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .conftest import auth


async def test_a_slowly_streamed_code_file_holds_no_database_connection(start_voucher):
    voucher = await start_voucher(ORCHARD_DB_POOL_MIN=1, ORCHARD_DB_POOL_MAX=1)
    campaign = await voucher.create_campaign()
    first_half_read = asyncio.Event()
    client_may_finish = asyncio.Event()

    async def slow_client() -> AsyncIterator[bytes]:
        yield b"code\nSLOW-CODE-0001\n"
        first_half_read.set()
        await client_may_finish.wait()
        yield b"SLOW-CODE-0002\n"

    upload = asyncio.create_task(
        voucher.http.post(
            f"/v1/campaigns/{campaign}/codes/import",
            content=slow_client(),
            headers=auth("ops") | {"content-type": "text/csv"},
        )
    )
    await first_half_read.wait()
    # The pool's only connection is free while the client is still sending: other requests answer.
    # (The bound only keeps a regression from hanging the suite.)
    view = await asyncio.wait_for(voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("auditor")), 60)
    assert view.status_code == 200
    assert not upload.done()
    client_may_finish.set()
    report = await upload
    assert report.status_code == 200, report.text
    assert report.json()["imported"] == 2
